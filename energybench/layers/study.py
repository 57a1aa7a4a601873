"""The layer study of one session: layer tables, impact rows and the mixed plan, each computed once.

Pipeline: profile units with hooks -> apportion the window's energy by time share -> ablate each
unit against reference outputs -> per-unit int8/fp16 sensitivity on fp32 -> correlate -> plan.
Results are cached in ``session.study`` so the layer-energy, impact and ``mixed`` tests share them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from energybench.layers import ablation
from energybench.layers import units as layers
from energybench.models.precision import Prepared

DEFAULT_IMPACT_SAMPLES = 256  # SST-2 sentences, or WikiText-2 windows / 8 for language models


def memo(bench: Any, key: tuple, compute: Any) -> Any:
    cache = bench.session.study
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def items_per_pass(bench: Any, batch_size: int, prepared: Prepared) -> int:
    return batch_size * bench.shape(batch_size, prepared)["seq_len"] if bench.is_causal_lm else batch_size


def layer_table(bench: Any, precision: str, with_energy: bool = True) -> dict[str, Any]:
    """Profile, hook overhead, FLOPs and (when a meter reads) apportioned energy, once per precision."""
    return memo(
        bench,
        ("layers", bench.case.model, precision, with_energy),
        lambda: compute_layer_table(bench, precision, with_energy),
    )


def compute_layer_table(bench: Any, precision: str, with_energy: bool) -> dict[str, Any]:
    from energybench.measure.workloads import forward_call

    prepared = bench.prepared if precision == bench.case.precision else bench.session.fresh(bench.case.model, precision)
    batch_size = bench.settings.batch_size
    run = forward_call(prepared.model, bench.input_batch(batch_size, prepared), bench.device)
    items = items_per_pass(bench, batch_size, prepared)
    model_units = layers.units(prepared.model)
    passes = bench.settings.rounds
    prof = layers.profile(prepared.model, run, bench.device, passes, model_units)
    overhead = layers.hook_overhead(prof, batch_size)
    flops, total_flops = layers.flops_per_unit(prepared.model, run, model_units)
    meter = window_energy(bench, run, items) if with_energy else {"reason": "not metered (plan uses time only)"}
    out = layers.table(prof, model_units, flops, total_flops, items, meter.get("energy_j_per_sample"))
    return {**out, "hook_overhead": overhead, "meter": meter, "rounds_s": prof.end_to_end_s, "items": items}


def window_energy(bench: Any, run: Any, items: int) -> dict[str, Any]:
    """The measured window (energy.measure, no hooks attached) or None with the meter's reason."""
    from energybench.measure import energy

    meters = bench.session.meter_set
    primary = meters.primary() if meters is not None else None
    if primary is None:
        absent = "; ".join(f"{k}: {v}" for k, v in (meters.absent if meters else {}).items())
        return {
            "name": None,
            "method": None,
            "energy_j_per_sample": None,
            "reason": f"no power meter reads here ({absent or 'meters not opened'}); times only",
        }
    idle = bench.session.idle_reading(primary)
    result = energy.measure(
        run,
        meters,
        idle,
        items_per_call=items,
        configured_min_s=bench.settings.energy_min_s,
        min_calls=bench.settings.energy_min_calls,
    )
    return {
        "name": result.primary,
        "method": result.method,
        "energy_j_per_sample": result.per_item_j,
        "window_s": result.window_s,
        "calls": result.calls,
        "reason": result.reason,
    }


def evalset(bench: Any) -> ablation.EvalSet:
    """The impact subset, built once per model from the fp32 model's tokenizer."""
    return memo(bench, ("evalset", bench.case.model), lambda: build_evalset(bench))


def build_evalset(bench: Any) -> ablation.EvalSet:
    from energybench import data
    from energybench.measure import quality

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


def sensitivities(bench: Any) -> dict[str, dict[str, float | None]]:
    """Per unit: quality delta with only that unit at int8 / fp16, the rest fp32 (once per model)."""

    def compute() -> dict[str, dict[str, float | None]]:
        fp32 = bench.session.fresh(bench.case.model, "fp32")
        ev = evalset(bench)
        reference = ablation.outputs(fp32.model, ev, bench.device)
        return {
            u.name: ablation.sensitivity(fp32.model, u, ev, reference, bench.device) for u in layers.units(fp32.model)
        }

    return memo(bench, ("sensitivity", bench.case.model), compute)


