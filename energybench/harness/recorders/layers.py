"""The layer study of a case: per-layer time, share and apportioned energy (``layer-energy``), the
prediction impact of every unit with the correlations and the mixed plan (``impact``), and the
``mixed`` precision built from that plan. Each piece is computed once per session (``session.study``).

The apportioned energy comes from a metered window with no hooks attached: the energy test's own
window of the same case and shape when one ran in this session, else one metered here
(``session.metered``). Layer times always come from the hooked passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from energybench.catalog import BASELINE_PRECISION
from energybench.harness.case import Case
from energybench.harness.recorders.energy import shared_window
from energybench.layers import ablation, study
from energybench.layers import plan as mixed
from energybench.layers.rows import ImpactRow, ImpactStudy, Plan, Window
from energybench.layers.units import LayerMappingError
from energybench.measure.workloads import forward_call
from energybench.models.precision import PrecisionUnsupported, Prepared, unsupported_reason
from energybench.results.schema import Record, TimingStats

T = TypeVar("T")


def record(case: Case) -> list[Record]:
    """The case's layer-energy record, or its impact and energy-impact-rho records."""
    return [layer_energy(case)] if case.spec.metric == "layer-energy" else impact(case)


def layer_energy(case: Case) -> Record:
    """Per layer type and per unit: time, share, FLOPs and apportioned energy, with the checks."""
    case.require_trained_weights()
    case.require_hooks()
    try:
        profiled = layer_table(case, case.spec.precision)
    except LayerMappingError as error:
        case.skip(str(error))
    table, window = profiled.table, profiled.table.meter
    unit = "J/token" if case.is_causal_lm else "J/sample"
    source = f"the window of {window.energy_test}" if window.energy_test else "a window of its own"
    method = (
        f"apportioned: {window.basis} window energy ({window.name}, {source}) x hooked time share, "
        f"{len(profiled.rounds_s)} passes, {table.timer}; not a per-layer reading"
    )
    return case.record(
        window.energy_j_per_sample,
        unit,
        method,
        basis="apportioned",
        reason=window.reason,
        timing=TimingStats.from_rounds(profiled.rounds_s),
        shape=case.shape(case.settings.batch_size),
        details=table.to_dict(),
    )


def impact(case: Case) -> list[Record]:
    """Per unit: ablation KL and quality delta, int8/fp16 sensitivity, energy; correlations; plan."""
    case.require_trained_weights()
    case.require_hooks()
    try:
        rows = impact_rows(case)
    except LayerMappingError as error:
        case.skip(str(error))
    types = study.per_type(rows)
    correlation = study.correlations(rows, types)
    found = ImpactStudy(
        samples=evalset(case).samples,
        impact_score=ablation.IMPACT_SCORE,
        per_layer=rows,
        per_type=types,
        correlation=correlation,
        plan=mixed_plan(case) if case.device.type == "cpu" else None,
    )
    largest = study.largest_impact(rows)
    method = f"largest per-unit impact score ({ablation.IMPACT_SCORE}), every unit's in details"
    details = {**found.to_dict(), "largest_unit": largest.layer, "largest_unit_type": largest.layer_type}
    score = case.record(largest.impact_score, "nats", method, details=details)
    per_layer = correlation["per_layer"]
    method = f"Spearman rho of per-unit {per_layer.x} vs impact score ({ablation.IMPACT_SCORE})"
    rho = {"correlation": {level: dataclasses.asdict(c) for level, c in correlation.items()}}
    return [
        score,
        case.record(per_layer.spearman_rho, "rho", method, "energy-impact-rho", reason=per_layer.reason, details=rho),
    ]


def memo(case: Case, key: tuple, compute: Callable[[], T]) -> T:
    cache = case.session.study
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def layer_table(case: Case, precision: str, with_energy: bool = True) -> study.Profiled:
    """Profile, hook overhead, FLOPs and (when a meter reads) apportioned energy, once per precision."""
    key = ("layers", case.spec.model, precision, with_energy)
    return memo(case, key, lambda: compute_layer_table(case, precision, with_energy))


def compute_layer_table(case: Case, precision: str, with_energy: bool) -> study.Profiled:
    own = precision == case.spec.precision
    prepared = case.prepared if own else case.session.fresh(case.spec.model, precision)
    batch_size = case.settings.batch_size
    shape = case.shape(batch_size, prepared)
    run = forward_call(prepared.model, case.input_batch(batch_size, prepared), case.device)
    found = hooked_passes(case, precision, prepared.model, run, case.spec.backend if own else "eager")
    if not with_energy:
        window = Window(reason="not metered (plan uses time only)")
    else:
        window = energy_window(case, run, shape) if own else metered_window(case, run, case.items(shape))
    return study.layer_table(found, case.items(shape), batch_size, window)


