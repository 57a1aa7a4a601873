"""torchao precisions: int8 weight-only, int8 dynamic, int4 weight-only, HQQ int4 and fp8 dynamic, with their gates.

Written against torchao 0.18 (0.17 has the same four configs; its int8 configs still default to
the old ``version=1``, so ``version=2`` is passed). torchao >= 0.17 is ABI-stable and needs
torch >= 2.11. What each precision needs, read from torchao's source:

- ``int8-wo``  ``Int8WeightOnlyConfig(PerRow)``: CPU and CUDA, any float dtype.
- ``int8-dyn`` ``Int8DynamicActivationInt8WeightConfig(PerRow)``: ``torch._int_mm`` (cuBLAS int8,
  compute capability >= 8.0 here); torchao needs torch.compile for its speed, so on CUDA the
  converted model is compiled (recorded in the implementation); on CPU it runs eager.
- ``int4-wo``  ``Int4WeightOnlyConfig(group 128, tile_packed_to_4d)``: the tinygemm kernel of torch
  itself (the default "plain" packing needs the ``mslk`` package), CUDA >= 8.0, bf16 weights. On CPU,
  torchao 0.18 keeps its CPU layout in ``torchao.prototype.quantization.int4``:
  ``PrototypeInt4WeightOnlyConfig(group 128)`` packs for torch's ``_weight_int4pack_mm_for_cpu``
  (``Int4OpaqueTensor``), bf16 activations (fp32 ones run that kernel 6x slower than fp32 matmul here).
  Group 128 where a layer's in-features allow, else 64, else 32 (``int4_group_sizes`` in the details).
- ``int4-hqq`` the same int4 kernels with HQQ's calibration-free half-quadratic qparams
  (``int4_choose_qparams_algorithm="hqq"``): CUDA >= 8.0 (tile_packed_to_4d) and CPU (the prototype config).
- ``fp8-dyn``  ``Float8DynamicActivationFloat8WeightConfig(PerRow)``: e4m3 through ``torch._scaled_mm``,
  compute capability >= 8.9, bf16 weights.

Only ``nn.Linear`` layers whose in and out features are multiples of 16 are quantized (the int8
and fp8 kernels need it; otherwise torchao falls back to a CPU matmul or leaves the layer alone
silently): the same layers for every torchao precision, counted in the record's details.
``set_inductor_config=False``: the default flips process-wide inductor settings on the first
``quantize_``, which would then change every later compile of the session.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from energybench.models.linears import conv1d_to_linear

MIN_TORCHAO = (0, 17)
MIN_TORCH = (2, 11)
INSTALL_HINT = "install energybench[backends] for torchao (pip install 'torchao>=0.17')"
INT4_GROUP_SIZE = 128
INT4_GROUP_SIZES = (128, 64, 32)  # the largest that divides a layer's in-features (the kernels take these)
KERNEL_MULTIPLE = 16
MIN_CAPABILITY = {"int8-dyn": (8, 0), "int4-wo": (8, 0), "int4-hqq": (8, 0), "fp8-dyn": (8, 9)}
WHY_CAPABILITY = {
    "int8-dyn": "int8 tensor-core matmul (torch._int_mm)",
    "int4-wo": "the tinygemm int4 kernel",
    "int4-hqq": "the tinygemm int4 kernel",
    "fp8-dyn": "fp8 e4m3 tensor cores (torch._scaled_mm)",
}
CUDA_ONLY = {"fp8-dyn": "fp8 tensor cores (compute capability >= 8.9)"}
INT4 = ("int4-wo", "int4-hqq")  # bf16 activations on every device
INT4_CPU_CONFIGS = {
    "int4-wo": f"prototype.quantization.int4.PrototypeInt4WeightOnlyConfig(group_size={INT4_GROUP_SIZE}) "
    "(Int4OpaqueTensor, _weight_int4pack_mm_for_cpu)",
    "int4-hqq": f"prototype.quantization.int4.PrototypeInt4WeightOnlyConfig(group_size={INT4_GROUP_SIZE}, "
    "int4_choose_qparams_algorithm='hqq') (Int4OpaqueTensor, _weight_int4pack_mm_for_cpu)",
}
COMPILED_ON_CUDA = {"int8-dyn"}
COMPILE_MODE = "default"
CONFIGS = {
    "int8-wo": "Int8WeightOnlyConfig(granularity=PerRow())",
    "int8-dyn": "Int8DynamicActivationInt8WeightConfig(granularity=PerRow())",
    "int4-wo": f"Int4WeightOnlyConfig(group_size={INT4_GROUP_SIZE}, int4_packing_format='tile_packed_to_4d')",
    "int4-hqq": f"Int4WeightOnlyConfig(group_size={INT4_GROUP_SIZE}, int4_packing_format='tile_packed_to_4d', "
    "int4_choose_qparams_algorithm='hqq')",
    "fp8-dyn": "Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())",
}


def version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split("+")[0].split(".")[:2]
    return int(major), int(minor)


@functools.cache
def torchao_reason() -> str | None:
    """Why torchao cannot be used here (absent, too old, torch too old, broken), or None."""
    try:
        version = importlib.metadata.version("torchao")
    except importlib.metadata.PackageNotFoundError:
        return INSTALL_HINT
    if version_tuple(version) < MIN_TORCHAO:
        return f"torchao {version} is too old (needs >= 0.17): {INSTALL_HINT}"
    if version_tuple(torch.__version__) < MIN_TORCH:
        return f"torchao {version} needs torch >= 2.11, this is torch {torch.__version__}"
    try:
        import_torchao()
    except Exception as error:  # a broken install is a skip reason, never a crash at collection
        return f"torchao {version} is installed but does not import ({type(error).__name__}: {error})"
    return None


def import_torchao() -> Any:
    """``torchao.quantization``, imported quietly (torchao logs the optional kernels it cannot load)."""

    logger = logging.getLogger("torchao")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecations raised by torchao's own import
            return importlib.import_module("torchao.quantization")
    finally:
        logger.setLevel(level)


def unsupported_reason(precision: str, device: torch.device) -> str | None:
    """The one-line reason ``precision`` cannot run on ``device`` here (the capability it lacks), or None."""
    if device.type not in ("cpu", "cuda"):
        return f"{precision} is wired for CPU and CUDA only, not {device.type}"
    if device.type == "cpu" and precision in CUDA_ONLY:
        return f"{precision} needs {CUDA_ONLY[precision]}; run it with --device cuda"
    if device.type == "cuda":
        if torch.version.hip is not None and precision in CUDA_ONLY:
            return f"{precision} is wired for NVIDIA GPUs only (this is ROCm {torch.version.hip})"
        need = MIN_CAPABILITY.get(precision)
        have = torch.cuda.get_device_capability(device)
        if need and tuple(have) < need:
            return (
                f"{precision} needs compute capability >= {need[0]}.{need[1]} for {WHY_CAPABILITY[precision]}; "
                f"{torch.cuda.get_device_name(device)} has {have[0]}.{have[1]}"
            )
    return torchao_reason()


def config_text(precision: str, device: torch.device) -> str:
    """The torchao config ``precision`` uses on ``device`` (the int4 ones differ between CPU and CUDA)."""
    return INT4_CPU_CONFIGS[precision] if device.type == "cpu" and precision in INT4 else CONFIGS[precision]


def config_for(precision: str, device: torch.device | None = None) -> Any:
    quantization = import_torchao()
    if precision in INT4 and device is not None and device.type == "cpu":
        prototype = importlib.import_module("torchao.prototype.quantization.int4")
        algorithm = "hqq" if precision == "int4-hqq" else "tinygemm"
        return prototype.PrototypeInt4WeightOnlyConfig(
            group_size=INT4_GROUP_SIZE, int4_choose_qparams_algorithm=algorithm, set_inductor_config=False
        )
    per_row = quantization.PerRow()
    if precision == "int8-wo":
        return quantization.Int8WeightOnlyConfig(granularity=per_row, set_inductor_config=False, version=2)
    if precision == "int8-dyn":
        return quantization.Int8DynamicActivationInt8WeightConfig(
            granularity=per_row, set_inductor_config=False, version=2
        )
    if precision in INT4:
        return quantization.Int4WeightOnlyConfig(
            group_size=INT4_GROUP_SIZE,
            int4_packing_format="tile_packed_to_4d",
            int4_choose_qparams_algorithm="hqq" if precision == "int4-hqq" else "tinygemm",
            set_inductor_config=False,
        )
    if precision == "fp8-dyn":
        return quantization.Float8DynamicActivationFloat8WeightConfig(granularity=per_row, set_inductor_config=False)
    raise ValueError(f"unknown torchao precision {precision!r}; accepted: {', '.join(CONFIGS)}")


def model_dtype(device: torch.device, precision: str = "") -> torch.dtype:
    """bf16 on CUDA (int4 and fp8 PerRow require it; the int8 ones run their activations in it) and for
    int4 on CPU (its CPU kernel is fast in bf16 only); fp32 for the int8 ones on CPU."""
    return torch.bfloat16 if device.type == "cuda" or precision in INT4 else torch.float32


def kernel_friendly(module: nn.Module, fqn: str) -> bool:
    """An ``nn.Linear`` the int8/fp8 kernels take as is: in and out features multiples of 16."""
    return (
        isinstance(module, nn.Linear)
        and module.in_features % KERNEL_MULTIPLE == 0
        and module.out_features % KERNEL_MULTIPLE == 0
    )


def count_quantized(model: nn.Module) -> tuple[int, int]:
    """(nn.Linear modules whose weight is a torchao tensor now, all nn.Linear modules)."""
    from torchao.utils import TorchAOBaseTensor  # deferred: optional

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    # the prototype CPU int4 config wraps its tensor in a plain nn.Parameter
    quantized = [
        isinstance(m.weight, TorchAOBaseTensor) or isinstance(m.weight.data, TorchAOBaseTensor) for m in linears
    ]
    return sum(quantized), len(linears)


def implementation(precision: str, device: torch.device) -> str:
    """What a record of ``precision`` on ``device`` measured: library, version, config, dtype, compile."""
    version = importlib.metadata.version("torchao")
    dtype = str(model_dtype(device, precision)).removeprefix("torch.")
    compiled = f", torch.compile(mode={COMPILE_MODE})" if compiles(precision, device) else ", eager"
    return f"torchao {version} {config_text(precision, device)}, {dtype}{compiled}"


def compiles(precision: str, device: torch.device) -> bool:
    return precision in COMPILED_ON_CUDA and device.type == "cuda"


def quantize_int4_groups(
    model: nn.Module, precision: str, device: torch.device, filter_fn: Callable[[nn.Module, str], bool]
) -> dict[str, int]:
    """int4 with group 128 where a layer's in-features allow, else 64, else 32 (SmolLM2's 960-wide
    projections take 64): {group size: layers}. torchao leaves a layer whose width the group does not
    divide unquantized, silently, so each group size takes only the layers it divides."""
    quantization = import_torchao()
    done: set[str] = set()
    groups: dict[str, int] = {}
    for group in INT4_GROUP_SIZES:
        chosen = {
            fqn
            for fqn, module in model.named_modules()
            if fqn not in done and filter_fn(module, fqn) and module.in_features % group == 0
        }
        if chosen:
            config = dataclasses.replace(config_for(precision, device), group_size=group)
            quantization.quantize_(model, config, filter_fn=lambda module, fqn, chosen=chosen: fqn in chosen)
            done |= chosen
            groups[str(group)] = len(chosen)
    return groups


def quantize(
    model: nn.Module,
    precision: str,
    device: torch.device,
    filter_fn: Callable[[nn.Module, str], bool] = kernel_friendly,
) -> tuple[nn.Module, dict[str, Any]]:
    """Quantize ``model`` (modified in place) on ``device``; returns the model to run and the details."""

    quantization = import_torchao()
    converted = conv1d_to_linear(model)
    dtype = model_dtype(device, precision)
    model.to(device=device, dtype=dtype).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchao's notes on layers it leaves alone
        if precision in INT4:
            groups = quantize_int4_groups(model, precision, device, filter_fn)
        else:
            quantization.quantize_(model, config_for(precision, device), filter_fn=filter_fn)
    quantized, linears = count_quantized(model)
    details = {
        "torchao": importlib.metadata.version("torchao"),
        "config": config_text(precision, device),
        "dtype": str(dtype).removeprefix("torch."),
        "quantized_linear_modules": quantized,
        "linear_modules": linears,
        "conv1d_converted_to_linear": converted,
        "compiled": compiles(precision, device),
    }
    if precision in INT4:
        details["int4_group_sizes"] = groups
    if compiles(precision, device):
        model = torch.compile(model, mode=COMPILE_MODE)
        details["compile_mode"] = COMPILE_MODE
    return model, details