def impact_rows(bench: Any) -> list[dict[str, Any]]:
    prepared = bench.prepared
    ev = evalset(bench)
    reference = ablation.outputs(prepared.model, ev, bench.device)  # once, reused by every ablation
    sens = sensitivities(bench)
    energy = {row["layer"]: row for row in layer_table(bench, bench.case.precision)["per_layer"]}
    rows = []
    for unit in layers.units(prepared.model):
        row = ablation.layer_impact(prepared.model, unit, ev, reference, bench.device)
        row["sensitivity"] = sens.get(unit.name, {"int8": None, "fp16": None})
        row["energy_j_per_sample"] = energy[unit.name]["energy_j_per_sample"]
        row["share"] = energy[unit.name]["share"]
        rows.append(row)
    return rows


def per_type(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layer type: mean KL / quality delta / impact per unit; energy and share summed."""
    out = []
    for kind in dict.fromkeys(r["layer_type"] for r in rows):
        group = [r for r in rows if r["layer_type"] == kind]
        energies = [r["energy_j_per_sample"] for r in group]
        out.append(
            {
                "layer_type": kind,
                "units": len(group),
                "kl_mean": sum(r["kl_mean"] for r in group) / len(group),
                "quality_delta": sum(r["quality_delta"] for r in group) / len(group),
                "impact_score": sum(r["impact_score"] for r in group) / len(group),
                "energy_j_per_sample": None if None in energies else sum(energies),
                "share": sum(r["share"] for r in group),
            }
        )
    return out


def correlations(rows: list[dict[str, Any]], types: list[dict[str, Any]]) -> dict[str, Any]:
    """Energy vs impact. Apportioned energy is the time share x one window total, so when no meter
    reads, the share gives the same Pearson and Spearman coefficients; ``x`` says which was used."""
    from energybench.layers.correlate import correlation

    x = "energy_j_per_sample" if all(r["energy_j_per_sample"] is not None for r in rows) else "share"
    return {
        level: {**correlation([r[x] for r in table], [r["impact_score"] for r in table]), "x": x}
        for level, table in (("per_layer", rows), ("per_type", types))
    }


def mixed_plan(bench: Any) -> dict[str, Any]:
    """The plan for this model, from the fp32 and int8 layer times and the fp32 int8 sensitivities."""
    return memo(bench, ("plan", bench.case.model), lambda: compute_plan(bench))


def compute_plan(bench: Any) -> dict[str, Any]:
    from energybench.layers import plan as mixed

    task = "causal-lm" if bench.is_causal_lm else "sequence-classification"
    metric = "perplexity" if bench.is_causal_lm else "accuracy"
    budget = bench.settings.budget_for(metric, bench.case.model, "mixed")
    metered = bench.session.study.get(("layers", bench.case.model, "fp32", True))  # reuse a metered profile
    fp32 = metered or layer_table(bench, "fp32", with_energy=False)
    int8 = {r["layer"]: r for r in layer_table(bench, "int8", with_energy=False)["per_layer"]}
    sens = sensitivities(bench)
    candidates = [
        {
            "layer": r["layer"],
            "energy_j_per_sample": r["time_s_per_sample"],
            "int8_energy_j_per_sample": int8.get(r["layer"], {}).get("time_s_per_sample"),
            "int8_delta": sens.get(r["layer"], {}).get("int8"),
        }
        for r in fp32["per_layer"]
    ]
    total = sum(fp32["rounds_s"]) / (len(fp32["rounds_s"]) * fp32["items"])
    result = mixed.plan(candidates, budget, task, total)
    result["basis"] = "energy taken proportional to hooked time per sample at fp32 and int8 (same power)"
    return result


def prepare_mixed(session: Any, bench: Any) -> Prepared:
    """The ``mixed`` precision: the fp32 model with the plan's units at int8 (plan computed on demand)."""
    from energybench.layers import plan as mixed
    from energybench.models.precision import PrecisionUnsupported, unsupported_reason

    reason = unsupported_reason("int8", session.device)
    if reason:
        raise PrecisionUnsupported(f"mixed uses int8: {reason}")
    result = mixed_plan(bench)
    loaded = session.loaded(bench.case.model)
    model, details = mixed.build(loaded.model, result["quantize"])
    implementation = "fp32 with the plan's units at torch.ao dynamic int8"
    return Prepared(loaded, model, "mixed", implementation, {**details, "plan": result}, session.device)


def as_dicts(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
