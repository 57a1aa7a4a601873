"""Compare two runs: align them, judge every metric in its own direction, and gate.

The pipeline: ``alignment`` pairs the records (like with like, intact, the drift band of the
history), ``verdicts`` judges each pair (block medians, raw rounds or single values), the row
builder here puts the pair and its verdict in one ``Row``, ``breaches`` applies the
``--fail-on`` limits (``limits``), and ``rendering`` writes the table, Markdown, CSV or JSON.
A/B pairs (``energybench.results.ab``) reuse the row builder. Estimated energy is shown and
never gates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from energybench.catalog import Metric, MetricTable
from energybench.layers import flatten
from energybench.results.alignment import (
    Key,
    disagreement,
    history_band,
    index,
    record_incomparability,
    run_incomparability,
)
from energybench.results.limits import CompareError, Limit, parse_fail_on
from energybench.results.rendering import FORMATS, render
from energybench.results.schema import Record, Run, declare_custom_metrics, swept_metrics
from energybench.results.verdicts import (
    Band,
    Comparison,
    Row,
    Verdict,
    blocks_verdict,
    rounds_verdict,
    single_value_verdict,
)

REGRESSION_EXIT_STATUS = 6  # a session that passed its tests but regressed against --compare

# What the harness and the CLI take from here (the parts live in the modules named above).
__all__ = [
    "FORMATS",
    "REGRESSION_EXIT_STATUS",
    "CompareError",
    "Comparison",
    "Limit",
    "Row",
    "compare_runs",
    "metrics_of",
    "parse_fail_on",
    "render",
]


def metrics_of(*runs: Run) -> MetricTable:
    """The metrics the runs know together: the built-ins and their own declarations (one per name)."""
    return declare_custom_metrics(*(run.custom_metrics for run in runs))


def compare_runs(
    run_a: Run, run_b: Run, limits: dict[str, Limit] | None = None, history: list[Run] | None = None
) -> Comparison:
    """Align ``run_a`` (baseline) and ``run_b`` (candidate) by model x precision x metric (x shape).

    ``history``: saved runs whose run-to-run spread may widen the band (energybench.results.alignment).
    """
    limits = limits or {}
    table = metrics_of(run_a, run_b)
    guard = run_incomparability(run_a, run_b)
    swept = swept_metrics([run_a.records, run_b.records])
    index_a, index_b = index(run_a.records, swept), index(run_b.records, swept)
    fingerprint = run_b.machine.get("fingerprint")
    rows = []
    for key in sorted(set(index_a) | set(index_b)):
        if key[2] not in table.comparable():
            continue
        a, b = index_a.get(key), index_b.get(key)
        intact = b is not None and b.value is not None and disagreement(b) is None
        drift = history_band(b, fingerprint, history or [], run_b.run_id) if intact else None
        rows.append(compare_pair(key, a, b, limits.get(key[2]), guard, drift, table[key[2]]))
    return Comparison(run_a.run_id, run_b.run_id, rows, guard)


def row_base(key: Key, a: Record | None, b: Record | None, limit: Limit | None, metric: Metric) -> dict[str, Any]:
    """A row's fields before its verdict: the key, the unit, each side's value (shared with A/B)."""
    model, precision, name, shape = key
    return {
        "model": model,
        "precision": precision,
        "metric": name,
        "shape": shape,
        "limit": str(limit) if limit else None,
        "unit": (b or a).unit,
        "value_a": a.value if a else None,
        "value_b": b.value if b else None,
        "change_pct": None,
        "change_pp": None,
        "method_b": b.method if b else "",
        "direction": "higher is better" if metric.higher_is_better else "lower is better",
    }


def judged_row(
    base: dict[str, Any], found: Verdict, limit: Limit | None, gated: bool, lost_pp: float | None = None
) -> Row:
    """The row of a verdict: the verdict's statistic in the A and B columns where it has its own,
    the change in points beside it for a metric lost in points, and whether it breaches the limit."""
    fields = dataclasses.asdict(found)
    value_a, value_b = fields.pop("value_a"), fields.pop("value_b")
    if value_a is not None and value_b is not None:
        base = {**base, "value_a": value_a, "value_b": value_b}
    if not gated:
        fields["basis"] += "; estimated energy: shown, never gated"
    row = Row(**{**base, **fields, "change_pp": lost_pp}, gated=gated)
    return dataclasses.replace(row, failed=breaches(row, limit))


def compare_pair(
    key: Key,
    a: Record | None,
    b: Record | None,
    limit: Limit | None,
    guard: str | None,
    drift: Band | None,
    metric: Metric,
) -> Row:
    base = row_base(key, a, b, limit, metric)
    if a is None or b is None:
        return Row(**base, verdict="missing", basis=f"only in run {'B' if a is None else 'A'}")
    if a.value is None or b.value is None:
        why = a.reason if a.value is None else b.reason
        return Row(**base, verdict="not measured", basis=f"run {'A' if a.value is None else 'B'}: {why}")
    why_not = guard or record_incomparability(a, b) or damaged(a, "A") or damaged(b, "B")
    if why_not:
        return Row(**base, verdict="not comparable", basis=f"not comparable: {why_not}", gated=False)
    found = verdict_of(metric, a, b, limit, drift)
    gated = flatten.gated(a) and flatten.gated(b)  # never on an estimate, nor on a share of one
    return judged_row(base, found, limit, gated, points_lost(metric, a.value, b.value))


def damaged(record: Record, side: str) -> str | None:
    why = disagreement(record)
    return (
        None if why is None else f"run {side}'s {record.metric} record disagrees with its own rounds ({why}): left out"
    )


def points_lost(metric: Metric, a: float, b: float) -> float | None:
    """The loss in points of a metric whose loss unit is points (accuracy), else None."""
    return metric.loss(b, a) if metric.loss_unit == "pp" else None


def verdict_of(metric: Metric, a: Record, b: Record, limit: Limit | None, drift: Band | None) -> Verdict:
    """Block medians when both sides have blocks, else the raw rounds, else the single values."""
    blocks_a, blocks_b = block_values(a), block_values(b)
    if blocks_a is not None and blocks_b is not None:
        return blocks_verdict(metric, blocks_a, blocks_b, drift, limit)
    sa, sb = samples_of(a), samples_of(b)
    if sa is not None and sb is not None:
        return rounds_verdict(metric, sa, sb, drift, limit)
    return single_value_verdict(metric, a.value, b.value, limit, drift)


def samples_of(record: Record) -> np.ndarray | None:
    """Per-round values in the record's own unit (seconds, or items/s for a rate), if it has rounds."""
    if record.timing is None or record.timing.rounds < 2 or record.value is None:
        return None
    rounds = np.asarray(record.timing.rounds_s, dtype=float)
    if record.metric == "throughput":
        return record.value * record.timing.median_s / rounds
    return rounds


def block_values(record: Record) -> np.ndarray | None:
    """Each block's median in the record's own unit, if the record was timed in 2 or more blocks."""
    if record.timing is None or record.value is None or len(record.timing.blocks_s) < 2:
        return None
    medians = np.asarray(record.timing.block_medians_s, dtype=float)
    if record.metric == "throughput":
        return record.value * record.timing.median_s / medians
    return medians


def breaches(row: Row, limit: Limit | None) -> bool:
    """A gate failure: a gated row, judged worse, by more than the user's limit."""
    if limit is None or not row.gated or row.verdict != "worse":
        return False
    change = row.change_pp if limit.unit == "pp" else row.change_pct
    return change is not None and change > limit.amount
