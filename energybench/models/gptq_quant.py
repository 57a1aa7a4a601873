"""GPTQ 4-bit weights, calibrated: llm-compressor's GPTQModifier, then packed for the int4-wo kernels.

llm-compressor (``oneshot`` with ``GPTQModifier(scheme="W4A16")``: 4-bit symmetric weights, group
128, every ``nn.Linear`` but the LM head) solves GPTQ's layer-wise problem on a calibration set and
leaves each layer's weight on its 4-bit grid with ``weight_scale`` beside it; run as it is, each
call fake-quantizes again. So the grid is packed into torchao's int4 layouts (CPU: ``Int4OpaqueTensor``
for ``_weight_int4pack_mm_for_cpu``; CUDA: tinygemm's ``tile_packed_to_4d`` through the int4-wo
config with GPTQ's weights already on the grid), bf16 activations: the same kernels as int4-wo and
int4-hqq, so the three differ only in their weights.

The calibration set is declared: ``CALIBRATION_SAMPLES`` windows of ``CALIBRATION_LEN`` tokens (the
model's maximum where smaller) of the WikiText-2 *valid* split (never the test split perplexity is
scored on), drawn with ``random.Random(CALIBRATION_SEED)``; its size, draw and sha256 are in the
record's details, and the calibration's wall time is its own number (``calibration_s``).

gptqmodel needs torch 2.14 with CUDA wheels (not installable beside the CPU torch 2.13 here);
llm-compressor 0.14 pins transformers <= 5.17 but runs with 5.25 (installed with ``--no-deps``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import random
import tempfile
import time
import warnings
from typing import Any

import torch
from torch import nn

from energybench import data
from energybench.models import torchao_quant
from energybench.models.linears import conv1d_to_linear
from energybench.models.quiet import quiet_transformers

GPTQ_EXTRA = "install energybench[gptq] (llm-compressor; torchao for the int4 kernels)"
CALIBRATION_SAMPLES = 128
CALIBRATION_LEN = 512
CALIBRATION_SEED = 0
GROUP_SIZE = 128
SCHEME = "W4A16"
PACKAGES = {"llmcompressor": "llm-compressor", "compressed_tensors": "compressed-tensors", "datasets": "datasets"}


def unsupported_reason(precision: str, device: torch.device) -> str | None:
    missing = [dist for module, dist in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        return f"{precision} needs {', '.join(missing)}: {GPTQ_EXTRA}"
    return torchao_quant.unsupported_reason("int4-wo", device)  # the int4 kernels GPTQ's weights run on


def implementation(precision: str) -> str:
    version = importlib.metadata.version("llmcompressor") if importlib.util.find_spec("llmcompressor") else "?"
    return (
        f"llm-compressor {version} GPTQModifier(scheme={SCHEME}, group {GROUP_SIZE}, symmetric), "
        f"{CALIBRATION_SAMPLES} x {CALIBRATION_LEN}-token WikiText-2 valid windows (seed {CALIBRATION_SEED}); "
        "packed for the int4-wo kernels (torchao), bf16"
    )


def calibration_windows(tokenizer: Any, length: int, samples: int | None = None, seed: int = CALIBRATION_SEED):
    """(token windows as a (samples, length) tensor, their declaration): seeded WikiText-2 valid windows."""
    samples = samples or CALIBRATION_SAMPLES

    text, file = data.wikitext2("valid.tokens")
    with quiet_transformers():
        ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    available = ids.numel() // length
    if available < 1:
        raise ValueError(f"WikiText-2 valid holds {ids.numel()} tokens, fewer than one {length}-token window")
    chosen = sorted(random.Random(seed).sample(range(available), min(samples, available)))
    windows = torch.stack([ids[i * length : (i + 1) * length] for i in chosen])
    details = {
        "split": "valid",
        "file": file.name,
        "file_sha256": file.sha256,
        "size": len(chosen),
        "tokens_per_sample": length,
        "seed": seed,
        "draw": f"sorted(random.Random({seed}).sample(range({available}), {len(chosen)})) windows of {length}",
        "sha256": hashlib.sha256(windows.numpy().tobytes()).hexdigest(),
    }
    return windows, details


def run_gptq(model: nn.Module, tokenizer: Any, windows: torch.Tensor) -> None:
    """llm-compressor's one-shot GPTQ of ``model`` (fp32, CPU) in place, quietly."""
    from datasets import Dataset  # deferred: optional

    llmcompressor = importlib.import_module("llmcompressor")
    modifiers = importlib.import_module("llmcompressor.modifiers.quantization")
    rows = {"input_ids": windows.tolist(), "attention_mask": torch.ones_like(windows).tolist()}
    recipe = modifiers.GPTQModifier(targets="Linear", scheme=SCHEME, ignore=["lm_head"])
    name_or_path = model.config._name_or_path
    importlib.import_module("loguru").logger.disable("llmcompressor")  # its per-layer progress lines
    with tempfile.TemporaryDirectory(prefix="energybench-gptq-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        model.config.save_pretrained(folder)  # oneshot reads the config back from name_or_path
        model.config._name_or_path = folder
        try:
            llmcompressor.oneshot(
                model=model,
                dataset=Dataset.from_dict(rows),
                processor=tokenizer,
                recipe=recipe,
                max_seq_length=int(windows.shape[1]),
                num_calibration_samples=int(windows.shape[0]),
            )
        finally:
            model.config._name_or_path = name_or_path
            logging.disable(logging.NOTSET)


def grid_linear(module: nn.Module) -> tuple[nn.Linear, torch.Tensor, torch.Tensor] | None:
    """A GPTQ'd layer as (plain nn.Linear with its on-grid fp32 weight, int4 values, scales), else None."""
    scale = getattr(module, "weight_scale", None)
    if not isinstance(module, nn.Linear) or scale is None:
        return None
    weight = module.weight.data.float()
    group = weight.shape[1] // scale.shape[1]
    scales = scale.data.float().repeat_interleave(group, dim=1)
    q = torch.round(weight / scales).clamp(-8, 7)
    plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    plain.weight.data = q * scales
    if module.bias is not None:
        plain.bias.data = module.bias.data.float()
    return plain, q, scale.data.float()


def pack_cpu(plain: nn.Linear, q: torch.Tensor, scale: torch.Tensor) -> nn.Linear:
    """``plain`` with its weight packed as torchao's CPU int4 tensor (tinygemm: w = (u - 8) * s + z, z = 0)."""
    from torchao.prototype.quantization.int4 import Int4OpaqueTensor  # deferred: optional
    from torchao.quantization.utils import pack_tinygemm_scales_and_zeros  # deferred: optional

    unsigned = (q + 8).to(torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(unsigned, 1)
    scale = scale.to(torch.bfloat16)
    scale_and_zero = pack_tinygemm_scales_and_zeros(scale, torch.zeros_like(scale), torch.bfloat16)
    group = q.shape[1] // scale.shape[1]
    tensor = Int4OpaqueTensor(packed, scale_and_zero, [1, group], q.shape, None)
    plain.weight = nn.Parameter(tensor, requires_grad=False)
    return plain


def quantize(model: nn.Module, precision: str, device: torch.device, loaded: Any = None) -> tuple[nn.Module, dict]:
    """GPTQ on the declared calibration set (CPU, fp32), then the layers packed for the int4 kernels."""
    tokenizer = getattr(loaded, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"{precision} calibrates on WikiText-2 text: it needs the model's tokenizer (shape-only)")
    converted = conv1d_to_linear(model)
    model.to("cpu", torch.float32).eval()
    positions = int(getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 0))
    windows, calibration = calibration_windows(tokenizer, min(CALIBRATION_LEN, positions or CALIBRATION_LEN))
    start = time.perf_counter()
    run_gptq(model, tokenizer, windows)
    calibration_s = time.perf_counter() - start
    packed = replace_gptq_layers(model, device)
    details = {
        "calibration": calibration,
        "calibration_s": calibration_s,
        "quantized_linear_modules": packed,
        "conv1d_converted_to_linear": converted,
        "scheme": f"{SCHEME} group {GROUP_SIZE} symmetric",
        "dtype": "bfloat16",
    }
    return model, details


def replace_gptq_layers(model: nn.Module, device: torch.device) -> int:
    """Every GPTQ'd layer as a plain nn.Linear whose int4 weight torchao packs; the rest in bf16."""
    grid: dict[str, tuple[nn.Linear, torch.Tensor, torch.Tensor]] = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            found = grid_linear(child)
            if found is not None:
                setattr(module, child_name, found[0])
                grid[f"{name}.{child_name}" if name else child_name] = found
    model.to(device=device, dtype=torch.bfloat16)
    if device.type == "cpu":
        for plain, q, scale in grid.values():
            pack_cpu(plain, q, scale)
    else:  # tinygemm's min-max qparams of the on-grid weights: GPTQ's grid wherever a group spans it
        quantization = torchao_quant.import_torchao()
        config = torchao_quant.config_for("int4-wo", device)
        quantization.quantize_(model, config, filter_fn=lambda m, fqn: fqn in grid)
    return len(grid)
