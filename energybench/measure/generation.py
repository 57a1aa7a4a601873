"""Timed greedy decoding with the KV cache: prefill (time to first token) and every decode step apart.

Decoding is ``model.generate`` itself (greedy, the KV cache, ``min_new_tokens = max_new_tokens``:
exactly ``gen_tokens`` new tokens, EOS never ends it early), so a step costs what it costs a user of
generate, its per-step bookkeeping included. A streamer timestamps each step: generate hands it
every new token as a CPU tensor, a copy that waits for the device, so each stamp follows the step's
device work. Time to first token runs from the call to the first token; each decode step from one
token to the next. For the energy window, :func:`decode_only_call` runs the decode steps alone
from a prefilled cache (:func:`prefill` and :func:`rewind`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from energybench.catalog import MAX_GENERATION_PROMPT
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
    cache_bytes: int | None  # the KV cache after the last step (prompt + generated tokens), where asked for

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


def returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


CACHE_TENSORS = ("keys", "values", "_quantized_keys", "_quantized_values")


def cache_bytes(cache: Any) -> int:
    """Bytes held by the key and value tensors of a transformers Cache (``layers[i].keys/values``), the
    quantized ones of a QuantizedCache included (quanto tensors, HQQ's (tensor, meta) pairs)."""
    return sum(
        tensor_bytes(getattr(layer, name, None)) for layer in getattr(cache, "layers", ()) for name in CACHE_TENSORS
    )


def tensor_bytes(value: Any) -> int:
    """Bytes of a tensor, of the inner tensors of a tensor subclass (quanto's packed data and scales),
    or of the tensors in a tuple, list or dict; 0 for anything else."""
    if isinstance(value, torch.Tensor):
        flatten = getattr(value, "__tensor_flatten__", None)
        if flatten is not None and type(value) is not torch.Tensor and type(value) is not nn.Parameter:
            names, _ = flatten()
            return sum(tensor_bytes(getattr(value, name)) for name in names)
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    return 0


def quantized_cache_options(model: nn.Module) -> dict[str, Any] | None:
    """The ``cache_config`` of a model whose generation config asks for a quantized KV cache, else None."""
    config = getattr(model, "generation_config", None)
    if getattr(config, "cache_implementation", None) != "quantized":
        return None
    return dict(getattr(config, "cache_config", None) or {})


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


class StepClock:
    """A ``generate`` streamer that stamps the time of each put: the prompt first, then every new token."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.stamps.append(time.perf_counter())

    def end(self) -> None:
        pass


def generate_kwargs(model: nn.Module, input_ids: torch.Tensor, new_tokens: int) -> dict[str, Any]:
    """Greedy generate of exactly ``new_tokens`` tokens with the KV cache (the reference harness call)."""
    pad = getattr(model.generation_config, "pad_token_id", None)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "use_cache": True,
        "pad_token_id": eos_token(model) if pad is None else pad,
    }


@torch.inference_mode()
def greedy(
    model: nn.Module, input_ids: torch.Tensor, gen_tokens: int, device: torch.device, cache: Any = None
) -> Generation:
    """``model.generate`` of exactly ``gen_tokens`` greedy tokens, prefill and each decode step timed.

    ``cache``: an empty transformers Cache to fill (its bytes are then reported); None lets generate
    make its own, as a user's call does."""
    input_ids = input_ids.to(device)
    clock = StepClock()
    extra = {"cache": cache} if cache is not None else {}
    synchronize(device)
    start = time.perf_counter()
    with given_cache(model, cache):
        out = model.generate(**generate_kwargs(model, input_ids, gen_tokens), streamer=clock, **extra)
    synchronize(device)
    stamps = clock.stamps[1:]  # the first put is the prompt
    if len(stamps) != gen_tokens:
        raise RuntimeError(f"generate produced {len(stamps)} tokens, not the {gen_tokens} asked for")
    decode_s = tuple(later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False))
    new = out[:, input_ids.shape[1] :].cpu()
    return Generation(new, stamps[0] - start, decode_s, cache_bytes(cache) if cache is not None else None)


@contextlib.contextmanager
def given_cache(model: nn.Module, cache: Any) -> Iterator[None]:
    """generate() refuses a cache object beside the ``cache_implementation`` it was made from: while a
    cache is given, the model's generation config names none (restored after)."""
    config = getattr(model, "generation_config", None)
    implementation = getattr(config, "cache_implementation", None)
    if cache is None or implementation is None:
        yield
        return
    config.cache_implementation = None
    try:
        yield
    finally:
        config.cache_implementation = implementation


def empty_cache(model: nn.Module) -> Any:
    """A new cache for ``model`` (to read the KV cache's bytes after a generation): the QuantizedCache its
    generation config asks for, else a DynamicCache."""
    from transformers import DynamicCache, QuantizedCache  # deferred: heavy

    options = quantized_cache_options(model)
    if options is not None:
        return QuantizedCache(backend=options.pop("backend", "quanto"), config=model.config, **options)
    return DynamicCache(config=model.config)


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
    """A no-argument call of the ``gen_tokens - 1`` decode steps after the first token: ``generate``
    continues from one prefilled cache, rewound to the prompt before each call, so no prefill runs
    in it. None where decode cannot run alone (one new token has no decode step, or the cache
    cannot be rewound)."""
    if gen_tokens < 2 or quantized_cache_options(model) is not None:
        return None
    state, _ = prefill(model, input_ids, device)
    if not rewind(state):
        return None
    prompt_and_first = torch.cat([input_ids.to(device), state.first_token], dim=1)
    kwargs = generate_kwargs(model, prompt_and_first, gen_tokens - 1)

    def run() -> None:
        rewind(state)
        with torch.inference_mode():
            model.generate(**kwargs, cache=state.cache)
        synchronize(device)

    return run


def whole_generation_call(
    model: nn.Module, input_ids: torch.Tensor, gen_tokens: int, device: torch.device
) -> Callable[[], None]:
    """A no-argument call of one whole generation: prefill and every decode step."""

    def run() -> None:
        greedy(model, input_ids, gen_tokens, device)

    return run


def prompt_len(seq_len: int | None, gen_tokens: int, positions: int) -> int:
    """--seq-len where given, else the model's maximum - --gen-tokens, at most 128 (and at least 1)."""
    return seq_len or max(1, min(positions - gen_tokens, MAX_GENERATION_PROMPT))


def usage_problem(seq_len: int | None, gen_tokens: int, positions: int) -> str | None:
    """The usage error line where the prompt and the new tokens do not fit the model's positions."""
    return too_long(prompt_len(seq_len, gen_tokens, positions), gen_tokens, positions)