def hooked_passes(case: Case, precision: str, model: Any, run: Callable[[], None], backend: str) -> study.Hooked:
    """The hooked passes of one precision, once per session: the plan's time-only table (int8, fp32)
    and that precision's layer-energy record share them (the same conversion of the same model)."""
    key = ("hooked", case.spec.model, precision, backend)
    return memo(case, key, lambda: study.hooked(model, run, case.device, case.settings.rounds))


def energy_window(case: Case, run: Callable[[], None], shape: dict[str, int]) -> Window:
    """The energy test's window of this case and shape (same model, same fixed batch, no hooks), or
    one metered now where no energy test of it ran in this session."""
    shared = shared_window(case, shape)
    if shared is None:
        return metered_window(case, run, case.items(shape))
    return window_of(shared.result, energy_test=shared.test_id)


def metered_window(case: Case, run: Callable[[], None], items: int) -> Window:
    """A window metered now (session.metered, no hooks attached), or a reason why no meter reads."""
    absent = case.session.meter_absence()
    if absent is not None:
        return Window(reason=f"no power meter reads here ({absent}); times only")
    result, _ = case.session.metered(run, items, "samples")
    return window_of(result)


def window_of(result: Any, energy_test: str | None = None) -> Window:
    return Window(
        name=result.primary,
        basis=result.method,
        energy_j_per_sample=result.per_item_j,
        window_s=result.window_s,
        calls=result.calls,
        reason=result.reason,
        energy_test=energy_test,
    )


def evalset(case: Case) -> ablation.EvalSet:
    """The impact subset, built once per model from the fp32 model's tokenizer."""
    settings = case.settings

    def compute() -> ablation.EvalSet:
        return study.impact_set(
            case.session.loaded(case.spec.model),
            case.device,
            causal_lm=case.is_causal_lm,
            impact_samples=settings.impact_samples,
            batch_size=settings.batch_size,
            seq_len=settings.seq_len,
        )

    return memo(case, ("evalset", case.spec.model), compute)


def sensitivities(case: Case) -> dict[str, dict[str, float | None]]:
    """Per unit: quality delta with only that unit at int8 / fp16, the rest fp32 (once per model)."""

    def compute() -> dict[str, dict[str, float | None]]:
        fp32 = case.session.fresh(case.spec.model, BASELINE_PRECISION)
        return study.sensitivities(fp32.model, evalset(case), case.device)

    return memo(case, ("sensitivity", case.spec.model), compute)


def impact_rows(case: Case) -> list[ImpactRow]:
    energy_rows = layer_table(case, case.spec.precision).table.per_layer
    return study.impact_rows(case.prepared.model, evalset(case), case.device, sensitivities(case), energy_rows)


def mixed_plan(case: Case) -> Plan:
    """The plan for this model, from the fp32 and int8 layer times and the fp32 int8 sensitivities."""
    return memo(case, ("plan", case.spec.model), lambda: compute_plan(case))


def compute_plan(case: Case) -> Plan:
    task = "causal-lm" if case.is_causal_lm else "sequence-classification"
    metric = "perplexity" if case.is_causal_lm else "accuracy"
    budget = case.settings.budget_for(metric, case.spec.model, "mixed")
    metered = case.session.study.get(("layers", case.spec.model, BASELINE_PRECISION, True))  # reuse a metered profile
    fp32: study.Profiled = metered or layer_table(case, BASELINE_PRECISION, with_energy=False)
    int8 = layer_table(case, "int8", with_energy=False).table.per_layer
    return study.plan(fp32, int8, sensitivities(case), budget, task)


def prepare_mixed(case: Case) -> Prepared:
    """The ``mixed`` precision: the fp32 model with the plan's units at int8 (plan computed on demand)."""
    if case.spec.backend != "eager":
        raise PrecisionUnsupported("mixed is built by the layer study's plan in eager PyTorch; use --backend eager")
    session = case.session
    reason = unsupported_reason("int8", session.device)
    if reason:
        raise PrecisionUnsupported(f"mixed uses int8: {reason}")
    result = mixed_plan(case)
    loaded = session.loaded(case.spec.model)
    model, details = mixed.build(loaded.model, result.quantize)
    implementation = "fp32 with the plan's units at torch.ao dynamic int8"
    return Prepared(loaded, model, "mixed", implementation, {**details, "plan": result.to_dict()}, session.device)
