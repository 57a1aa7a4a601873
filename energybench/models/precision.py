"""Numeric precisions: ``convert(model, precision, device)`` or a clear reason why not.

Each precision is one :class:`Converter` in ``CONVERTERS``: its name, its implementation (library
and configuration, stored in every record, so runs of different implementations are never
compared), a capability gate that returns the one-line reason it cannot run on a device, and the
conversion. Swap an implementation by registering another under the same name. A combination a
device cannot run raises :class:`PrecisionUnsupported` (the benchmark skips with that reason);
nothing silently runs a different precision. The torchao ones live in ``torchao_quant``; the LLM
methods in ``kv_quant`` (KV-cache quantization), ``bnb_quant`` (bitsandbytes) and ``gptq_quant`` (GPTQ).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from energybench.catalog import BNB_PRECISIONS, GPTQ_PRECISIONS, KV_PRECISIONS, PRECISIONS, TORCHAO_PRECISIONS
from energybench.errors import Unsupported
from energybench.models import bnb_quant, gptq_quant, kv_quant, torchao_quant
from energybench.models.linears import conv1d_to_linear
from energybench.models.registry import LoadedModel


class PrecisionUnsupported(Unsupported):
    """This precision cannot run on this device; the message says why."""


@dataclass
class Converted:
    model: nn.Module
    precision: str
    implementation: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Converter:
    name: str
    implementation: str
    unsupported_reason: Callable[[torch.device], str | None]
    convert: Callable[..., Converted]  # (model, device), or (model, device, loaded) where takes_loaded
    takes_loaded: bool = False  # a calibrated method: it reads the model's tokenizer from the LoadedModel


@dataclass
class Prepared:
    """A model converted to one precision on one device, ready to run."""

    loaded: LoadedModel
    model: Any
    precision: str
    implementation: str
    details: dict[str, Any]
    device: Any  # torch.device


def always_supported(device: torch.device) -> str | None:
    """fp32 runs everywhere; fp16 runs on CPU too, through slow kernels: measured, not assumed."""
    return None


def bf16_reason(device: torch.device) -> str | None:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return f"bf16 is not supported by {torch.cuda.get_device_name(device)} (needs compute capability >= 8.0)"
    return None


def int8_reason(device: torch.device) -> str | None:
    if device.type != "cpu":
        return "int8 dynamic PTQ (torch.ao quantize_dynamic) runs on CPU only; run it with --device cpu"
    engine = torch.backends.quantized.engine
    if engine not in torch.backends.quantized.supported_engines or engine == "none":
        return f"no quantized engine available on this CPU (engine {engine!r})"
    return None


def cast(dtype: torch.dtype, name: str) -> Callable[[nn.Module, torch.device], Converted]:
    def convert(model: nn.Module, device: torch.device) -> Converted:
        model = model.to(device=device, dtype=dtype)
        return Converted(model, name, f"torch cast to {dtype} (weights and activations)")

    return convert


def quantize_int8_dynamic(model: nn.Module, device: torch.device) -> Converted:
    model = model.to("cpu", dtype=torch.float32)
    converted_conv1d = conv1d_to_linear(model)
    quantized = quantize_dynamic(model, {nn.Linear})
    count = count_quantized(quantized)
    details = {
        "quantized_linear_modules": count,
        "conv1d_converted_to_linear": converted_conv1d,
        "engine": torch.backends.quantized.engine,
    }
    return Converted(quantized, "int8", "torch.ao.quantization.quantize_dynamic qint8, all nn.Linear", details)


def quantize_dynamic(model: nn.Module, spec: set) -> nn.Module:
    """torch.ao dynamic qint8 in place; ``spec`` is a set of module types or of qualified module names."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated since torch 2.10 but is still the fast CPU int8
        # path (1.39x on DistilBERT-base, batch 1); torchao without compile is 11x slower here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def linears_under(model: nn.Module, names: list[str] | set[str]) -> set[str]:
    """Qualified names of the ``nn.Linear`` modules at or under ``names`` (what int8 dynamic PTQ converts)."""
    return {
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and any(n == name or n.startswith(name + ".") for name in names)
    }


