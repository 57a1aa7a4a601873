"""The mixed-precision plan: which units to put at int8, and the model built from it.

Greedy on measured figures: each candidate unit's predicted energy saving is its fp32 energy
minus the energy of its measured int8 time (energy taken proportional to time at the window's
power); its predicted quality loss is its int8 sensitivity (only that unit at int8). Units are
taken in order of saving per unit of loss while the summed loss stays within the budget
(losses taken as additive, gains counted as zero loss).
"""

from __future__ import annotations

import copy

from torch import nn

from energybench.layers.rows import Candidate, Plan
from energybench.models.precision import conv1d_to_linear, count_quantized, linears_under, quantize_dynamic

PLAN_PRECISION = "int8"


def loss_of(task: str, delta: float) -> float:
    """A quality delta as a non-negative loss: accuracy points lost, or perplexity percent gained."""
    loss = -delta if task == "sequence-classification" else delta
    return max(loss, 0.0)


def plan(candidates: list[Candidate], budget: float, task: str, total_energy_j: float | None, proxy: str = "") -> Plan:
    """Units to put at int8, greedy by saving per point of loss while the summed loss fits the budget."""
    if budget is None or budget < 0:
        raise ValueError(f"mixed plan: the accuracy-loss budget must be a number >= 0, got {budget!r}")
    usable = [c for c in candidates if c.usable]
    loss = {c.layer: loss_of(task, c.int8_delta) for c in usable}  # type: ignore[arg-type]
    chosen, spent, saved, delta = [], 0.0, 0.0, 0.0
    for c in sorted(usable, key=lambda c: c.saving_j / (loss[c.layer] + 1e-6), reverse=True):
        if c.saving_j <= 0 or spent + loss[c.layer] > budget + 1e-9:
            continue
        chosen.append(c.layer)
        spent, saved, delta = spent + loss[c.layer], saved + c.saving_j, delta + c.int8_delta  # type: ignore[operator]
    return Plan(
        budget=budget,
        quantize=chosen,
        precision_of_quantized=PLAN_PRECISION,
        predicted_quality_delta=delta,
        predicted_loss=spent,
        predicted_energy_saving_pct=saved / total_energy_j * 100.0 if total_energy_j else None,
        method="greedy by predicted energy saving per point of int8 loss; losses assumed additive",
        energy_proxy=proxy,
    )


def build(model: nn.Module, quantize: list[str]) -> tuple[nn.Module, dict[str, int]]:
    """A copy of the fp32 model with the planned units at dynamic int8, the rest fp32."""
    copied = copy.deepcopy(model).to("cpu").eval()
    converted = conv1d_to_linear(copied)
    targets = linears_under(copied, quantize)
    if targets:
        quantize_dynamic(copied, targets)
    details = {"quantized_linear_modules": count_quantized(copied), "conv1d_converted_to_linear": converted}
    return copied, details
