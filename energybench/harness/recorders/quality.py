"""Quality: SST-2 accuracy or WikiText-2 perplexity of a case, its loss against the session's fp32
value, and the loss budget's verdict (with the paired statistics of the same sentences)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from energybench.catalog import BASELINE_PRECISION, METRICS
from energybench.harness.case import Case
from energybench.harness.recorders import behaviour
from energybench.harness.recorders.speed import timing_details
from energybench.layers.rows import Plan
from energybench.measure.quality import unpack_bits
from energybench.results.paired import paired_loss
from energybench.results.schema import Budget, Record


def record(case: Case, fail_on_budget: bool = True) -> list[Record]:
    """The quality record, then the behaviour against fp32 from the same pass (recorders.behaviour)."""
    measured = quality(case, fail_on_budget)
    return [measured, *behaviour.record(case, fail_on_budget)]


def quality(case: Case, fail_on_budget: bool = True) -> Record:
    """Measure accuracy/perplexity, compare with the fp32 baseline, record, assert the budget
    (unless ``fail_on_budget`` is False: the test asserts the record's verdict itself)."""
    case.require_trained_weights()
    spec = case.spec
    result = case.session.quality(spec.model, spec.precision, spec.metric, case.prepared, backend=spec.backend)
    budget = budget_of(case, result.value)
    status = "budget-breach" if budget and not budget.passed else "ok"
    details = {
        **result.details,
        **predicted_vs_measured(case, budget),
        **timing_details(case.prepared),
        **behaviour.position_details(case),
    }
    record = case.record(
        result.value, result.unit, result.method, data=result.data, details=details, budget=budget, status=status
    )
    if fail_on_budget and budget and not budget.passed:
        pytest.fail(budget.message(spec.metric, spec.precision, result.value), pytrace=False)
    return record


def budget_of(case: Case, value: float) -> Budget | None:
    spec = case.spec
    limit = case.settings.budget_for(spec.metric, spec.model, spec.precision)
    if spec.precision == BASELINE_PRECISION or limit is None:  # fp32 on any backend: no budget, the loss is shown
        return None
    reference = case.session.quality(spec.model, BASELINE_PRECISION, spec.metric)
    metric = METRICS[spec.metric]
    lost = metric.loss(value, reference.value)
    budget = Budget(BASELINE_PRECISION, reference.value, lost, limit, metric.loss_unit, passed=lost <= limit + 1e-9)
    return with_paired_loss(case, budget, reference.details, value)


def with_paired_loss(case: Case, budget: Budget, reference: dict[str, Any], value: float) -> Budget:
    """Accuracy: the paired difference on the same sentences (McNemar p, bootstrap CI of the loss)."""
    spec = case.spec
    mine = case.session.quality(spec.model, spec.precision, spec.metric, case.prepared, backend=spec.backend).details
    if not (mine.get("correct_bits") and reference.get("correct_bits")) or mine["total"] != reference["total"]:
        return budget
    base, hits = (unpack_bits(d["correct_bits"], d["total"]) for d in (reference, mine))
    accuracies = (sum(base) / len(base), sum(hits) / len(hits))
    if not all(math.isclose(a, b) for a, b in zip(accuracies, (budget.baseline_value, value), strict=True)):
        return budget  # the per-sentence bits do not describe these values: no paired statistics
    found = paired_loss(base, hits)
    return dataclasses.replace(
        budget, lost=found.lost, gained=found.gained, mcnemar_p=found.mcnemar_p, loss_ci95=found.loss_ci95_pp
    )


def predicted_vs_measured(case: Case, budget: Budget | None) -> dict[str, Any]:
    """For ``mixed``: the plan's predicted quality delta next to the measured one vs fp32."""
    if case.spec.precision != "mixed" or budget is None:
        return {}
    plan = Plan.from_dict(case.prepared.details["plan"])
    sign = -1.0 if case.spec.metric == "accuracy" else 1.0  # budget.loss is a loss; deltas keep their sign
    return {"predicted_quality_delta": plan.predicted_quality_delta, "measured_quality_delta": sign * budget.loss}
