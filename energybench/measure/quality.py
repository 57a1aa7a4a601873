"""Quality metrics on evaluation sets: SST-2 accuracy and WikiText-2 perplexity.

Both follow the published protocols: accuracy over the full 872-sentence SST-2 validation
set (or a declared subset); perplexity by one of two protocols (``--ppl-protocol``):

- ``strided``: the sliding-window, token-weighted perplexity of the Hugging Face perplexity guide
  (https://huggingface.co/docs/transformers/perplexity), context the model's maximum, stride half of it;
- ``non-overlapping``: the convention of the GPTQ and AWQ papers (GPTQ's ``datautils``/``eval_ppl``):
  the test text joined with ``"\n\n"`` (as the HF guide does: the same token stream), cut into
  ``numel // context`` windows of ``context`` tokens (2048 where the model allows), the tail dropped,
  each window scored on its own (every token but its first).

The protocol, context and stride are in every perplexity record's details, and records of
different protocols are never compared (``energybench.results.compare``). A model whose generation
config asks for a quantized KV cache (the ``kv-*`` precisions) is scored through that cache: each
window's head is prefilled into it and the rest attends to the head's quantized keys and values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from energybench import data
from energybench.catalog import PPL_PROTOCOLS
from energybench.models.precision import Prepared
from energybench.models.quiet import quiet_transformers
from energybench.progress import advance


class QualitySettings(Protocol):
    """The settings a quality pass reads (the harness's Settings has them)."""

    max_samples: int | None
    batch_size: int
    ppl_context: int | None
    ppl_stride: int | None
    ppl_protocol: str  # catalog.PPL_PROTOCOLS


@dataclass(frozen=True)
class Accuracy:
    accuracy: float
    correct: int
    total: int
    padding: str
    correct_bits: str = ""  # per-example correctness, in data order: pack_bits (for paired tests)
    predicted_bits: str = ""  # per-example predicted label (1 positive), in data order: pack_bits (for flips)


def pack_bits(correct: list[bool]) -> str:
    """Per-example correctness as hex of packed bits (872 SST-2 sentences -> 218 characters)."""
    import numpy as np  # deferred: heavy

    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack_bits(bits: str, total: int) -> list[bool]:
    import numpy as np  # deferred: heavy

    unpacked = np.unpackbits(np.frombuffer(bytes.fromhex(bits), dtype=np.uint8))[:total]
    if unpacked.size != total:
        raise ValueError(f"correct_bits holds {unpacked.size} examples, not {total}")
    return [bool(x) for x in unpacked]


STRIDED, NON_OVERLAPPING = PPL_PROTOCOLS
PAPER_CONTEXT = 2048  # GPTQ / AWQ evaluate at 2048 tokens (the model's maximum where it is smaller)


@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    nll_per_token: float
    scored_tokens: int
    windows: int
    context: int
    stride: int
    total_tokens: int
    protocol: str = STRIDED
    kv_cache: str | None = None  # the quantized KV cache the windows were scored through, if any


def encode_unpadded(tokenizer: Any, sentences: list[str], max_len: int) -> list[dict[str, list[int]]]:
    encoded = tokenizer(sentences, truncation=True, max_length=max_len)
    names = [n for n in tokenizer.model_input_names if n in encoded]
    return [{n: encoded[n][i] for n in names} for i in range(len(sentences))]


def pad_batch(items: list[dict[str, list[int]]], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest member (dynamic) or to ``pad_to`` (fixed)."""
    length = pad_to or max(len(item["input_ids"]) for item in items)
    batch: dict[str, torch.Tensor] = {}
    for name in items[0]:
        fill = pad_id if name == "input_ids" else 0
        rows = [item[name][:length] + [fill] * (length - len(item[name][:length])) for item in items]
        batch[name] = torch.tensor(rows, dtype=torch.long)
    return batch


def label_order(model: nn.Module) -> list[int]:
    """Map model output index -> SST-2 label (0 negative, 1 positive) from ``config.id2label``."""
    id2label = {int(k): str(v).lower() for k, v in getattr(model.config, "id2label", {}).items()}
    if len(id2label) == 2 and any("neg" in v for v in id2label.values()):
        return [0 if "neg" in id2label[i] else 1 for i in range(2)]
    return [0, 1]


@torch.inference_mode()
def predict_labels(
    model: nn.Module,
    tokenizer: Any,
    sentences: list[str],
    *,
    batch_size: int,
    device: torch.device,
    max_len: int = 512,
    pad_to: int | None = None,
    progress: Any = None,
) -> list[int]:
    """Predicted SST-2 labels. Length-sorted dynamic padding unless ``pad_to`` fixes the length."""
    items = encode_unpadded(tokenizer, sentences, pad_to or max_len)
    order = list(range(len(items)))
    if pad_to is None:
        order.sort(key=lambda i: len(items[i]["input_ids"]))
    mapping = torch.tensor(label_order(model))
    predictions = [0] * len(items)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = pad_batch([items[i] for i in chunk], tokenizer.pad_token_id, pad_to)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        for i, label in zip(chunk, mapping[logits.argmax(-1).cpu()].tolist()):
            predictions[i] = label
        advance(progress, "accuracy", start + len(chunk), len(order))
    return predictions


def accuracy(model, tokenizer, examples, *, batch_size, device, pad_to=None, progress=None) -> Accuracy:
    predictions = predict_labels(
        model,
        tokenizer,
        [s for s, _ in examples],
        batch_size=batch_size,
        device=device,
        pad_to=pad_to,
        progress=progress,
    )
    hits = [p == label for p, (_, label) in zip(predictions, examples, strict=True)]
    padding = f"fixed to {pad_to}" if pad_to else "length-sorted dynamic"
    predicted = pack_bits([p == 1 for p in predictions])
    return Accuracy(sum(hits) / len(examples), sum(hits), len(examples), padding, pack_bits(hits), predicted)


def strided_windows(total: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, scored) per window, exactly as the HF guide's loop: each token is scored once."""
    windows, previous_end = [], 0
    for begin in range(0, total, stride):
        end = min(begin + context, total)
        windows.append((begin, end, end - previous_end))
        previous_end = end
        if end == total:
            break
    return windows


def non_overlapping_windows(total: int, context: int) -> list[tuple[int, int, int]]:
    """(begin, end, scored) of the GPTQ/AWQ protocol: ``total // context`` windows of exactly ``context``
    tokens side by side, the tail dropped (GPTQ's ``nsamples = numel // seqlen``)."""
    return [(i * context, (i + 1) * context, context) for i in range(total // context)]


def protocol_windows(total: int, context: int, stride: int, protocol: str) -> list[tuple[int, int, int]]:
    if protocol == STRIDED:
        if not 0 < stride <= context:
            raise ValueError(f"stride must be in 1..context ({context}), got {stride}")
        return strided_windows(total, context, stride)
    if protocol == NON_OVERLAPPING:
        if total < context:
            raise ValueError(f"the text has {total} tokens, fewer than one non-overlapping window of {context}")
        return non_overlapping_windows(total, context)
    raise ValueError(f"unknown perplexity protocol {protocol!r}; accepted: {', '.join(PPL_PROTOCOLS)}")


@torch.inference_mode()
def perplexity(
    model: nn.Module,
    input_ids: torch.Tensor,
    *,
    context: int,
    stride: int,
    batch_size: int,
    device: torch.device,
    max_windows: int | None = None,
    progress: Any = None,
    protocol: str = STRIDED,
    tap: Any = None,
) -> Perplexity:
    """Token-weighted perplexity of a 1-D token sequence by ``protocol`` (strided: the HF perplexity
    guide; non-overlapping: GPTQ/AWQ, ``stride`` is then ``context``).

    Log-probabilities are taken in float32 whatever the model's dtype, so a low-precision
    model is judged on its logits, not on rounding in the loss. ``tap`` (a
    ``measure.behaviour.LMTrace``) sees each forward's log-probs: behaviour in the same pass.
    """
    stride = context if protocol == NON_OVERLAPPING else stride
    windows = protocol_windows(int(input_ids.numel()), context, stride, protocol)[:max_windows]
    nll_sum, scored = 0.0, 0
    for start in range(0, len(windows), batch_size):
        advance(progress, "perplexity", start, len(windows))
        group = windows[start : start + batch_size]
        for length in sorted({end - begin for begin, end, _ in group}):  # the last window may be short
            same = [w for w in group if w[1] - w[0] == length]
            batch = torch.stack([input_ids[b:e] for b, e, _ in same]).to(device)
            logits = window_logits(model, batch, cache_head(length, min(t for _, _, t in same)))
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            token_nll = -logprobs.gather(-1, batch[:, 1:, None]).squeeze(-1)
            if tap is not None:
                tap.observe(same, logprobs, token_nll, batch)
            for row, (_, _, target_len) in enumerate(same):
                first = max(length - target_len, 1)  # the first token of a window has no prediction
                nll_sum += float(token_nll[row, first - 1 :].sum())
                scored += length - first
    nll = nll_sum / scored
    advance(progress, "perplexity", len(windows), len(windows))
    cache = kv_cache_label(model)
    total = int(input_ids.numel())
    return Perplexity(math.exp(nll), nll, scored, len(windows), context, stride, total, protocol, cache)


def cache_head(length: int, scored: int) -> int:
    """Where a window is split for a quantized KV cache: its unscored context (strided), or its first
    half where every token is scored (non-overlapping, a window's first)."""
    head = length - scored
    return head if head >= 1 else length // 2


def kv_cache_label(model: nn.Module) -> str | None:
    """``"quanto 4-bit, group 64"`` where the model's generation config asks for a quantized KV cache."""
    config = getattr(model, "generation_config", None)
    if getattr(config, "cache_implementation", None) != "quantized":
        return None
    cache = dict(getattr(config, "cache_config", None) or {})
    return f"{cache.get('backend', 'quanto')} {cache.get('nbits', 4)}-bit, group {cache.get('q_group_size', 64)}"


def window_logits(model: nn.Module, batch: torch.Tensor, head: int) -> torch.Tensor:
    """The float32 logits of a batch of windows: one forward pass, or, where the model asks for a
    quantized KV cache, the head prefilled into a fresh one and the rest attending to it."""
    if kv_cache_label(model) is None or not 0 < head < batch.shape[1]:
        return model(input_ids=batch).logits.float()
    from transformers import QuantizedCache  # deferred: heavy

    options = dict(model.generation_config.cache_config or {})
    cache = QuantizedCache(backend=options.pop("backend", "quanto"), config=model.config, **options)
    first = model(input_ids=batch[:, :head], cache=cache, use_cache=True).logits.float()
    rest = model(input_ids=batch[:, head:], cache=cache, use_cache=True).logits.float()
    return torch.cat([first, rest], dim=1)


# -- the quality pass of a prepared model on its evaluation data -------------------------------
@dataclass(frozen=True)
class Quality:
    value: float
    unit: str
    method: str
    data: dict[str, str]
    details: dict[str, Any]


def eval_examples(prepared: Prepared, settings: QualitySettings) -> tuple[list[tuple[str, int]], Any]:
    examples, file = data.sst2("validation")
    return examples[: settings.max_samples], file


def eval_text(prepared: Prepared) -> tuple[str, Any]:
    """Published and local checkpoints: the raw WikiText-2 test text (HF guide). Embedded models
    were trained on ``<unk>``-tokenized WikiText-2, so they are scored on the tokenized test split."""
    return data.wikitext2("test.tokens" if prepared.loaded.source.kind == "embedded" else "test.raw")


def quality(
    prepared: Prepared, metric: str, settings: QualitySettings, progress: Any = None, tap: Any = None
) -> Quality:
    """``tap``: perplexity only, a ``measure.behaviour.LMTrace`` (accuracy keeps its predictions itself)."""
    if metric == "accuracy":
        return accuracy_quality(prepared, settings, progress)
    return perplexity_quality(prepared, settings, progress, tap)


def accuracy_quality(prepared: Prepared, settings: QualitySettings, progress: Any = None) -> Quality:
    examples, file = eval_examples(prepared, settings)
    result = accuracy(
        prepared.model,
        prepared.loaded.tokenizer,
        examples,
        batch_size=settings.batch_size,
        device=prepared.device,
        progress=progress,
    )
    method = f"SST-2 validation accuracy, argmax over {result.total} sentences, {result.padding} padding"
    return Quality(result.accuracy, "fraction", method, file_dict(file), dataclasses.asdict(result))


def perplexity_quality(prepared: Prepared, settings: QualitySettings, progress: Any = None, tap: Any = None) -> Quality:
    text, file = eval_text(prepared)
    input_ids = tokenize_long_text(prepared.loaded.tokenizer, text)
    protocol = getattr(settings, "ppl_protocol", STRIDED)
    context, stride = protocol_context(max_positions(prepared.model), settings, protocol)
    with tap.watching(prepared.model, int(input_ids.numel())) if tap is not None else contextlib.nullcontext():
        result = perplexity(
            prepared.model,
            input_ids,
            context=context,
            stride=stride,
            batch_size=settings.batch_size,
            device=prepared.device,
            max_windows=settings.max_samples,
            progress=progress,
            protocol=protocol,
            tap=tap,
        )
    kind = (
        "strided sliding-window perplexity (HF guide)"
        if protocol == STRIDED
        else ("non-overlapping windows perplexity (GPTQ/AWQ papers)")
    )
    through = f", scored through a {result.kv_cache} quantized KV cache" if result.kv_cache else ""
    method = (
        f"{kind}, context {context}, stride {stride}, "
        f"token-weighted over {result.scored_tokens} tokens in {result.windows} windows{through}"
    )
    return Quality(result.perplexity, "perplexity", method, file_dict(file), dataclasses.asdict(result))


def protocol_context(positions: int, settings: QualitySettings, protocol: str) -> tuple[int, int]:
    """(context, stride): --ppl-context or the model's maximum (strided) / 2048 where it allows
    (non-overlapping); --ppl-stride or half the context (strided) / the context (non-overlapping)."""
    if protocol == NON_OVERLAPPING:
        context = settings.ppl_context or min(PAPER_CONTEXT, positions)
        return context, context
    context = settings.ppl_context or positions
    return context, settings.ppl_stride or max(context // 2, 1)


def tokenize_long_text(tokenizer: Any, text: str) -> Any:
    with quiet_transformers():  # "sequence longer than max length" is expected: it is windowed
        return torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)


def max_positions(model: nn.Module) -> int:
    config = model.config
    return int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 512))


def file_dict(file: Any) -> dict[str, str]:
    return dataclasses.asdict(file)
