"""The recommendation: per model, the measured configuration (precision, backend, batch size)
that meets every quality budget with the least energy (or latency) per item, its margin to the
runner-up and the basis of its number; or, when nothing meets the budget, the closest and by how much.

Candidates are the (precision, backend, shape) configurations with an objective record whose
quality passes: the loss vs eager fp32 within the record's budget, or within ``--budget``'s limit
when given; fp32 passes by definition. A configuration without a quality record is not a
candidate (its loss is unknown). ``--budget`` also takes a user's own metric that the run declared
(``f1:1pp``, ``f1:2%``), its loss read against eager fp32 of the same model.

Energy ranks only measured figures (basis ``measured`` or ``sampled``, the bases the gate accepts):
an estimate is shown, never ranked on, as it is never gated on. CodeCarbon's estimate on a CPU is
an assumed power times the measured time, so ranking by it is ranking by time with a made-up
factor that may hide a tie or invent a margin. Where a model's energy is only estimated, the
recommendation says so and is decided by the measured figure the estimate scales with, latency
per item; the estimate of the chosen configuration is quoted beside it, labelled.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from energybench.catalog import BASELINE_PRECISION, GATED_BASES, METRICS, format_value, metric, variant
from energybench.errors import UsageError
from energybench.results.answer import Config, Loss, batch_size, configs, metric_loss, per_item, pick, quality_loss
from energybench.results.schema import Record, Run

OBJECTIVES = {"energy": "energy", "latency": "latency"}  # objective -> the metric it minimizes per item
BUDGET_UNITS = {"accuracy": "pp", "perplexity": "%"}
# behaviour against fp32 (absolute: fp32 against itself is 0 flips, 0 nats, 100 % agreement and recovery)
BEHAVIOUR_UNITS = {"flips": "pp", "agreement": "pp", "recovery": "pp", "output-kl": "nats"}
BUDGET_SPEC = re.compile(r"^(?P<metric>[^:]+):(?P<amount>[0-9]*\.?[0-9]+)(?P<unit>pp|%|nats)?$")
BUDGET_ACCEPTED = (
    "accuracy:<points>pp or perplexity:<percent>%, or behaviour against fp32: flips:<points>pp, "
    "agreement:<points>pp, recovery:<points>pp, output-kl:<nats>"
)


@dataclass(frozen=True)
class QualityLimit:
    """``--budget``: the tolerated loss of one quality metric vs eager fp32, in ``pp`` or ``%``."""

    metric: str
    limit: float
    unit: str
    higher_is_better: bool


@dataclass(frozen=True)
class Candidate:
    config: Config
    batch_size: int
    value: float  # per item, in the objective's unit
    unit: str
    basis: str | None
    loss: Loss | None
    spread: float | None = None  # timed records: IQR / median of the rounds
    estimate_note: str = ""  # chosen by latency where energy was only estimated: that estimate, labelled

    @property
    def label(self) -> str:
        return f"{self.config.precision} on {self.config.backend}, batch {self.batch_size}"


@dataclass(frozen=True)
class Recommendation:
    model: str
    objective: str
    winner: Candidate | None
    runner_up: Candidate | None
    closest: Candidate | None  # nothing met the budget: the one over it by the least
    reason: str  # why there is no winner ("" when there is one)
    unjudged: tuple[str, ...] = ()  # measured, but without a quality record: not candidates
    unranked: tuple[str, ...] = ()  # energy only estimated: shown, never ranked on
    decided_by: str = ""  # the energy objective decided by a measured figure instead: why
    fallback: tuple[str, ...] = ()  # ran none of their quantized operators (the kernel path): never candidates

    def line(self) -> str:
        """One line: the winner, its value, its margin and basis; or why there is none."""
        unjudged = f"; not considered, no quality record: {', '.join(self.unjudged)}" if self.unjudged else ""
        unranked = f"; not ranked, energy only estimated: {', '.join(self.unranked)}" if self.unranked else ""
        fallback = (
            f"; not considered, ran none of their quantized kernels (fallback): {', '.join(self.fallback)}"
            if self.fallback
            else ""
        )
        return self.verdict() + unjudged + unranked + fallback

    def verdict(self) -> str:
        if self.winner is None:
            return f"{self.model}: {self.decided_by}{self.reason}"
        w = self.winner
        text = f"{self.model}: {self.decided_by}ship {w.label}: {show(w)} per item ({basis_words(w)}){w.estimate_note}"
        if w.loss is not None and w.config.precision != BASELINE_PRECISION:
            text += f", quality loss {w.loss.value:+.2f} {w.loss.unit}"
        if self.runner_up is None:
            return text + "; the only configuration that meets the budget"
        r = self.runner_up
        saved = r.value - w.value
        pct = saved / r.value * 100.0 if r.value else 0.0
        return (
            f"{text}; {format_value(saved, w.unit)} ({pct:.1f} %) less than the runner-up {r.label} "
            f"({show(r)}, {basis_words(r)})" + tie_note(w, r, pct)
        )


def tie_note(winner: Candidate, runner_up: Candidate, margin_pct: float) -> str:
    """A margin inside the rounds' own spread is not a ranking: say so."""
    spreads = [c.spread for c in (winner, runner_up) if c.spread is not None]
    if not spreads or margin_pct >= max(spreads) * 100.0:
        return ""
    return (
        f"; a tie: the margin is inside the rounds' spread (IQR {max(spreads) * 100.0:.0f} % of the median), "
        "decide with energybench ab"
    )


