"""Prediction impact of each layer: ablate it, compare with reference outputs computed once.

Impact score (documented in the record): the mean KL(P_reference || P_ablated) in nats, per
sentence for SST-2 (over the two classes) and per token for WikiText-2 (over the vocabulary),
on the same evaluation subset. Quality deltas sit next to it: accuracy change in points, or
perplexity change in percent. Per-layer precision sensitivity puts one unit at int8 or fp16
and leaves the rest at fp32.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from energybench.catalog import METRICS, QUALITY_METRICS
from energybench.layers.rows import ImpactRow
from energybench.layers.units import Unit
from energybench.measure.quality import encode_unpadded, label_order, pad_batch
from energybench.models.precision import conv1d_to_linear, count_quantized, linears_under, quantize_dynamic
from energybench.stats import mean_ci95

IMPACT_SCORE = "mean KL(P_reference || P_ablated) in nats per sentence (classes) or per token (vocabulary)"


@dataclass
class EvalSet:
    """Pre-built input batches and their targets: SST-2 labels or next-token ids."""

    task: str
    batches: list[dict[str, torch.Tensor]]
    labels: list[torch.Tensor]
    samples: int


@dataclass
class Outputs:
    logprobs: list[torch.Tensor]  # float32 log-probabilities per batch (masked positions dropped)

    def quality(self, evalset: EvalSet) -> tuple[float, torch.Tensor]:
        """(accuracy in [0, 1] or perplexity, per-sample scores: correct 0/1 or mean nll)."""
        if evalset.task == "sequence-classification":
            correct = torch.cat([(lp.argmax(-1) == y).float() for lp, y in zip(self.logprobs, evalset.labels)])
            return float(correct.mean()), correct
        nll = torch.cat(
            [-lp.gather(-1, y[..., None]).squeeze(-1).mean(-1) for lp, y in zip(self.logprobs, evalset.labels)]
        )
        return math.exp(float(nll.mean())), nll


def classification_set(model: nn.Module, tokenizer: Any, examples: list[tuple[str, int]], batch_size: int) -> EvalSet:
    items = encode_unpadded(tokenizer, [s for s, _ in examples], 512)
    order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
    to_output = {label: index for index, label in enumerate(label_order(model))}
    batches, labels = [], []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batches.append(pad_batch([items[i] for i in chunk], tokenizer.pad_token_id))
        labels.append(torch.tensor([to_output[examples[i][1]] for i in chunk]))
    return EvalSet("sequence-classification", batches, labels, len(examples))


def causal_set(input_ids: torch.Tensor, context: int, windows: int, batch_size: int) -> EvalSet:
    """``windows`` disjoint windows of ``context`` tokens; every token after the first is scored."""
    usable = min(windows, int(input_ids.numel()) // context)
    rows = input_ids[: usable * context].view(usable, context)
    batches = [{"input_ids": rows[i : i + batch_size]} for i in range(0, usable, batch_size)]
    return EvalSet("causal-lm", batches, [b["input_ids"][:, 1:] for b in batches], usable)


@torch.inference_mode()
def outputs(model: nn.Module, evalset: EvalSet, device: torch.device) -> Outputs:
    logprobs = []
    for batch in evalset.batches:
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
        if evalset.task == "causal-lm":
            logits = logits[:, :-1]
        logprobs.append(torch.log_softmax(logits, dim=-1))
    return Outputs(logprobs)


def kl_per_sample(reference: Outputs, other: Outputs) -> torch.Tensor:
    """KL(P_ref || P_other) per sample (per-token mean for language models), in nats."""
    out = []
    for ref, oth in zip(reference.logprobs, other.logprobs):
        kl = (ref.exp() * (ref - oth)).sum(-1)
        out.append(kl.mean(-1) if kl.dim() > 1 else kl)
    return torch.cat(out).clamp_min(0.0)


@contextmanager
def ablated(unit: Unit) -> Iterator[None]:
    """The unit's output replaced while inside: its input (identity), zeros (skip-residual, zero-output),
    or a rotary embedding's (cos, sin) as (1, 0) (no-rotation: the positions removed, nothing else)."""

    def replace(module: nn.Module, args: tuple, output: Any) -> Any:
        if unit.ablation == "identity":
            return args[0]
        if unit.ablation == "no-rotation":
            return unrotated(unit, output)
        if isinstance(output, tuple):
            return (torch.zeros_like(output[0]), *output[1:])
        return torch.zeros_like(output)

    handle = unit.module.register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def unrotated(unit: Unit, output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(output, tuple) and len(output) == 2 and all(isinstance(t, torch.Tensor) for t in output)):
        raise ValueError(
            f"ablation: {unit.name} ({type(unit.module).__name__}) does not return (cos, sin), so no-rotation cannot "
            "apply; give it another ablation with energybench.layers.extend_mapping"
        )
    cos, sin = output
    return torch.ones_like(cos), torch.zeros_like(sin)


