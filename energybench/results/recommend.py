"""The recommendation: per model, the measured configuration (precision, backend, batch size)
that meets every quality budget with the least energy (or latency) per item, its margin to the
runner-up and the basis of its number; or, when nothing meets the budget, the closest and by how much.

Candidates are the (precision, backend, shape) configurations with an objective record whose
quality passes: the loss vs eager fp32 within the record's budget, or within ``--budget``'s limit
when given; fp32 passes by definition. A configuration without a quality record is not a
candidate (its loss is unknown). Energy figures are shown with their basis; an estimate is said
to be one, never passed off as measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from energybench.catalog import BASELINE_PRECISION, format_value, metric
from energybench.errors import UsageError
from energybench.results.answer import Config, Loss, batch_size, configs, per_item, quality_loss
from energybench.results.schema import Record, Run

OBJECTIVES = {"energy": "energy", "latency": "latency"}  # objective -> the metric it minimizes per item
BUDGET_UNITS = {"accuracy": "pp", "perplexity": "%"}
BUDGET_SPEC = re.compile(r"^(accuracy|perplexity):([0-9]*\.?[0-9]+)(pp|%)?$")


@dataclass(frozen=True)
class Candidate:
    config: Config
    batch_size: int
    value: float  # per item, in the objective's unit
    unit: str
    basis: str | None
    loss: Loss | None
    spread: float | None = None  # timed records: IQR / median of the rounds

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

    def line(self) -> str:
        """One line: the winner, its value, its margin and basis; or why there is none."""
        unjudged = f"; not considered, no quality record: {', '.join(self.unjudged)}" if self.unjudged else ""
        return self.verdict() + unjudged

    def verdict(self) -> str:
        if self.winner is None:
            return f"{self.model}: {self.reason}"
        w = self.winner
        text = f"{self.model}: ship {w.label}: {show(w)} per item ({basis_words(w)})"
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


def parse_budget(spec: str | None) -> tuple[str, float] | None:
    """``accuracy:1.0pp`` or ``perplexity:5%`` -> (metric, limit); None -> None."""
    if spec is None:
        return None
    found = BUDGET_SPEC.match(spec.strip().replace(" ", ""))
    if found is None or (found.group(3) and found.group(3) != BUDGET_UNITS[found.group(1)]):
        raise UsageError(
            f"--budget {spec!r}: not a quality budget; accepted: accuracy:<points>pp or perplexity:<percent>%, "
            "e.g. --budget accuracy:1.0pp"
        )
    return found.group(1), float(found.group(2))


def passes(config: Config, loss: Loss | None, budget: tuple[str, float] | None) -> bool:
    if config.precision == BASELINE_PRECISION:
        return True
    if loss is None:
        return False  # quality not measured: the loss is unknown
    if budget is not None and budget[0] == loss.metric:
        return loss.value <= budget[1] + 1e-9
    return loss.passed


def candidates(records: list[Record], config: Config, objective: str) -> list[Candidate]:
    """One candidate per measured shape of the configuration's objective record."""
    loss = quality_loss(records, config)
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


def over_by(candidate: Candidate, budget: tuple[str, float] | None) -> float:
    loss = candidate.loss
    if loss is None:
        return float("inf")
    limit = budget[1] if budget is not None and budget[0] == loss.metric else loss.limit
    return loss.value - (limit if limit is not None else 0.0)


def recommend_model(run: Run, model: str, objective: str, budget: tuple[str, float] | None) -> Recommendation:
    records = run.records
    every = [c for config in configs(records, model) for c in candidates(records, config, objective)]
    if not every:
        reason = not_measured(records, model, objective)
        return Recommendation(model, objective, None, None, None, reason)
    passing = sorted((c for c in every if passes(c.config, c.loss, budget)), key=lambda c: c.value)
    unjudged = tuple(dict.fromkeys(c.config.variant for c in every if c.loss is None and not c.config.is_baseline))
    if passing:
        runner_up = passing[1] if len(passing) > 1 else None
        return Recommendation(model, objective, passing[0], runner_up, None, "", unjudged)
    closest = min(every, key=lambda c: over_by(c, budget))
    return Recommendation(model, objective, None, None, closest, nothing_meets(closest, budget), unjudged)


def nothing_meets(closest: Candidate, budget: tuple[str, float] | None) -> str:
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
    limit = parse_budget(budget)
    models = dict.fromkeys(r.model for r in run.records)
    return [recommend_model(run, model, objective, limit) for model in models]
