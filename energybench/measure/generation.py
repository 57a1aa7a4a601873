"""Timed greedy decoding with the KV cache: prefill (time to first token) and every decode step apart.

Exactly ``gen_tokens`` new tokens, no early stop: the EOS token is never chosen, as
``generate(min_new_tokens=max_new_tokens=gen_tokens)`` does. Prefill is one forward pass of the
whole prompt that yields the cache and the first token; each decode step feeds the previous token
and the cache. Both phases end with a device synchronize, so the times are the device's.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from energybench.measure.workloads import synchronize


@dataclass
class Prefilled:
    """The state after prefill: the cache of the prompt and the first new token, (batch, 1)."""

    cache: Any
    first_token: torch.Tensor
    prompt_len: int


@dataclass(frozen=True)
class Generation:
    tokens: torch.Tensor  # (batch, gen_tokens): the new tokens, on the CPU
    prefill_s: float  # the prompt's forward pass and the first token: time to first token
    decode_s: tuple[float, ...]  # one per decode step: gen_tokens - 1 steps
    cache_bytes: int  # the KV cache after the last step (prompt + generated tokens)

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Generated tokens of the whole batch per second of decoding (None with no decode step)."""
        return self.batch_size * len(self.decode_s) / sum(self.decode_s) if self.decode_s else None


def too_long(prompt_len: int, gen_tokens: int, positions: int) -> str | None:
    """Why a prompt of ``prompt_len`` tokens plus ``gen_tokens`` new ones does not fit ``positions``."""
    if prompt_len + gen_tokens <= positions:
        return None
    return (
        f"--seq-len {prompt_len} + --gen-tokens {gen_tokens} = {prompt_len + gen_tokens} exceeds the model's "
        f"maximum of {positions} positions; give --seq-len <= {max(positions - gen_tokens, 0)} or fewer --gen-tokens"
    )


def eos_token(model: nn.Module) -> int | None:
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None) if config is not None else None
    return eos[0] if isinstance(eos, list) and eos else eos


def cache_keyword(model: nn.Module) -> str:
    """The forward argument of the KV cache: ``cache`` in transformers >= 5.2x, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def cache_bytes(cache: Any) -> int:
    """Bytes held by the key and value tensors of a transformers Cache (``layers[i].keys/values``)."""
    tensors = [getattr(layer, name, None) for layer in getattr(cache, "layers", ()) for name in ("keys", "values")]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def next_token(logits: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """The greedy next token of every row, (batch, 1); EOS is never chosen (no early stop)."""
    last = logits[:, -1, :]
    if eos_id is not None and 0 <= eos_id < last.shape[-1]:
        last = last.clone()
        last[:, eos_id] = -float("inf")
    return last.argmax(dim=-1, keepdim=True)


@torch.inference_mode()
def prefill(model: nn.Module, input_ids: torch.Tensor, device: torch.device) -> tuple[Prefilled, float]:
    """The prompt's forward pass with the cache and the first token; (state, seconds)."""
    input_ids = input_ids.to(device)
    synchronize(device)
    start = time.perf_counter()
    out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)  # as generate(): the last logits only
    token = next_token(out.logits, eos_token(model))
    synchronize(device)
    seconds = time.perf_counter() - start
    return Prefilled(returned_cache(out), token, int(input_ids.shape[1])), seconds


@torch.inference_mode()
def decode(
    model: nn.Module, state: Prefilled, steps: int, device: torch.device
) -> tuple[list[torch.Tensor], list[float]]:
    """``steps`` decode steps from ``state`` (its cache grows): the new tokens and each step's seconds."""
    keyword, eos_id = cache_keyword(model), eos_token(model)
    token, cache, tokens, times = state.first_token, state.cache, [], []
    for _ in range(steps):
        start = time.perf_counter()
        out = model(input_ids=token, use_cache=True, **{keyword: cache})
        token = next_token(out.logits, eos_id)
        synchronize(device)
        times.append(time.perf_counter() - start)
        cache = returned_cache(out)
        tokens.append(token)
    state.cache = cache
    return tokens, times


def greedy(model: nn.Module, input_ids: torch.Tensor, gen_tokens: int, device: torch.device) -> Generation:
    """Greedy decoding of exactly ``gen_tokens`` tokens with the KV cache, prefill and each step timed."""
    state, prefill_s = prefill(model, input_ids, device)
    tokens, decode_s = decode(model, state, gen_tokens - 1, device)
    new = torch.cat([state.first_token, *tokens], dim=1).cpu()
    return Generation(new, prefill_s, tuple(decode_s), cache_bytes(state.cache))


def rewind(state: Prefilled) -> bool:
    """Crop the cache back to the prompt, so decoding can run again from the same prefilled state
    without a new prefill; False when this cache cannot be cropped (then decode cannot be metered alone).

    A DynamicCache grows by concatenation, so cropping leaves the prompt's keys and values as they were."""
    crop, length = getattr(state.cache, "crop", None), getattr(state.cache, "get_seq_length", None)
    if crop is None or length is None:
        return False
    extra = length() - state.prompt_len
    if extra > 0:
        crop(-extra)
    return length() == state.prompt_len


def decode_only_call(
    model: nn.Module, input_ids: torch.Tensor, gen_tokens: int, device: torch.device
) -> Callable[[], None] | None:
    """A no-argument call that decodes the ``gen_tokens - 1`` tokens after the first from one prefilled
    cache, rewound before each call: only decode steps run in it. None where decode cannot run alone
    (one new token has no decode step, or the cache cannot be rewound)."""
    if gen_tokens < 2:
        return None
    state, _ = prefill(model, input_ids, device)
    if not rewind(state):
        return None

    def run() -> None:
        rewind(state)
        decode(model, state, gen_tokens - 1, device)

    return run


def whole_generation_call(
    model: nn.Module, input_ids: torch.Tensor, gen_tokens: int, device: torch.device
) -> Callable[[], None]:
    """A no-argument call of one whole generation: prefill and every decode step."""

    def run() -> None:
        greedy(model, input_ids, gen_tokens, device)

    return run