def show(candidate: Candidate) -> str:
    return format_value(candidate.value, candidate.unit)


def basis_words(candidate: Candidate) -> str:
    if candidate.unit == "s":
        return "measured: median of timed rounds / batch size"
    return f"{candidate.basis or 'basis not recorded'} energy"


def parse_budget(spec: str | None, custom: dict[str, dict[str, str]] | None = None) -> QualityLimit | None:
    """``accuracy:1.0pp``, ``perplexity:5%`` or a declared metric of the run (``f1:1pp``) -> its
    limit; None -> None. ``custom`` is the run's own declarations (``Run.custom_metrics``)."""
    if spec is None:
        return None
    custom = custom or {}
    found = BUDGET_SPEC.match(spec.strip().replace(" ", ""))
    own = f", or {'/'.join(custom)}:<N>pp or <N>% (this run's own metrics)" if custom else ""
    refused = f"--budget {spec!r}: not a quality budget; accepted: {BUDGET_ACCEPTED} (built-in){own}"
    if found is None:
        raise UsageError(f"{refused}, e.g. --budget accuracy:1.0pp")
    name, unit = found["metric"], found["unit"]
    if name in BEHAVIOUR_UNITS:
        if unit and unit != BEHAVIOUR_UNITS[name]:
            raise UsageError(f"{refused}; {name} is judged in {BEHAVIOUR_UNITS[name]}, e.g. {name}:1")
        return QualityLimit(name, float(found["amount"]), BEHAVIOUR_UNITS[name], METRICS[name].higher_is_better)
    if name not in BUDGET_UNITS and name not in custom:
        raise UsageError(f"{refused}; {name!r} is none of them")
    if name in BUDGET_UNITS and unit and unit != BUDGET_UNITS[name]:
        raise UsageError(f"{refused}, e.g. --budget accuracy:1.0pp")
    if name in custom and not unit:
        raise UsageError(f"--budget {spec!r}: give the unit of the tolerated loss, e.g. {name}:1pp or {name}:2%")
    higher = name == "accuracy" or (name in custom and custom[name].get("direction") == "higher")
    return QualityLimit(name, float(found["amount"]), unit or BUDGET_UNITS[name], higher)


def passes(config: Config, loss: Loss | None, budget: QualityLimit | None) -> bool:
    if config.precision == BASELINE_PRECISION:
        return True
    if loss is None:
        return False  # quality not measured: the loss is unknown
    if budget is not None and budget.metric == loss.metric:
        return loss.value <= budget.limit + 1e-9
    return loss.passed


