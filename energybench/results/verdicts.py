"""Verdicts: what a change between two measurements of one metric may claim, and the row that shows it.

- ``worse`` / ``better``: the change is statistically significant (p < ``ALPHA``) *and* larger
  than the noise band;
- ``same``: the 95 % CI of the change lies inside the margin on both sides: the ``--fail-on``
  limit of the metric where one is given (what the user tolerates), else the noise band;
- ``inconclusive``: neither; the row gives the smallest change this comparison could detect
  (the CI's half-width) and about how many blocks, rounds or pairs would decide.

Block medians (``--blocks`` >= 2 on both sides): Welch's t on their logarithms, whose CI is the CI
of the ratio of their geometric means (Kalibera & Jones); the A and B columns then show those
geometric means, so the columns and the change describe one statistic. The band is
``BETWEEN_BLOCKS_K`` x the larger between-block CV. One block: a Mann-Whitney U on the raw
rounds, the bootstrap CI of the ratio of medians, the larger relative IQR as the band
("within-run"). A/B pairs: a one-sample t on the log ratios (energybench.results.ab). Single
values (no rounds) are compared plainly against a fixed band, deterministic ones exactly.
Either band is at least ``MIN_BAND_PCT``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from energybench.catalog import Metric
from energybench.results.limits import Limit
from energybench.stats import (
    bootstrap_ci,
    cv,
    geometric_mean,
    mann_whitney_p,
    relative_iqr_pct,
    welch_log_ratio,
)

ALPHA = 0.01
MIN_BAND_PCT = 1.0
SINGLE_VALUE_BAND_PCT = 5.0
BETWEEN_BLOCKS_K = 2.0
VERDICTS = ("better", "worse", "same", "inconclusive", "not comparable", "not measured", "missing")


@dataclasses.dataclass(frozen=True)
class Band:
    """A noise band (or a margin) in %, and where it came from (shown on the row)."""

    pct: float
    source: str

    def widest(self, other: Band | None) -> Band:
        return other if other is not None and other.pct > self.pct else self


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The judgement of one change, complete when built: a row copies it, nothing amends it."""

    verdict: str
    basis: str  # how the verdict was reached, for the reader
    change_pct: float | None = None  # signed in the metric's own direction: positive = worse
    p_value: float | None = None
    ci95_pct: tuple[float, float] | None = None
    band_pct: float | None = None
    band: str | None = None  # which band: within-run, between blocks, history of N runs, A/B pairs
    rounds_needed: int | None = None
    detectable_pct: float | None = None  # inconclusive: the smallest change this comparison could detect
    value_a: float | None = None  # the statistic the change is of, where it is not the record's value
    value_b: float | None = None


def margin_of(band: Band, limit: Limit | None) -> Band:
    """What ``same`` must fit in: the user's % limit where given, else the noise band."""
    return Band(limit.amount, f"--fail-on {limit}") if limit is not None and limit.unit == "%" else band


def decide(
    change: float, p_value: float, ci: tuple[float, float], band: Band, margin: Band, count: int, unit: str
) -> tuple[str, str, int | None, float | None]:
    """worse / better / same / inconclusive from a change, its p-value and its CI (module docstring)."""
    low, high = ci
    if p_value < ALPHA and abs(change) > band.pct:
        return ("worse" if change > 0 else "better"), "", None, None
    if -margin.pct <= low and high <= margin.pct:
        return "same", f"; the CI lies inside ±{margin.pct:g} % ({margin.source})", None, None
    half_width = (high - low) / 2.0
    needed = rounds_to_decide(count, half_width, abs(abs(change) - margin.pct), margin.pct)
    note = (
        f"; the CI reaches past ±{margin.pct:g} % ({margin.source}): the smallest change this comparison could "
        f"detect is about ±{half_width:.1f} %; about {needed} {unit} would decide"
    )
    return "inconclusive", note, needed, half_width


def rounds_to_decide(rounds: int, half_width: float, gap: float, band: float) -> int:
    """Rounds at which the CI half-width (shrinking as 1/sqrt(n)) falls below the gap to the band."""
    target = max(gap, band / 4.0)
    return int(min(100_000, math.ceil(rounds * (half_width / target) ** 2 + 1)))


