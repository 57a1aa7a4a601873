"""Backends: what runs a converted model (eager PyTorch, torch.compile, ONNX Runtime).

Each backend is one class with a capability probe (``unsupported_reason``: the one-line reason it
cannot run a precision on a device, or None) and ``prepare`` (the fp32 model -> a callable with
``.config`` whose ``__call__(**batch)`` returns an object with ``.logits``, its implementation
string and details). onnx / onnxruntime / onnxscript are imported only inside the onnxruntime
backend's methods, so ``pytest --help`` and the main job never import them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import importlib.util
import logging
import random
import shutil
import tempfile
import time
import types
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from energybench import data
from energybench.catalog import BACKENDS, BACKENDS_EXTRA, DEFAULT_BACKEND, SEQUENCE_CLASSIFICATION
from energybench.models import precision as precisions
from energybench.models.precision import Converted, PrecisionUnsupported

ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
OPSET = 18
CALIBRATION_SIZE = 128
CALIBRATION_SEED = 0
CALIBRATION_MAX_LEN = 128
ORT_PRECISIONS = ("fp32", "int8", "int8-static")
COMPILE_PRECISIONS = ("fp32", "fp16", "bf16", "int8-wo", "int8-dyn", "int4-wo", "fp8-dyn", "int4-hqq", "int4-gptq")


class BackendUnsupported(PrecisionUnsupported):
    """This backend cannot run this precision (or this model) here; the message says why."""


@dataclass
class Calibration:
    """The declared calibration set of int8-static: a seeded subset of SST-2 *train*."""

    sentences: list[str]
    details: dict[str, Any] = field(default_factory=dict)


def calibration_set(size: int = CALIBRATION_SIZE, seed: int = CALIBRATION_SEED) -> Calibration:
    """``size`` SST-2 train sentences drawn with ``random.Random(seed)``; never the validation split."""
    rows, file = data.sst2("train")
    chosen = sorted(random.Random(seed).sample(range(len(rows)), size))
    sentences = [rows[i][0] for i in chosen]
    digest = hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()
    details = {
        "split": "train",
        "file": file.name,
        "file_sha256": file.sha256,
        "size": size,
        "seed": seed,
        "draw": f"sorted(random.Random({seed}).sample(range({len(rows)}), {size}))",
        "sha256": digest,
        "max_len": CALIBRATION_MAX_LEN,
    }
    return Calibration(sentences, details)


class Backend:
    name = DEFAULT_BACKEND

    def unsupported_reason(self, precision: str, device: torch.device) -> str | None:
        return precisions.unsupported_reason(precision, device)

    def prepare(self, model: nn.Module, precision: str, device: torch.device, loaded: Any) -> Converted:
        """``model`` (an fp32 copy, may be modified) at ``precision`` run by this backend."""
        self.check(precision, device)
        converted = precisions.convert(model, precision, device, loaded)
        converted.details["backend"] = self.name
        return converted

    def check(self, precision: str, device: torch.device) -> None:
        reason = self.unsupported_reason(precision, device)
        if reason:
            raise BackendUnsupported(reason)

    def runs_hooks(self) -> bool:
        """Whether forward hooks on the model's modules run (the layer study needs them)."""
        return True


class Eager(Backend):
    """Today's path: the converted model, called directly."""


class CompiledModel:
    """A torch.compile'd model: the sequence dimension is dynamic (one graph for every length).

    Compilation happens at the first call of each new input signature; ``compile_s`` keeps the
    wall time of those calls per shape, so the harness can report it apart from latency.
    """

    def __init__(self, model: nn.Module):
        self.module = model
        self.config = model.config
        self.compiled = torch.compile(model)
        self.compile_s: dict[str, float] = {}

    def __call__(self, **batch: Any) -> Any:
        for tensor in batch.values():
            if tensor.dim() >= 2 and tensor.shape[1] > 1:
                torch._dynamo.mark_dynamic(tensor, 1)
        key = "x".join(str(d) for d in next(iter(batch.values())).shape[:1])
        if key in self.compile_s:
            return self.compiled(**batch)
        start = time.perf_counter()
        out = self.compiled(**batch)
        self.compile_s[key] = time.perf_counter() - start
        return out

    def eval(self) -> CompiledModel:
        return self

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def modules(self) -> Any:
        return self.module.modules()

    def named_modules(self) -> Any:
        return self.module.named_modules()


