"""The layer study of one session: layer tables, impact rows and the mixed plan, each computed once.

Pipeline: profile units with hooks -> apportion the window's energy by time share -> ablate each
unit against reference outputs -> per-unit int8/fp16 sensitivity on fp32 -> correlate -> plan.
Results are cached in ``session.study`` so the layer-energy, impact and ``mixed`` tests share them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

from energybench import data
from energybench.layers import ablation
from energybench.layers import plan as mixed
from energybench.layers import units as layers
from energybench.layers.correlate import correlation
from energybench.layers.rows import Candidate, Correlation, ImpactRow, ImpactTypeRow, LayerTable, Plan, Window
from energybench.measure import energy, quality
from energybench.measure.workloads import forward_call
from energybench.models.precision import PrecisionUnsupported, Prepared, unsupported_reason

DEFAULT_IMPACT_SAMPLES = 256  # SST-2 sentences, or WikiText-2 windows / 8 for language models
PLAN_ENERGY_PROXY = "energy taken proportional to hooked time per sample at fp32 and int8 (same power)"
T = TypeVar("T")


class Bench(Protocol):
    """What the study reads of the ``eb`` fixture's object (``energybench.harness.fixture.Bench``)."""

    session: Any  # energybench.harness.session.BenchSession (a later stage)
    case: Any  # energybench.harness.session.Case
    settings: Any  # energybench.harness.options.Settings
    prepared: Prepared
    device: torch.device
    is_causal_lm: bool

    def shape(self, batch_size: int, prepared: Prepared | None = None) -> dict[str, int]: ...

    def input_batch(self, batch_size: int, prepared: Prepared | None = None) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class Profiled:
    """One precision's layer table, with the hooked passes' times and the items per pass."""

    table: LayerTable
    rounds_s: list[float]
    items: int


def memo(bench: Bench, key: tuple, compute: Callable[[], T]) -> T:
    cache = bench.session.study
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def items_per_pass(bench: Bench, batch_size: int, prepared: Prepared) -> int:
    return batch_size * bench.shape(batch_size, prepared)["seq_len"] if bench.is_causal_lm else batch_size


def layer_table(bench: Bench, precision: str, with_energy: bool = True) -> Profiled:
    """Profile, hook overhead, FLOPs and (when a meter reads) apportioned energy, once per precision."""
    return memo(
        bench,
        ("layers", bench.case.model, precision, with_energy),
        lambda: compute_layer_table(bench, precision, with_energy),
    )


def compute_layer_table(bench: Bench, precision: str, with_energy: bool) -> Profiled:
    prepared = bench.prepared if precision == bench.case.precision else bench.session.fresh(bench.case.model, precision)
    batch_size = bench.settings.batch_size
    run = forward_call(prepared.model, bench.input_batch(batch_size, prepared), bench.device)
    items = items_per_pass(bench, batch_size, prepared)
    model_units = layers.units(prepared.model)
    prof = layers.profile(prepared.model, run, bench.device, bench.settings.rounds, model_units)
    flops, total_flops = layers.flops_per_unit(prepared.model, run, model_units)
    window = window_energy(bench, run, items) if with_energy else Window(reason="not metered (plan uses time only)")
    table = layers.table(prof, model_units, flops, total_flops, items, window.energy_j_per_sample)
    table = dataclasses.replace(table, hook_overhead=layers.hook_overhead(prof, batch_size), meter=window)
    return Profiled(table, prof.end_to_end_s, items)


def window_energy(bench: Bench, run: Callable[[], None], items: int) -> Window:
    """The measured window (energy.measure, no hooks attached), or a reason why no meter reads."""
    meters = bench.session.meter_set
    primary = meters.primary() if meters is not None else None
    if primary is None:
        absent = "; ".join(f"{k}: {v}" for k, v in (meters.absent if meters else {}).items())
        return Window(reason=f"no power meter reads here ({absent or 'meters not opened'}); times only")
    idle = bench.session.idle_reading(primary)
    result = energy.measure(
        run,
        meters,
        idle,
        items_per_call=items,
        configured_min_s=bench.settings.energy_min_s,
        min_calls=bench.settings.energy_min_calls,
    )
    return Window(
        name=result.primary,
        basis=result.method,
        energy_j_per_sample=result.per_item_j,
        window_s=result.window_s,
        calls=result.calls,
        reason=result.reason,
    )