def rounds_verdict(
    metric: Metric, a: np.ndarray, b: np.ndarray, drift: Band | None = None, limit: Limit | None = None
) -> Verdict:
    """Two sets of raw rounds: Mann-Whitney U, the bootstrap CI of the ratio of medians."""
    change = metric.loss(float(np.median(b)), float(np.median(a)), "%")
    band = Band(max(MIN_BAND_PCT, relative_iqr_pct(a), relative_iqr_pct(b)), "within-run").widest(drift)
    p_value = mann_whitney_p(a, b)

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        ratio_pct = (np.median(y, axis=axis) / np.median(x, axis=axis) - 1.0) * 100.0
        return -ratio_pct if metric.higher_is_better else ratio_pct

    low, high = bootstrap_ci((a, b), statistic) or (change, change)
    basis = (
        f"Mann-Whitney U on {a.size} vs {b.size} rounds, p={p_value:.2g}; noise band {band.pct:.1f} % ({band.source}); "
        f"bootstrap 95 % CI of the change [{low:+.1f}, {high:+.1f}] %"
    )
    verdict, note, needed, detectable = decide(
        change, p_value, (low, high), band, margin_of(band, limit), min(a.size, b.size), "rounds per run"
    )
    return Verdict(verdict, basis + note, change, p_value, (low, high), band.pct, band.source, needed, detectable)


def blocks_verdict(
    metric: Metric, a: np.ndarray, b: np.ndarray, drift: Band | None = None, limit: Limit | None = None
) -> Verdict:
    """Welch's t on the log block medians: the p-value and the 95 % CI of the ratio of geometric means."""
    diff, p_value, (low_log, high_log) = welch_log_ratio(a, b)
    change = metric.loss(math.exp(diff), 1.0, "%")
    low, high = sorted(metric.loss(math.exp(x), 1.0, "%") for x in (low_log, high_log))
    band = Band(max(MIN_BAND_PCT, BETWEEN_BLOCKS_K * 100.0 * max(cv(a), cv(b))), "between blocks").widest(drift)
    basis = (
        f"Welch t on {a.size} vs {b.size} block medians (A and B: their geometric means), p={p_value:.2g}; "
        f"95 % CI of the change [{low:+.1f}, {high:+.1f}] %; noise band {band.pct:.1f} % ({band.source})"
    )
    verdict, note, needed, detectable = decide(
        change, p_value, (low, high), band, margin_of(band, limit), min(a.size, b.size), "blocks per run"
    )
    return Verdict(
        verdict,
        basis + note,
        change,
        p_value,
        (low, high),
        band.pct,
        band.source,
        needed,
        detectable,
        geometric_mean(a),
        geometric_mean(b),
    )


def single_value_verdict(metric: Metric, a: float, b: float, limit: Limit | None, drift: Band | None = None) -> Verdict:
    """One value a side: deterministic ones exactly, the others against a fixed band (no statistics).
    A baseline of 0 (no sentence flipped) has no relative change: the change is then None."""
    change = metric.loss(b, a, "%") if a != 0 else None
    if metric.deterministic:
        same = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        verdict = "same" if same else ("worse" if metric.loss(b, a, "pp") > 0 else "better")
        return Verdict(verdict, "single deterministic value: exact comparison", change)
    if change is None:
        return Verdict("inconclusive", "the baseline value is 0: no relative change to judge")
    fixed = limit.amount if limit is not None and limit.unit == "%" else SINGLE_VALUE_BAND_PCT
    band = Band(fixed, "--fail-on limit" if limit is not None and limit.unit == "%" else "fixed").widest(drift)
    verdict = "same" if abs(change) <= band.pct else ("worse" if change > 0 else "better")
    basis = f"single value, no rounds: plain change against a {band.pct:g} % band ({band.source}; "
    basis += "add rounds for statistics)"
    return Verdict(verdict, basis, change, band_pct=band.pct, band=band.source)


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared model x precision x metric (x shape), as every format renders it."""

    model: str
    precision: str
    metric: str
    unit: str
    value_a: float | None
    value_b: float | None
    change_pct: float | None  # signed, in the metric's own direction: positive = worse
    change_pp: float | None  # a metric lost in points (accuracy): points lost (positive = worse)
    verdict: str
    basis: str  # how the verdict was reached
    p_value: float | None = None
    ci95_pct: tuple[float, float] | None = None
    band_pct: float | None = None
    rounds_needed: int | None = None
    band: str | None = None  # which band: within-run, between blocks, history of N runs, A/B pairs
    method_b: str = ""
    gated: bool = True
    failed: bool = False
    limit: str | None = None
    shape: str = ""  # the shape of a swept metric (``b8x128``); "" where the runs measured one shape
    direction: str = "lower is better"
    detectable_pct: float | None = None  # inconclusive: the smallest change this comparison could detect


@dataclasses.dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[Row]
    not_comparable: str | None = None

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.failed]

    def counts(self) -> dict[str, int]:
        return {v: n for v in VERDICTS if (n := sum(row.verdict == v for row in self.rows))}