def quality_delta(task: str, reference: float, other: float) -> float:
    """The task's quality metric moved from the reference, in its loss unit: accuracy in points
    (negative = worse), perplexity in percent (positive = worse)."""
    return METRICS[QUALITY_METRICS[task]].change(other, reference)


def layer_impact(model: nn.Module, unit: Unit, evalset: EvalSet, reference: Outputs, device: torch.device) -> ImpactRow:
    """The unit's ablation: KL against the reference outputs and the quality delta (sensitivity and energy unset)."""
    with ablated(unit):
        result = outputs(model, evalset, device)
    kl_mean, (kl_lo, kl_hi) = mean_ci95(kl_per_sample(reference, result).double().numpy())
    ref_quality, ref_scores = reference.quality(evalset)
    quality, scores = result.quality(evalset)
    delta_ci: tuple[float | None, float | None] = (None, None)
    if evalset.task == "sequence-classification":  # paired per-sentence differences: the subset's CI
        low, high = mean_ci95((scores - ref_scores).double().numpy())[1]
        delta_ci = (low * 100.0, high * 100.0)
    return ImpactRow(
        layer=unit.name,
        layer_type=unit.layer_type,
        ablation=unit.ablation,
        kl_mean=kl_mean,
        kl_ci95_lo=kl_lo,
        kl_ci95_hi=kl_hi,
        quality_delta=quality_delta(evalset.task, ref_quality, quality),
        impact_score=kl_mean,
        quality_delta_ci95_lo=delta_ci[0],
        quality_delta_ci95_hi=delta_ci[1],
    )


class Fp16Unit(nn.Module):
    """One unit computed in float16 between float32 neighbours (inputs cast down, outputs cast back)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner.half()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(cast(a, torch.float16) for a in args)
        kwargs = {k: cast(v, torch.float16) for k, v in kwargs.items()}
        return cast(self.inner(*args, **kwargs), torch.float32)


def cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(cast(v, dtype) for v in value)
    return value


def with_unit_at(model: nn.Module, name: str, precision: str) -> nn.Module | None:
    """A copy of the fp32 ``model`` with only ``name`` at int8 or fp16; None if int8 has nothing to quantize."""
    copied = copy.deepcopy(model)
    if precision == "int8":
        conv1d_to_linear(copied)
        targets = linears_under(copied, {name})
        if not targets:
            return None
        quantize_dynamic(copied, targets)
        return copied if count_quantized(copied) else None
    parent, _, child = name.rpartition(".")
    holder = copied.get_submodule(parent) if parent else copied
    setattr(holder, child, Fp16Unit(copy.deepcopy(getattr(holder, child))))  # deep copy unties shared weights
    return copied


def sensitivity(
    model: nn.Module,
    unit: Unit,
    evalset: EvalSet,
    reference: Outputs,
    device: torch.device,
    precisions: tuple[str, ...] = ("int8", "fp16"),
) -> dict[str, float | None]:
    """Quality delta vs fp32 with only this unit at each precision (None: nothing to convert)."""
    out: dict[str, float | None] = {}
    ref_quality = reference.quality(evalset)[0]
    for precision in precisions:
        if precision == "int8" and device.type != "cpu":
            out[precision] = None
            continue
        variant = with_unit_at(model, unit.name, precision)
        if variant is None:
            out[precision] = None
            continue
        out[precision] = quality_delta(evalset.task, ref_quality, outputs(variant, evalset, device).quality(evalset)[0])
    return out


def require_type(model_units: list[Unit], layer_type: str | None) -> list[Unit]:
    """The units to ablate; a clear error when the model has no layer of the requested type."""
    if layer_type is None:
        return model_units
    chosen = [u for u in model_units if u.layer_type == layer_type]
    if not chosen:
        present = ", ".join(dict.fromkeys(u.layer_type for u in model_units))
        raise ValueError(f"ablation: the model has no {layer_type!r} layers; its layer types are {present}")
    return chosen
