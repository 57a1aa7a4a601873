"""A/B verdicts: paired ratios of two code versions measured in alternating fresh processes.

The runs come in ABBA order (A B, B A, A B, ...), one process each, so slow drift of the
machine touches both sides alike. Each pair gives one ratio B/A per model x precision x
metric; the verdict is a one-sample t-test on the log ratios, whose CI is the CI of the ratio
(Kalibera & Jones; Chromium Pinpoint compares the two sides of the same bot the same way):
``worse`` / ``better`` when p < ``AB_ALPHA`` and the change is beyond ``AB_BAND_PCT``; ``same``
when the CI lies inside the band; otherwise ``inconclusive`` with about how many pairs would
decide. Deterministic metrics (accuracy, perplexity, size) are compared exactly on the first pair.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from energybench.layers import flatten
from energybench.results.compare import (
    Comparison,
    Key,
    Limit,
    Row,
    breaches,
    deterministic,
    directed_metrics,
    index,
    rounds_to_decide,
    single_value_verdict,
    worse_change_pct,
)
from energybench.results.schema import Record, Run, shape_key, swept_metrics

AB_ALPHA = 0.01
AB_BAND_PCT = 2.0
MIN_PAIRS = 2  # fewer: no spread, no CI
SIDES = ("A", "B")


def abba_order(pairs: int) -> list[tuple[int, str]]:
    """(pair, side) in running order: A B, B A, A B, ... so neither side always runs first."""
    return [(pair, side) for pair in range(pairs) for side in (SIDES if pair % 2 == 0 else SIDES[::-1])]


def measured(run: Run, swept: set[tuple[str, str, str]] | None = None) -> dict[Key, Record]:
    """The run's directed records by model, precision, metric and (where swept) shape."""
    return {key: r for key, r in index(run.records, swept).items() if r.metric in directed_metrics()}


def selection_difference(runs_a: list[Run], runs_b: list[Run]) -> str | None:
    """Why the two sides did not run the same selection (tests, shapes), or None."""
    for runs in (runs_a, runs_b):
        keys = [selection(run) for run in runs]
        if any(k != keys[0] for k in keys):
            return "one side's runs differ from each other in what they measured (a flaky selection)"
    sel_a, sel_b = selection(runs_a[0]), selection(runs_b[0])
    if sel_a == sel_b:
        return None
    only_a, only_b = sorted(sel_a - sel_b), sorted(sel_b - sel_a)
    shown = [
        f"baseline only: {describe(only_a)}" if only_a else "",
        f"candidate only: {describe(only_b)}" if only_b else "",
    ]
    return "different test selections (" + "; ".join(s for s in shown if s) + ")"


def selection(run: Run) -> set[tuple[str, str, str, tuple]]:
    return {(r.model, r.precision, r.metric, shape_key(r)) for r in run.records if r.metric in directed_metrics()}


def describe(items: list[tuple]) -> str:
    text = ", ".join(f"{m}/{p}/{metric} {dict(shape) or ''}".strip() for m, p, metric, shape in items[:3])
    return text + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def paired_comparison(runs_a: list[Run], runs_b: list[Run], limits: dict[str, Limit] | None = None) -> Comparison:
    """One row per model x precision x metric from the pairs (runs_a[i], runs_b[i])."""
    limits = limits or {}
    swept = swept_metrics([run.records for run in runs_a + runs_b])
    index_a, index_b = [measured(r, swept) for r in runs_a], [measured(r, swept) for r in runs_b]
    rows = [
        paired_row(key, [i[key] for i in index_a], [i[key] for i in index_b], limits.get(key[2]))
        for key in sorted(index_a[0])
    ]
    return Comparison("baseline", "candidate", rows)


def paired_row(key: Key, a: list[Record], b: list[Record], limit: Limit | None) -> Row:
    model, precision, metric, shape = key
    base: dict[str, Any] = {
        "model": model,
        "precision": precision,
        "metric": metric,
        "shape": shape,
        "unit": b[0].unit,
        "value_a": median_value(a),
        "value_b": median_value(b),
        "change_pp": None,
        "limit": str(limit) if limit else None,
        "method_b": b[0].method,
    }
    missing = next((r for r in a + b if r.value is None), None)
    if missing is not None:
        return Row(**base, change_pct=None, verdict="not measured", basis=f"{missing.reason}")
    if deterministic(metric):
        found = single_value_verdict(metric, a[0].value, b[0].value, limit)
    else:
        found = paired_verdict(metric, [r.value for r in a], [r.value for r in b])
    if metric == "accuracy":
        base["change_pp"] = (a[0].value - b[0].value) * 100.0
    gated = all(flatten.gated(r) for r in a + b)  # never on an estimate, nor on a share of one
    if not gated:
        found["basis"] += "; estimated energy: shown, never gated"
    row = Row(**base, **found, gated=gated)
    return Row(**{**row.__dict__, "failed": breaches(row, limit)})


def median_value(records: list[Record]) -> float | None:
    values = [r.value for r in records if r.value is not None]
    return float(np.median(values)) if values else None


def paired_verdict(metric: str, a: list[float], b: list[float]) -> dict[str, Any]:
    """The t-test and 95 % CI of the mean log ratio B/A over the pairs (see the module docstring)."""
    logs = np.log(np.asarray(b, dtype=float) / np.asarray(a, dtype=float))
    change = worse_change_pct(metric, 1.0, math.exp(float(logs.mean())))
    out: dict[str, Any] = {"change_pct": change, "band_pct": AB_BAND_PCT, "band": "A/B pairs"}
    if logs.size < MIN_PAIRS:
        basis = f"{logs.size} pair: no spread, no CI; at least {MIN_PAIRS} pairs needed (give --pairs 5 or more)"
        return {**out, "verdict": "inconclusive", "basis": basis, "rounds_needed": MIN_PAIRS}
    p_value, (low_log, high_log) = one_sample_t(logs)
    low, high = sorted(worse_change_pct(metric, 1.0, math.exp(x)) for x in (low_log, high_log))
    out.update(p_value=p_value, ci95_pct=(low, high))
    basis = (
        f"paired t on {logs.size} ABBA pairs of ratios, p={p_value:.2g}; 95 % CI of the change "
        f"[{low:+.1f}, {high:+.1f}] %; noise band {AB_BAND_PCT:.1f} % (A/B pairs)"
    )
    if p_value < AB_ALPHA and abs(change) > AB_BAND_PCT:
        return {**out, "verdict": "worse" if change > 0 else "better", "basis": basis}
    if p_value < AB_ALPHA or (-AB_BAND_PCT <= low and high <= AB_BAND_PCT):
        return {**out, "verdict": "same", "basis": basis}
    needed = rounds_to_decide(logs.size, (high - low) / 2.0, abs(abs(change) - AB_BAND_PCT), AB_BAND_PCT)
    basis += f"; about {needed} pairs would decide (--pairs {needed})"
    return {**out, "verdict": "inconclusive", "basis": basis, "rounds_needed": needed}


def one_sample_t(logs: np.ndarray) -> tuple[float, tuple[float, float]]:
    """p-value and 95 % CI of the mean; a spread of exactly 0 gives p 0 (or 1 with no change)."""
    from scipy import stats  # deferred: heavy

    mean = float(logs.mean())
    if float(logs.std()) == 0.0:
        return (0.0 if mean != 0.0 else 1.0), (mean, mean)
    test = stats.ttest_1samp(logs, 0.0)
    low, high = test.confidence_interval(0.95)
    return float(test.pvalue), (float(low), float(high))
