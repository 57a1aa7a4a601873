"""KV-cache quantization: fp32 weights, keys and values kept in 4 bits by transformers' QuantizedCache.

``kv4-quanto`` and ``kv4-hqq`` are precisions of the KV cache, not of the weights: the model is the
fp32 one, its ``generation_config`` asks ``generate`` for ``cache_implementation="quantized"`` with
``cache_config`` (transformers 5.x: ``QuantizedCache(backend, config, nbits, q_group_size,
residual_length, ...)``). So the generation metric decodes through the quantized cache, its memory
record counts the cache's quantized bytes, and the perplexity metric scores each window through it
(``energybench.measure.quality.window_logits``): that is its quality cost against fp32.

The cache quantizes the whole prompt at prefill and keeps up to ``residual_length`` newer tokens in
full precision (KIVI's residual), so its saving shows at a long prompt (``--seq-len`` of generation).
quanto compiles its CPU extension on first use (about 100 s here, cached by torch afterwards).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any

import torch
from torch import nn

KV_BITS = 4
KV_GROUP_SIZE = 64
KV_RESIDUAL_LENGTH = 128
LLM_EXTRA = "install energybench[llm]"
# precision -> (transformers' backend name, distribution, import name)
BACKENDS = {"kv4-quanto": ("quanto", "optimum-quanto", "optimum.quanto"), "kv4-hqq": ("hqq", "hqq", "hqq")}


def cache_config(precision: str) -> dict[str, Any]:
    backend = BACKENDS[precision][0]
    return {"backend": backend, "nbits": KV_BITS, "q_group_size": KV_GROUP_SIZE, "residual_length": KV_RESIDUAL_LENGTH}


def missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package (optimum) absent
        return True


def unsupported_reason(precision: str, device: torch.device) -> str | None:
    backend, distribution, module = BACKENDS[precision]
    if device.type not in ("cpu", "cuda"):
        return f"{precision} is wired for CPU and CUDA only, not {device.type}"
    try:
        from transformers import QuantizedCache  # noqa: F401  # deferred: heavy
    except ImportError:
        return f"{precision} needs transformers' QuantizedCache (transformers >= 4.42)"
    if missing(module):
        return f"{precision} needs {distribution} for the {backend} backend of the quantized KV cache: {LLM_EXTRA}"
    return None


def implementation(precision: str) -> str:
    backend, distribution, _ = BACKENDS[precision]
    version = importlib.metadata.version(distribution) if not missing(BACKENDS[precision][2]) else "?"
    return (
        f"transformers QuantizedCache(backend={backend!r}, nbits={KV_BITS}, q_group_size={KV_GROUP_SIZE}, "
        f"residual_length={KV_RESIDUAL_LENGTH}), {distribution} {version}; fp32 weights"
    )


def quantize_cache(model: nn.Module, precision: str, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """``model`` (fp32, on ``device``) whose generate() keeps its KV cache in 4 bits."""
    config = getattr(model, "generation_config", None)
    if config is None:
        raise ValueError(f"{precision} quantizes a generative model's KV cache; this model has no generation_config")
    model = model.to(device=device, dtype=torch.float32)
    config.cache_implementation = "quantized"
    config.cache_config = cache_config(precision)
    details = {"kv_cache": dict(config.cache_config), "weights": "float32 (unchanged)"}
    return model, details