def config_loss(records: list[Record], config: Config, budget: QualityLimit | None) -> Loss | None:
    """The loss ``--budget`` names where the model measured that metric at fp32, else the recorded one."""
    if budget is not None and budget.metric in BEHAVIOUR_UNITS:
        return behaviour_loss(records, config, budget)
    if budget is not None:
        baseline = Config(config.model, BASELINE_PRECISION, config.backend)
        if any((r.model, r.precision, r.metric) == (config.model, baseline.precision, budget.metric) for r in records):
            args = (budget.metric, budget.unit, budget.higher_is_better, budget.limit)
            return metric_loss(records, config, *args)
    return quality_loss(records, config)


def behaviour_loss(records: list[Record], config: Config, budget: QualityLimit) -> Loss | None:
    """How far the configuration's behaviour is from fp32's own (0 flips or nats, 100 % agreement or
    recovery): in points, or nats for output-kl; None where it was not measured (never a pass)."""
    if config.is_baseline:
        return Loss(budget.metric, 0.0, budget.unit, budget.limit, True)
    own = pick(records, config, budget.metric)
    if own is None or own.value is None:
        return None
    if budget.unit == "nats":
        value = own.value
    else:
        value = (1.0 - own.value) * 100.0 if budget.higher_is_better else own.value * 100.0
    return Loss(budget.metric, value, budget.unit, budget.limit, value <= budget.limit + 1e-9)


def fallbacks(records: list[Record], model: str) -> tuple[str, ...]:
    """Configurations whose kernel path shows none of their quantized operators ran: never candidates."""
    return tuple(
        dict.fromkeys(
            variant(r.precision, r.backend) for r in records if r.model == model and r.details.get("fallback")
        )
    )


def candidates(records: list[Record], config: Config, objective: str, budget: QualityLimit | None) -> list[Candidate]:
    """One candidate per measured shape of the configuration's objective record."""
    loss = config_loss(records, config, budget)
    wanted = OBJECTIVES[objective]
    return [
        Candidate(config, batch_size(r), per_item(r), metric(wanted).unit.split("/")[0], r.basis, loss, spread(r))  # type: ignore[arg-type]
        for r in records
        if (r.model, r.precision, r.backend, r.metric) == (config.model, config.precision, config.backend, wanted)
        and r.value is not None
    ]


def spread(record: Record) -> float | None:
    timing = record.timing
    return timing.iqr_s / timing.median_s if timing is not None and timing.median_s > 0 else None


def over_by(candidate: Candidate, budget: QualityLimit | None) -> float:
    loss = candidate.loss
    if loss is None:
        return float("inf")
    limit = budget.limit if budget is not None and budget.metric == loss.metric else loss.limit
    return loss.value - (limit if limit is not None else 0.0)


def recommend_model(run: Run, model: str, objective: str, budget: QualityLimit | None) -> Recommendation:
    records, fallback = run.records, fallbacks(run.records, model)
    every = [
        c
        for config in configs(records, model)
        if config.variant not in fallback
        for c in candidates(records, config, objective, budget)
    ]
    if not every:
        reason = not_measured(records, model, objective)
        return Recommendation(model, objective, None, None, None, reason, fallback=fallback)
    return dataclasses.replace(ranked_model(run, model, objective, budget, every), fallback=fallback)


def ranked_model(
    run: Run, model: str, objective: str, budget: QualityLimit | None, every: list[Candidate]
) -> Recommendation:
    if objective == "energy":
        ranked = [c for c in every if c.basis in GATED_BASES]
        if not any(c.loss is not None or c.config.is_baseline for c in ranked):
            return decided_by_latency(run, model, every, budget)
        unranked = tuple(dict.fromkeys(c.config.variant for c in every if c not in ranked))
        return dataclasses.replace(rank(model, objective, ranked, budget), unranked=unranked)
    return rank(model, objective, every, budget)


