"""bitsandbytes on CUDA: NF4 (4-bit NormalFloat, bf16 compute) and LLM.int8() weights.

Each ``nn.Linear`` but the LM head becomes ``bnb.nn.Linear4bit(quant_type="nf4")`` or
``bnb.nn.Linear8bitLt(has_fp16_weights=False, threshold=6.0)`` with the fp32 weights as its
``Params4bit`` / ``Int8Params``; moving the module to the GPU quantizes them (bitsandbytes' own
path, as ``from_pretrained(quantization_config=BitsAndBytesConfig(...))`` does). CUDA only here:
bitsandbytes' CPU backend is a separate, slower path that this project does not measure, so CPU is
a skip with that reason. ``quantize`` takes the ``bnb`` module, so tests run it with a fake.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from typing import Any

import torch
from torch import nn

from energybench.models.linears import conv1d_to_linear

BNB_EXTRA = "install energybench[bnb] (pip install bitsandbytes)"
INT8_THRESHOLD = 6.0
KEEP = ("lm_head",)  # the LM head stays in the compute dtype, as transformers' integration keeps it
SETTINGS = {
    "nf4-bnb": "Linear4bit(quant_type='nf4', compute_dtype=bfloat16, compress_statistics=True)",
    "int8-bnb": f"Linear8bitLt(has_fp16_weights=False, threshold={INT8_THRESHOLD}) (LLM.int8())",
}


def unsupported_reason(precision: str, device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"{precision} (bitsandbytes) is wired for CUDA GPUs only; run it with --device cuda"
    if torch.version.hip is not None:
        return f"{precision} is wired for NVIDIA GPUs only (this is ROCm {torch.version.hip})"
    if importlib.util.find_spec("bitsandbytes") is None:
        return f"{precision} needs bitsandbytes: {BNB_EXTRA}"
    return None


def implementation(precision: str) -> str:
    version = importlib.metadata.version("bitsandbytes") if importlib.util.find_spec("bitsandbytes") else "?"
    return f"bitsandbytes {version} {SETTINGS[precision]}, every nn.Linear but the LM head"


def replacement(bnb: Any, linear: nn.Linear, precision: str) -> nn.Module:
    """The bitsandbytes module holding ``linear``'s fp32 weights (quantized when moved to the GPU)."""
    bias = linear.bias is not None
    if precision == "nf4-bnb":
        module = bnb.nn.Linear4bit(
            linear.in_features, linear.out_features, bias=bias, compute_dtype=torch.bfloat16, quant_type="nf4"
        )
        module.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4")
    else:
        module = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, bias=bias, has_fp16_weights=False, threshold=INT8_THRESHOLD
        )
        module.weight = bnb.nn.Int8Params(linear.weight.data, requires_grad=False, has_fp16_weights=False)
    if bias:
        module.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return module


def quantize(
    model: nn.Module, precision: str, device: torch.device, bnb: Any = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Swap every ``nn.Linear`` (but the LM head) for its bitsandbytes module, then move to ``device``."""
    bnb = bnb or importlib.import_module("bitsandbytes")
    converted = conv1d_to_linear(model)
    model.to(torch.float32)
    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            qualified = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not any(qualified.endswith(keep) for keep in KEEP):
                setattr(module, child_name, replacement(bnb, child, precision))
                swapped += 1
    model = model.to(device)
    for module in model.modules():  # embeddings, norms and the LM head run in the compute dtype
        if not isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):
            for parameter in module.parameters(recurse=False):
                parameter.data = parameter.data.to(torch.bfloat16)
    details = {
        "bitsandbytes": SETTINGS[precision],
        "quantized_linear_modules": swapped,
        "conv1d_converted_to_linear": converted,
    }
    return model, details
