"""The layer study's computation over models and passes: hooked unit profiles with FLOPs and the
apportioned energy, the impact subset, per-unit ablation and int8/fp16 sensitivity, per-type means,
correlations and the mixed plan's candidates. No session: ``harness.recorders.layers`` runs it
for a case and keeps each result once per session.

Pipeline: profile units with hooks -> apportion a metered window's energy by time share -> ablate each
unit against reference outputs -> per-unit int8/fp16 sensitivity on fp32 -> correlate -> plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from energybench import data
from energybench.catalog import BASELINE_PRECISION
from energybench.layers import ablation
from energybench.layers import plan as mixed
from energybench.layers import units as layers
from energybench.layers.correlate import correlation
from energybench.layers.rows import Candidate, Correlation, ImpactRow, ImpactTypeRow, LayerTable, Plan, UnitRow, Window
from energybench.measure import quality
from energybench.models.precision import Prepared
from energybench.models.registry import LoadedModel

DEFAULT_IMPACT_SAMPLES = 256  # SST-2 sentences, or WikiText-2 windows / 8 for language models
PLAN_ENERGY_PROXY = "energy taken proportional to hooked time per sample at fp32 and int8 (same power)"


@dataclass(frozen=True)
class Hooked:
    """One model's hooked passes: its units, their profile and FLOPs."""

    units: list[layers.Unit]
    profile: layers.Profile
    flops: dict[str, int]
    total_flops: int


@dataclass(frozen=True)
class Profiled:
    """One precision's layer table, with the hooked passes' times and the items per pass."""

    table: LayerTable
    rounds_s: list[float]
    items: int


def hooked(model: nn.Module, run: Callable[[], None], device: torch.device, rounds: int) -> Hooked:
    """Per-unit times of ``rounds`` hooked passes (interleaved with plain ones) and per-unit FLOPs."""
    model_units = layers.units(model)
    prof = layers.profile(model, run, device, rounds, model_units)
    flops, total_flops = layers.flops_per_unit(model, run, model_units)
    return Hooked(model_units, prof, flops, total_flops)


def layer_table(found: Hooked, items: int, batch_size: int, window: Window) -> Profiled:
    """The per-unit and per-type table: time share, FLOPs, the window's energy apportioned by time
    share, the sum check and the hooks' overhead."""
    table = layers.table(found.profile, found.units, found.flops, found.total_flops, items, window.energy_j_per_sample)
    overhead = layers.hook_overhead(found.profile, batch_size)
    table = dataclasses.replace(table, hook_overhead=overhead, meter=window)
    return Profiled(table, found.profile.end_to_end_s, items)


def impact_set(
    loaded: LoadedModel,
    device: torch.device,
    *,
    causal_lm: bool,
    impact_samples: int | None,
    batch_size: int,
    seq_len: int,
) -> ablation.EvalSet:
    """The impact subset from the fp32 model's tokenizer: SST-2 sentences, or WikiText-2 windows."""
    samples = impact_samples or DEFAULT_IMPACT_SAMPLES
    if not causal_lm:
        examples = data.sst2("validation")[0][:samples]
        return ablation.classification_set(loaded.model, loaded.tokenizer, examples, batch_size)
    prepared = Prepared(loaded, loaded.model, BASELINE_PRECISION, "", {}, device)
    ids = quality.tokenize_long_text(loaded.tokenizer, quality.eval_text(prepared)[0])
    context = min(seq_len, quality.max_positions(loaded.model))
    windows = impact_samples or DEFAULT_IMPACT_SAMPLES // 8
    return ablation.causal_set(ids, context, windows, batch_size)


def sensitivities(fp32: nn.Module, ev: ablation.EvalSet, device: torch.device) -> dict[str, dict[str, float | None]]:
    """Per unit: quality delta with only that unit at int8 / fp16, the rest fp32."""
    reference = ablation.outputs(fp32, ev, device)
    return {u.name: ablation.sensitivity(fp32, u, ev, reference, device) for u in layers.units(fp32)}


def impact_rows(
    model: nn.Module,
    ev: ablation.EvalSet,
    device: torch.device,
    sens: dict[str, dict[str, float | None]],
    energy_rows: list[UnitRow],
) -> list[ImpactRow]:
    """Per unit: its ablation's KL and quality delta, its int8/fp16 sensitivity and its energy row."""
    reference = ablation.outputs(model, ev, device)  # once, reused by every ablation
    by_unit = {row.layer: row for row in energy_rows}
    rows = []
    for unit in layers.units(model):
        row = ablation.layer_impact(model, unit, ev, reference, device)
        unit_sensitivity = sens.get(unit.name, {})
        rows.append(
            dataclasses.replace(
                row,
                int8_quality_delta=unit_sensitivity.get("int8"),
                fp16_quality_delta=unit_sensitivity.get("fp16"),
                energy_j_per_sample=by_unit[unit.name].energy_j_per_sample,
                share=by_unit[unit.name].share,
            )
        )
    return rows


def per_type(rows: list[ImpactRow]) -> list[ImpactTypeRow]:
    """Per layer type: mean KL / quality delta / impact per unit; energy and share summed."""
    out = []
    for kind in dict.fromkeys(r.layer_type for r in rows):
        group = [r for r in rows if r.layer_type == kind]
        energies = [r.energy_j_per_sample for r in group]
        shares = [r.share for r in group]
        out.append(
            ImpactTypeRow(
                layer_type=kind,
                units=len(group),
                kl_mean=sum(r.kl_mean for r in group) / len(group),
                quality_delta=sum(r.quality_delta for r in group) / len(group),
                impact_score=sum(r.impact_score for r in group) / len(group),
                energy_j_per_sample=None if None in energies else sum(energies),  # type: ignore[arg-type]
                share=None if None in shares else sum(shares),  # type: ignore[arg-type]
            )
        )
    return out


def largest_impact(rows: list[ImpactRow]) -> ImpactRow:
    """The unit whose ablation moves the predictions most: the ``impact`` record's value. The largest
    rather than the mean, because the question the number answers is "is there a unit this model
    cannot lose?"; every unit's score stays in the record's rows."""
    return max(rows, key=lambda r: r.impact_score)


def correlations(rows: list[ImpactRow], types: list[ImpactTypeRow]) -> dict[str, Correlation]:
    """Energy vs impact. Apportioned energy is the time share x one window total, so when no meter
    reads, the share gives the same Pearson and Spearman coefficients; ``x`` says which was used."""
    x = "energy_j_per_sample" if all(r.energy_j_per_sample is not None for r in rows) else "share"
    return {
        level: dataclasses.replace(
            correlation([getattr(r, x) for r in table], [r.impact_score for r in table]),
            x=x,
        )
        for level, table in (("per_layer", rows), ("per_type", types))
    }


def plan(
    fp32: Profiled,
    int8_rows: list[UnitRow],
    sens: dict[str, dict[str, float | None]],
    budget: float | None,
    task: str,
) -> Plan:
    """The mixed plan from the fp32 and int8 layer times and the fp32 int8 sensitivities."""
    int8 = {r.layer: r for r in int8_rows}
    candidates = [
        Candidate(
            layer=r.layer,
            energy_j_per_sample=r.time_s_per_sample,
            int8_energy_j_per_sample=int8[r.layer].time_s_per_sample if r.layer in int8 else None,
            int8_delta=sens.get(r.layer, {}).get("int8"),
        )
        for r in fp32.table.per_layer
    ]
    total = sum(fp32.rounds_s) / (len(fp32.rounds_s) * fp32.items)
    return mixed.plan(candidates, budget, task, total, proxy=PLAN_ENERGY_PROXY)
