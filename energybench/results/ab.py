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

import numpy as np

from energybench.catalog import Metric, MetricTable
from energybench.layers import flatten
from energybench.results.alignment import Key, disagreement, index
from energybench.results.compare import judged_row, metrics_of, row_base
from energybench.results.limits import Limit
from energybench.results.schema import Record, Run, shape_key, swept_metrics
from energybench.results.verdicts import Band, Comparison, Row, Verdict, decide, margin_of, single_value_verdict
from energybench.stats import geometric_mean, one_sample_t

AB_ALPHA = 0.01
AB_BAND_PCT = 2.0
MIN_PAIRS = 2  # fewer: no spread, no CI
SIDES = ("A", "B")


def abba_order(pairs: int) -> list[tuple[int, str]]:
    """(pair, side) in running order: A B, B A, A B, ... so neither side always runs first."""
    return [(pair, side) for pair in range(pairs) for side in (SIDES if pair % 2 == 0 else SIDES[::-1])]


def measured(run: Run, swept: set[tuple[str, str, str]] | None = None) -> dict[Key, Record]:
    """The run's directed records by model, precision, metric and (where swept) shape."""
    comparable = run.metrics.comparable()
    return {key: r for key, r in index(run.records, swept).items() if r.metric in comparable}


def selection_difference(runs_a: list[Run], runs_b: list[Run]) -> str | None:
    """Why the two sides did not run the same selection (tests, shapes), or None."""
    for runs in (runs_a, runs_b):
        keys = [selection(run) for run in runs]
        if any(k != keys[0] for k in keys):
            return "one side's runs differ from each other in what they measured (a flaky selection)"
    sources_a, sources_b = checkpoints(runs_a[0]), checkpoints(runs_b[0])
    if sources_a != sources_b:
        differ = sorted(m for m in set(sources_a) | set(sources_b) if sources_a.get(m) != sources_b.get(m))
        shown = ", ".join(f"{m}: {sources_a.get(m)} vs {sources_b.get(m)}" for m in differ[:2])
        return f"the two sides measured different checkpoints ({shown}); give both sides the same model source"
    sel_a, sel_b = selection(runs_a[0]), selection(runs_b[0])
    if sel_a == sel_b:
        return None
    only_a, only_b = sorted(sel_a - sel_b), sorted(sel_b - sel_a)
    shown = [
        f"baseline only: {describe(only_a)}" if only_a else "",
        f"candidate only: {describe(only_b)}" if only_b else "",
    ]
    return "different test selections (" + "; ".join(s for s in shown if s) + ")"


def checkpoints(run: Run) -> dict[str, tuple]:
    """Each model's checkpoint identity (source kind, checkpoint, revision or weights digest)."""
    return {r.model: r.checkpoint for r in run.records}


def selection(run: Run) -> set[tuple[str, str, str, tuple]]:
    comparable = run.metrics.comparable()
    return {(r.model, r.precision, r.metric, shape_key(r)) for r in run.records if r.metric in comparable}


def describe(items: list[tuple]) -> str:
    text = ", ".join(f"{m}/{p}/{metric} {dict(shape) or ''}".strip() for m, p, metric, shape in items[:3])
    return text + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def paired_comparison(runs_a: list[Run], runs_b: list[Run], limits: dict[str, Limit] | None = None) -> Comparison:
    """One row per model x precision x metric from the pairs (runs_a[i], runs_b[i])."""
    limits = limits or {}
    table = metrics_of(*runs_a, *runs_b)
    swept = swept_metrics([run.records for run in runs_a + runs_b])
    index_a, index_b = [measured(r, swept) for r in runs_a], [measured(r, swept) for r in runs_b]
    rows = [
        paired_row(key, [i[key] for i in index_a], [i[key] for i in index_b], limits.get(key[2]), table)
        for key in sorted(index_a[0])
    ]
    return Comparison("baseline", "candidate", rows)


def paired_row(key: Key, a: list[Record], b: list[Record], limit: Limit | None, table: MetricTable) -> Row:
    """The row of one key over the pairs: compare's row builder, a paired verdict."""
    metric = table[key[2]]
    base = {**row_base(key, a[0], b[0], limit, metric), "value_a": median_value(a), "value_b": median_value(b)}
    missing = next((r for r in a + b if r.value is None), None)
    if missing is not None:
        return Row(**base, verdict="not measured", basis=f"{missing.reason}")
    broken = next((r for r in a + b if disagreement(r) is not None), None)
    if broken is not None:
        side = "baseline" if any(broken is r for r in a) else "candidate"
        why = f"a {side} run's {broken.metric} record disagrees with its own rounds ({disagreement(broken)}): left out"
        return Row(**base, verdict="not comparable", basis=f"not comparable: {why}", gated=False)
    if metric.deterministic:
        found = single_value_verdict(metric, a[0].value, b[0].value, limit)
    else:
        found = paired_verdict(metric, [r.value for r in a], [r.value for r in b], limit)
    gated = all(flatten.gated(r) for r in a + b)  # never on an estimate, nor on a share of one
    lost = metric.loss(b[0].value, a[0].value) if metric.loss_unit == "pp" else None
    return judged_row(base, found, limit, gated, lost)


def median_value(records: list[Record]) -> float | None:
    values = [r.value for r in records if r.value is not None]
    return float(np.median(values)) if values else None


def paired_verdict(metric: Metric, a: list[float], b: list[float], limit: Limit | None = None) -> Verdict:
    """The t-test and 95 % CI of the mean log ratio B/A over the pairs (see the module docstring);
    the A and B columns show each side's geometric mean, whose ratio the change is."""
    logs = np.log(np.asarray(b, dtype=float) / np.asarray(a, dtype=float))
    change = metric.loss(math.exp(float(logs.mean())), 1.0, "%")
    band = Band(AB_BAND_PCT, "A/B pairs")
    means = {"value_a": geometric_mean(np.asarray(a)), "value_b": geometric_mean(np.asarray(b))}
    if logs.size < MIN_PAIRS:
        basis = f"{logs.size} pair: no spread, no CI; at least {MIN_PAIRS} pairs needed (give --pairs 5 or more)"
        return Verdict("inconclusive", basis, change, band_pct=band.pct, band=band.source, rounds_needed=MIN_PAIRS)
    p_value, (low_log, high_log) = one_sample_t(logs)
    low, high = sorted(metric.loss(math.exp(x), 1.0, "%") for x in (low_log, high_log))
    basis = (
        f"paired t on {logs.size} ABBA pairs of ratios (A and B: geometric means), p={p_value:.2g}; "
        f"95 % CI of the change [{low:+.1f}, {high:+.1f}] %; noise band {AB_BAND_PCT:.1f} % (A/B pairs)"
    )
    verdict, note, needed, detectable = decide(
        change, p_value, (low, high), band, margin_of(band, limit), logs.size, "pairs"
    )
    if needed is not None:
        note += f" (--pairs {needed})"
    return Verdict(
        verdict, basis + note, change, p_value, (low, high), band.pct, band.source, needed, detectable, **means
    )