def count_quantized(model: nn.Module) -> int:
    return sum(isinstance(m, DynamicQuantizedLinear) for m in model.modules())


def torchao_converter(name: str) -> Converter:
    def reason(device: torch.device) -> str | None:
        return torchao_quant.unsupported_reason(name, device)

    def convert(model: nn.Module, device: torch.device) -> Converted:
        quantized, details = torchao_quant.quantize(model, name, device)
        return Converted(quantized, name, torchao_quant.implementation(name, device), details)

    return Converter(name, f"torchao {torchao_quant.CONFIGS[name]}", reason, convert)


def module_converter(name: str, module: Any) -> Converter:
    """A precision of an LLM-method module: its ``unsupported_reason(name, device)``, ``implementation(name)``
    and ``quantize_cache`` / ``quantize(model, name, device)`` returning (model, details)."""
    quantize = getattr(module, "quantize_cache", None) or module.quantize
    takes_loaded = module is gptq_quant

    def reason(device: torch.device) -> str | None:
        return module.unsupported_reason(name, device)

    def convert(model: nn.Module, device: torch.device, *loaded: Any) -> Converted:
        try:
            quantized, details = quantize(model, name, device, *loaded)
        except ValueError as error:  # a model this method cannot take (no generation config, no tokenizer)
            raise PrecisionUnsupported(str(error)) from None
        return Converted(quantized, name, module.implementation(name), details)

    return Converter(name, module.implementation(name), reason, convert, takes_loaded)


def static_reason(device: torch.device) -> str | None:
    return (
        "int8-static (calibrated static int8) is converted by a backend, not in eager PyTorch (PT2E's "
        "quantize/dequantize graph runs int8 only once Inductor lowers it); use --backend onnxruntime"
    )


def convert_static(model: nn.Module, device: torch.device) -> Converted:
    raise PrecisionUnsupported(static_reason(device) or "")


CONVERTERS: dict[str, Converter] = {
    "fp32": Converter("fp32", "torch float32", always_supported, cast(torch.float32, "fp32")),
    "fp16": Converter("fp16", "torch float16", always_supported, cast(torch.float16, "fp16")),
    "bf16": Converter("bf16", "torch bfloat16", bf16_reason, cast(torch.bfloat16, "bf16")),
    "int8": Converter("int8", "torch.ao dynamic int8", int8_reason, quantize_int8_dynamic),
    **{name: torchao_converter(name) for name in TORCHAO_PRECISIONS},
    "int8-static": Converter("int8-static", "backend static int8 (see backends)", static_reason, convert_static),
    **{name: module_converter(name, gptq_quant) for name in GPTQ_PRECISIONS},
    **{name: module_converter(name, bnb_quant) for name in BNB_PRECISIONS},
    **{name: module_converter(name, kv_quant) for name in KV_PRECISIONS},
}
CONVERTERS = {name: CONVERTERS[name] for name in PRECISIONS}  # the catalog's order, one name list


def unsupported_reason(precision: str, device: torch.device) -> str | None:
    return CONVERTERS[precision].unsupported_reason(device)


def convert(model: nn.Module, precision: str, device: torch.device, loaded: LoadedModel | None = None) -> Converted:
    """Return ``model`` at ``precision`` on ``device`` (the input model may be modified in place);
    ``loaded``: the model it came from (its tokenizer), which a calibrated method reads."""
    if precision not in CONVERTERS:
        raise ValueError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}")
    reason = unsupported_reason(precision, device)
    if reason:
        raise PrecisionUnsupported(reason)
    converter = CONVERTERS[precision]
    converted = converter.convert(model, device, loaded) if converter.takes_loaded else converter.convert(model, device)
    converted.model.eval()
    return converted