class Compile(Backend):
    """torch.compile (Inductor) of the converted model."""

    name = "compile"

    def unsupported_reason(self, precision: str, device: torch.device) -> str | None:
        if precision == "int8":
            return (
                "int8 (torch.ao dynamic quantized Linear) compiles only with a graph break at every quantized "
                "layer (Dynamo cannot trace its packed-params ScriptObject), so it would time eager int8 in "
                "pieces; use --backend eager, or int8-wo / int8-dyn (torchao) with compile"
            )
        if precision == "int8-static":
            return (
                "int8-static on compile (PT2E X86InductorQuantizer) is not wired: it exports one fixed shape "
                "and its Inductor lowering took ~100 s per shape here, while accuracy runs variable-length "
                "batches; use --backend onnxruntime"
            )
        if precision not in COMPILE_PRECISIONS:
            return f"{precision} is not wired for torch.compile; accepted: {', '.join(COMPILE_PRECISIONS)}"
        return precisions.unsupported_reason(precision, device)

    def prepare(self, model: nn.Module, precision: str, device: torch.device, loaded: Any) -> Converted:
        converted = super().prepare(model, precision, device, loaded)
        if converted.details.get("compiled"):  # torchao's int8-dyn on CUDA compiles itself
            return converted
        compiled = CompiledModel(converted.model)
        details = {**converted.details, "backend": self.name, "compile": "torch.compile(mode=default), seq dynamic"}
        implementation = f"{converted.implementation}; torch {torch.__version__} torch.compile(inductor)"
        return Converted(compiled, precision, implementation, details)  # type: ignore[arg-type]


def missing_onnx_packages() -> list[str]:
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