def rank(model: str, objective: str, every: list[Candidate], budget: QualityLimit | None) -> Recommendation:
    """The least costly candidate that meets the budget, and the runner-up; or the closest one."""
    passing = sorted((c for c in every if passes(c.config, c.loss, budget)), key=lambda c: c.value)
    unjudged = tuple(dict.fromkeys(c.config.variant for c in every if c.loss is None and not c.config.is_baseline))
    if passing:
        runner_up = passing[1] if len(passing) > 1 else None
        return Recommendation(model, objective, passing[0], runner_up, None, "", unjudged)
    closest = min(every, key=lambda c: over_by(c, budget))
    return Recommendation(model, objective, None, None, closest, nothing_meets(closest, budget), unjudged)


def decided_by_latency(run: Run, model: str, estimated: list[Candidate], budget: QualityLimit | None) -> Recommendation:
    """Every energy figure of the model is an estimate: say so, and decide by measured latency per item."""
    energy = [r for r in run.records if r.model == model and r.metric == "energy" and r.value is not None]
    meters = [str(m) for r in energy if (m := r.details.get("primary") or (r.details.get("meter") or {}).get("name"))]
    bases = "/".join(dict.fromkeys(str(r.basis) for r in energy))
    how = bases + (f" by {', '.join(dict.fromkeys(meters))}" if meters else "")
    by_latency = recommend_model(run, model, "latency", budget)
    said = f"energy per item is only estimated here ({how}) and an estimate is never ranked on; "
    if by_latency.winner is None and by_latency.closest is None:
        reason = "latency per item, the measured figure that would decide, was not measured; run with --metric latency"
        return Recommendation(model, "energy", None, None, None, reason, decided_by=said)
    chosen = by_latency.winner
    quoted = next((c for c in estimated if chosen and c.config == chosen.config), None)
    estimate = f" (its estimated energy: {show(quoted)} per item at batch {quoted.batch_size})" if quoted else ""
    return dataclasses.replace(
        by_latency,
        objective="energy",
        decided_by=said + "decided by the measured latency per item instead: ",
        unranked=(),
        winner=dataclasses.replace(chosen, estimate_note=estimate) if chosen else None,
    )


def nothing_meets(closest: Candidate, budget: QualityLimit | None) -> str:
    if closest.loss is None:
        return "nothing meets the budget: no configuration with a measured objective has a measured quality"
    loss = closest.loss
    return (
        f"nothing meets the budget: closest {closest.label} at {loss.value:+.2f} {loss.unit} {loss.metric} loss, "
        f"{over_by(closest, budget):.2f} {loss.unit} over its budget"
    )


def not_measured(records: list[Record], model: str, objective: str) -> str:
    """Why the objective has no number for this model: the recorded reason, and what to do."""
    wanted = OBJECTIVES[objective]
    reasons = {r.reason for r in records if r.model == model and r.metric == wanted and r.reason}
    why = f" ({'; '.join(sorted(reasons))})" if reasons else ""
    hint = "; run with --metric energy on a machine with a power meter, or use --objective latency"
    return f"no recommendation: {wanted} per item was not measured in this run{why}" + (
        hint if objective == "energy" else "; run with --metric latency"
    )


def recommend(run: Run, objective: str = "energy", budget: str | None = None) -> list[Recommendation]:
    """One recommendation per model of the run."""
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective {objective!r}: accepted: {', '.join(OBJECTIVES)}")
    limit = parse_budget(budget, run.custom_metrics or custom_declared(run))
    models = dict.fromkeys(r.model for r in run.records)
    return [recommend_model(run, model, objective, limit) for model in models]


def custom_declared(run: Run) -> dict[str, dict[str, str]]:
    """A run built in memory (not loaded) names its own metrics only in the catalog."""
    names = {r.metric for r in run.records}
    return {
        m.name: {"direction": m.direction, "unit": m.unit} for m in METRICS.values() if m.custom and m.name in names
    }