def evalset(bench: Bench) -> ablation.EvalSet:
    """The impact subset, built once per model from the fp32 model's tokenizer."""
    return memo(bench, ("evalset", bench.case.model), lambda: build_evalset(bench))


def build_evalset(bench: Bench) -> ablation.EvalSet:
    loaded = bench.session.loaded(bench.case.model)
    samples = bench.settings.impact_samples or DEFAULT_IMPACT_SAMPLES
    if not bench.is_causal_lm:
        examples = data.sst2("validation")[0][:samples]
        return ablation.classification_set(loaded.model, loaded.tokenizer, examples, bench.settings.batch_size)
    prepared = Prepared(loaded, loaded.model, "fp32", "", {}, bench.device)
    ids = quality.tokenize_long_text(loaded.tokenizer, quality.eval_text(prepared)[0])
    context = min(bench.settings.seq_len, quality.max_positions(loaded.model))
    windows = bench.settings.impact_samples or DEFAULT_IMPACT_SAMPLES // 8
    return ablation.causal_set(ids, context, windows, bench.settings.batch_size)


def sensitivities(bench: Bench) -> dict[str, dict[str, float | None]]:
    """Per unit: quality delta with only that unit at int8 / fp16, the rest fp32 (once per model)."""

    def compute() -> dict[str, dict[str, float | None]]:
        fp32 = bench.session.fresh(bench.case.model, "fp32")
        ev = evalset(bench)
        reference = ablation.outputs(fp32.model, ev, bench.device)
        return {
            u.name: ablation.sensitivity(fp32.model, u, ev, reference, bench.device) for u in layers.units(fp32.model)
        }

    return memo(bench, ("sensitivity", bench.case.model), compute)


def impact_rows(bench: Bench) -> list[ImpactRow]:
    prepared = bench.prepared
    ev = evalset(bench)
    reference = ablation.outputs(prepared.model, ev, bench.device)  # once, reused by every ablation
    sens = sensitivities(bench)
    energy_rows = {row.layer: row for row in layer_table(bench, bench.case.precision).table.per_layer}
    rows = []
    for unit in layers.units(prepared.model):
        row = ablation.layer_impact(prepared.model, unit, ev, reference, bench.device)
        unit_sensitivity = sens.get(unit.name, {})
        rows.append(
            dataclasses.replace(
                row,
                int8_quality_delta=unit_sensitivity.get("int8"),
                fp16_quality_delta=unit_sensitivity.get("fp16"),
                energy_j_per_sample=energy_rows[unit.name].energy_j_per_sample,
                share=energy_rows[unit.name].share,
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


def mixed_plan(bench: Bench) -> Plan:
    """The plan for this model, from the fp32 and int8 layer times and the fp32 int8 sensitivities."""
    return memo(bench, ("plan", bench.case.model), lambda: compute_plan(bench))


def compute_plan(bench: Bench) -> Plan:
    task = "causal-lm" if bench.is_causal_lm else "sequence-classification"
    metric = "perplexity" if bench.is_causal_lm else "accuracy"
    budget = bench.settings.budget_for(metric, bench.case.model, "mixed")
    metered = bench.session.study.get(("layers", bench.case.model, "fp32", True))  # reuse a metered profile
    fp32: Profiled = metered or layer_table(bench, "fp32", with_energy=False)
    int8 = {r.layer: r for r in layer_table(bench, "int8", with_energy=False).table.per_layer}
    sens = sensitivities(bench)
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


def prepare_mixed(session: Any, bench: Bench) -> Prepared:
    """The ``mixed`` precision: the fp32 model with the plan's units at int8 (plan computed on demand)."""
    reason = unsupported_reason("int8", session.device)
    if reason:
        raise PrecisionUnsupported(f"mixed uses int8: {reason}")
    result = mixed_plan(bench)
    loaded = session.loaded(bench.case.model)
    model, details = mixed.build(loaded.model, result.quantize)
    implementation = "fp32 with the plan's units at torch.ao dynamic int8"
    return Prepared(loaded, model, "mixed", implementation, {**details, "plan": result.to_dict()}, session.device)
