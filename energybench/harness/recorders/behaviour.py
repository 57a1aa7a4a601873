"""Behaviour against fp32 on the same inputs, from the quality pass itself (no second evaluation):
flips and recovery for classifiers; top-1 agreement, output KL, recovery and perplexity by
position for causal LMs (``energybench.measure.behaviour``). Each is a record of its own, so the
gate, compare, history and the report take them like any metric; a behaviour budget
(``--flips-budget``, ``--kl-budget``) is asserted on them."""

from __future__ import annotations

from typing import Any

import pytest

from energybench.catalog import BASELINE_PRECISION, DEFAULT_BACKEND
from energybench.harness.case import Case
from energybench.results.schema import Budget, Record

PER_SENTENCE = "on the same SST-2 validation sentences as fp32 (eager), from the accuracy pass"
PER_TOKEN = "on the same WikiText-2 tokens as fp32 (eager), from the perplexity pass"


def is_reference(case: Case) -> bool:
    return (case.spec.precision, case.spec.backend) == (BASELINE_PRECISION, DEFAULT_BACKEND)


def record(case: Case, fail_on_budget: bool = True) -> list[Record]:
    """The behaviour records of a case whose quality pass has run (none for fp32 itself: it is the reference)."""
    if is_reference(case):
        return []
    spec = case.spec
    if spec.metric == "accuracy":
        records = classifier_records(case)
    else:
        records = lm_records(case)
    breached = [r for r in records if r.budget is not None and not r.budget.passed]
    if fail_on_budget and breached:
        pytest.fail("; ".join(budget_line(r) for r in breached), pytrace=False)
    return records


def budget_line(record: Record) -> str:
    budget = record.budget
    return (
        f"{record.precision} {record.metric} {budget.loss:.3g} {budget.unit} against fp32 exceeds its budget of "
        f"{budget.limit:g} {budget.unit}"
    )


def classifier_records(case: Case) -> list[Record]:
    from energybench.measure.behaviour import accuracy_recovery, flips  # deferred: heavy
    from energybench.measure.quality import unpack_bits  # deferred: heavy

    spec, session = case.spec, case.session
    mine = session.quality(spec.model, spec.precision, spec.metric, case.prepared, backend=spec.backend).details
    reference = session.quality(spec.model, BASELINE_PRECISION, spec.metric).details
    if not (mine.get("predicted_bits") and reference.get("predicted_bits")) or mine["total"] != reference["total"]:
        return []
    total = mine["total"]
    labels, ref_labels = (unpack_bits(d["predicted_bits"], total) for d in (mine, reference))
    correct, ref_correct = (unpack_bits(d["correct_bits"], total) for d in (mine, reference))
    found = flips(ref_labels, labels, ref_correct, correct)
    recovered = accuracy_recovery(ref_correct, correct)
    flip_budget = behaviour_budget(case, "flips", found.flips_pp, "pp")
    return [
        case.record(
            found.flipped / found.total,
            "fraction",
            f"predicted label differs from fp32's {PER_SENTENCE}; {found.method}",
            metric="flips",
            details={"ci95": [c / 100.0 for c in found.ci95_pp], **found.to_dict()},
            budget=flip_budget,
            status="budget-breach" if flip_budget and not flip_budget.passed else "ok",
        ),
        recovery_record(case, recovered, PER_SENTENCE),
    ]


def recovery_record(case: Case, recovered: Any, where: str) -> Record:
    return case.record(
        recovered.recovery_pct / 100.0,
        "fraction",
        f"quality / fp32 quality {where}; {recovered.method}",
        metric="recovery",
        details={"ci95": [c / 100.0 for c in recovered.ci95_pct], **recovered.to_dict()},
    )


def lm_records(case: Case) -> list[Record]:
    from energybench.measure.behaviour import lm_behaviour  # deferred: heavy

    spec, session = case.spec, case.session
    trace = session.trace(spec.model, spec.precision, spec.metric, spec.backend)
    if trace is None or trace.against is None:
        return []
    found = lm_behaviour(trace)
    kl_budget = behaviour_budget(case, "output-kl", found.output_kl, "nats")
    positions = {"by_position": [b.__dict__ for b in found.by_position], "ci_method": found.ci_method}
    kl_details = {"ci95": list(found.output_kl_ci95), "upper_bound": found.output_kl_upper, "tokens": found.tokens}
    return [
        case.record(
            found.agreement_pct / 100.0,
            "fraction",
            f"top-1 next token equal to fp32's {PER_TOKEN}; {found.ci_method}",
            metric="agreement",
            details={"ci95": [c / 100.0 for c in found.agreement_ci95_pct], "tokens": found.tokens, **positions},
        ),
        case.record(
            found.output_kl,
            "nats",
            f"mean KL(fp32 || this) per token {PER_TOKEN}; {found.kl_method}",
            metric="output-kl",
            details={**kl_details, "windows": found.windows},
            budget=kl_budget,
            status="budget-breach" if kl_budget and not kl_budget.passed else "ok",
        ),
        recovery_record(case, found.recovery, PER_TOKEN),
    ]


def behaviour_budget(case: Case, metric: str, value: float, unit: str) -> Budget | None:
    """A behaviour budget is absolute (fp32 against itself is 0): flips in points, KL in nats."""
    limit = case.settings.budget_for(metric, case.spec.model, case.spec.precision)
    if limit is None:
        return None
    return Budget(BASELINE_PRECISION, 0.0, value, limit, unit, passed=value <= limit + 1e-12)


def position_details(case: Case) -> dict[str, Any]:
    """fp32's perplexity by position in the window (its own record's details; other precisions carry theirs)."""
    from energybench.measure.behaviour import position_buckets  # deferred: heavy

    spec = case.spec
    trace = case.session.trace(spec.model, spec.precision, spec.metric, spec.backend)
    if trace is None or not trace.windows:
        return {}
    return {"perplexity_by_position": [b.__dict__ | {"label": b.label} for b in position_buckets(trace.windows)]}