class OrtModel:
    """An ONNX model run by an ONNX Runtime session; duck-types what the harness calls."""

    def __init__(self, path: Path, config: Any, device: torch.device):
        import onnxruntime as ort  # deferred: optional

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = torch.get_num_threads()
        self.providers = ort_providers(device)
        self.session = ort.InferenceSession(str(path), options, providers=self.providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.path, self.config = Path(path), config

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> Any:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        out = self.session.run(["logits"], {k: feed[k].cpu().numpy() for k in self.inputs})[0]
        return types.SimpleNamespace(logits=torch.from_numpy(out))

    def eval(self) -> OrtModel:
        return self

    @property
    def artifact_bytes(self) -> int:
        return self.path.stat().st_size


def ort_providers(device: torch.device) -> list[str]:
    import onnxruntime as ort  # deferred: optional

    available = ort.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class Logits(nn.Module):
    """Plain-tensor output and a positional signature for the exporter (HF returns a ModelOutput)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model: nn.Module, path: Path) -> float:
    """Export ``model`` (fp32, CPU) to ONNX with dynamic batch and sequence; returns the seconds taken."""

    seq = min(16, int(getattr(model.config, "max_position_embeddings", 16) or 16))
    ids = torch.randint(1000, min(model.config.vocab_size, 30000), (2, seq), generator=torch.Generator().manual_seed(0))
    batch, length = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("seq", min=2, max=seq_limit(model))
    shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    start = time.perf_counter()
    logger, level = logging.getLogger("torch.onnx"), logging.getLogger("torch.onnx").level
    logger.setLevel(logging.ERROR)  # "torchvision is not installed" notes of the op registry
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on axis names and deprecated pytree specs
            torch.onnx.export(
                Logits(model).eval(),
                (ids, torch.ones_like(ids)),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                opset_version=OPSET,
                dynamo=True,
                dynamic_shapes=shapes,
                optimize=True,
                verbose=False,
                external_data=False,
            )
    finally:
        logger.setLevel(level)
    return time.perf_counter() - start


def seq_limit(model: nn.Module) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 512))


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"


class OnnxRuntime(Backend):
    """Exported once per model (fp32), quantized by ONNX Runtime per precision, run by an InferenceSession."""

    name = "onnxruntime"

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="energybench-onnx-"))
        weakref.finalize(self, remove_tree, self.folder)
        self.files: dict[tuple[int, str], tuple[Path, dict[str, Any]]] = {}
        self.failed: dict[int, str] = {}

    def unsupported_reason(self, precision: str, device: torch.device) -> str | None:
        missing = missing_onnx_packages()
        if missing:
            return f"the onnxruntime backend needs {', '.join(missing)}: {BACKENDS_EXTRA}"
        if precision not in ORT_PRECISIONS:
            return f"{precision} is not wired for onnxruntime; it runs {', '.join(ORT_PRECISIONS)}"
        if precision in ("int8", "int8-static") and device.type != "cpu":
            return f"{precision} on onnxruntime is wired for the CPU execution provider; run it with --device cpu"
        return None

    def runs_hooks(self) -> bool:
        return False

    def prepare(self, model: nn.Module, precision: str, device: torch.device, loaded: Any) -> Converted:
        self.check(precision, device)
        if precision == "int8-static" and loaded.source.task != SEQUENCE_CLASSIFICATION:
            raise BackendUnsupported(
                "int8-static calibrates on SST-2 sentences: wired for sequence-classification models only"
            )
        path, details = self.converted_file(id(loaded), model, precision, loaded.tokenizer)
        ort_model = OrtModel(path, model.config, device)
        details = {**details, "backend": self.name, "providers": ort_model.providers, "onnx_bytes": path.stat().st_size}
        return Converted(ort_model, precision, self.implementation(precision), details)  # type: ignore[arg-type]

    def implementation(self, precision: str) -> str:

        versions = f"torch {torch.__version__} onnx exporter (dynamo, opset {OPSET}), onnxruntime " + metadata.version(
            "onnxruntime"
        )
        how = {
            "fp32": "fp32",
            "int8": "quantize_dynamic QInt8 weights, per-channel",
            "int8-static": "quantize_static QDQ, QUInt8 activations / QInt8 weights per-channel, MatMul/Gemm, "
            f"MinMax on {CALIBRATION_SIZE} SST-2 train sentences (seed {CALIBRATION_SEED})",
        }[precision]
        return f"{versions}: {how}"

    def converted_file(self, key: int, model: nn.Module, precision: str, tokenizer: Any) -> tuple[Path, dict]:
        """The .onnx of (model, precision), built once per session; the fp32 export is shared."""
        if (key, precision) in self.files:
            return self.files[(key, precision)]
        fp32, details = self.exported(key, model)
        if precision == "fp32":
            return fp32, details
        if tokenizer is None and precision == "int8-static":
            raise BackendUnsupported("int8-static needs a tokenizer for its calibration sentences (shape-only model)")
        start = time.perf_counter()
        out = self.folder / f"{key}-{precision}.onnx"
        extra = quantize_ort(fp32, out, precision, tokenizer, self.folder)
        found = (out, {**details, **extra, "quantize_s": time.perf_counter() - start})
        self.files[(key, precision)] = found
        return found

    def exported(self, key: int, model: nn.Module) -> tuple[Path, dict[str, Any]]:
        if key in self.failed:
            raise BackendUnsupported(self.failed[key])
        if (key, "fp32") not in self.files:
            path = self.folder / f"{key}-fp32.onnx"
            try:
                seconds = export_onnx(model.to("cpu", torch.float32).eval(), path)
            except Exception as error:  # a user's model the exporter cannot take: skip, the session goes on
                self.failed[key] = f"ONNX export failed: {first_line(error)}"
                raise BackendUnsupported(self.failed[key]) from None
            self.files[(key, "fp32")] = (path, {"export_s": seconds, "opset": OPSET, "exporter": "dynamo"})
        return self.files[(key, "fp32")]


def quantize_ort(source: Path, out: Path, precision: str, tokenizer: Any, folder: Path) -> dict[str, Any]:
    """ONNX Runtime quantization of ``source`` into ``out``: dynamic (int8) or static QDQ (int8-static)."""

    from onnxruntime.quantization import QuantType, quantize_dynamic  # deferred: optional

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # "consider pre-processing": advice logged on the root logger
        try:
            if precision == "int8":
                quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True)
                return {"quantization": "onnxruntime quantize_dynamic"}
            return quantize_static_qdq(source, out, tokenizer, folder)
        finally:
            logging.disable(logging.NOTSET)


def quantize_static_qdq(source: Path, out: Path, tokenizer: Any, folder: Path) -> dict[str, Any]:
    import numpy as np  # deferred: heavy
    from onnxruntime.quantization import (  # deferred: optional
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # deferred: optional

    calibration = calibration_set()
    encoded = tokenizer(calibration.sentences, truncation=True, max_length=CALIBRATION_MAX_LEN)
    feeds = [
        {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.array([mask], dtype=np.int64)}
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])
    ]
    pre = folder / f"{out.stem}-pre.onnx"
    # symbolic shape inference stops on torch exports ("Incomplete symbolic shape inference")
    quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        FeedReader(feeds),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    pre.unlink(missing_ok=True)
    return {"quantization": "onnxruntime quantize_static QDQ", "calibration": calibration.details}


class FeedReader:
    """An ONNX Runtime CalibrationDataReader over prepared feeds (one unpadded sentence each)."""

    def __init__(self, feeds: list[dict[str, Any]]):
        self.items = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self.items, None)


def remove_tree(folder: Path) -> None:

    shutil.rmtree(folder, ignore_errors=True)


BACKEND_CLASSES: dict[str, type[Backend]] = {"eager": Eager, "compile": Compile, "onnxruntime": OnnxRuntime}
assert tuple(BACKEND_CLASSES) == BACKENDS, "energybench.catalog.BACKENDS and BACKEND_CLASSES disagree"


def backend(name: str) -> Backend:
    """A new backend instance; a ValueError names the accepted ones."""
    if name not in BACKEND_CLASSES:
        raise ValueError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}")
    return BACKEND_CLASSES[name]()


def implementation(name: str, precision: str) -> str:
    """What ``precision`` on backend ``name`` runs (library and configuration), without running it."""
    base = precisions.CONVERTERS[precision].implementation
    if name == "compile":
        return f"{base}; torch.compile (inductor)"
    if name == "onnxruntime":
        if precision not in ORT_PRECISIONS or missing_onnx_packages():
            return "-"
        return OnnxRuntime.implementation(OnnxRuntime.__new__(OnnxRuntime), precision)
    return base


def probe(name: str, precision: str, device: torch.device) -> str | None:
    """Where ``precision`` runs on backend ``name``: None, or the one-line reason it does not."""
    cls = BACKEND_CLASSES[name]
    instance = cls.__new__(cls)  # the probe needs no temp folder
    return instance.unsupported_reason(precision, device)
