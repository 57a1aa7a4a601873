"""The inference passes a benchmark times or meters: fixed-shape inputs, a synchronized forward
call, peak memory of that call, and the serialized size of a model.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import io
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

RSS_SAMPLE_PERIOD_S = 0.001


@dataclass(frozen=True)
class PeakMemory:
    peak_bytes: int
    method: str


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def text_token_ids(tokenizer: Any, texts: list[str], needed: int) -> list[int]:
    """Real tokens from real text, concatenated until ``needed`` ids (no special tokens, no padding)."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= needed:
            return ids[:needed]
    raise ValueError(f"the evaluation text holds only {len(ids)} tokens, fewer than the {needed} needed")


def fixed_batch(
    ids: list[int] | None, *, batch_size: int, seq_len: int, vocab_size: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A (batch_size, seq_len) batch with every position real (attention mask all ones).

    Rows are consecutive slices of real text when ``ids`` is given; random ids (shape-only
    models, which have no trained tokenizer) otherwise.
    """
    if ids is None:
        generator = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    else:
        if len(ids) < batch_size * seq_len:
            raise ValueError(f"need {batch_size * seq_len} token ids for the batch, got {len(ids)}")
        input_ids = torch.tensor(ids[: batch_size * seq_len], dtype=torch.long).view(batch_size, seq_len)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def forward_call(
    model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device, event_times_s: list[float] | None = None
) -> Callable[[], None]:
    """A no-argument forward pass that starts and returns with the device idle (synchronized at both ends).

    With ``event_times_s`` on CUDA, a pair of CUDA events brackets each forward on its stream and
    the GPU-side seconds of every call are appended to the list (the device clock beside the host's).
    """
    on_device = {k: v.to(device) for k, v in batch.items()}
    timed = event_times_s is not None and device.type == "cuda"

    def run() -> None:
        synchronize(device)  # nothing queued before the call counts in it
        if timed:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        with torch.inference_mode():
            model(**on_device)
        if timed:
            end.record()
        synchronize(device)
        if timed:
            event_times_s.append(start.elapsed_time(end) / 1e3)

    return run


def memory_baseline(device: torch.device) -> int:
    """Bytes in use now: allocated tensor memory on GPU, process RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    import psutil  # deferred: heavy

    gc.collect()
    release_freed_heap()
    return psutil.Process().memory_info().rss


def release_freed_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so RSS tracks live memory.

    Without it, a model copy reuses pages freed by the previous one and RSS does not move.
    """
    name = ctypes.util.find_library("c")
    if name and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): RSS may under-count reuse
            pass


def peak_memory(run: Callable[[], None], device: torch.device, baseline: int) -> PeakMemory:
    """Peak memory of ``run()`` above ``baseline`` (taken with memory_baseline before the model copy)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        run()
        peak = torch.cuda.max_memory_allocated(device)
        return PeakMemory(peak - baseline, "torch.cuda.max_memory_allocated minus allocated before the model copy")
    import psutil  # deferred: heavy

    process = psutil.Process()
    peak = [process.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(RSS_SAMPLE_PERIOD_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    period_ms = RSS_SAMPLE_PERIOD_S * 1000
    return PeakMemory(
        peak[0] - baseline,
        f"process RSS peak (sampled every {period_ms:.0f} ms) minus RSS before the model copy",
    )


def tensor_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (packed int8 weights count via state_dict)."""
    seen, total = set(), 0
    for value in model.state_dict().values():
        tensors = value if isinstance(value, tuple) else (value,)
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor) and tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                total += tensor.numel() * tensor.element_size()
    return total


def model_bytes(model: Any) -> int:
    """The converted model's own bytes: its file for ONNX Runtime, its tensors for PyTorch (compiled too)."""
    if hasattr(model, "artifact_bytes"):
        return int(model.artifact_bytes)
    return tensor_bytes(getattr(model, "module", model))


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the same measure for every precision."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
