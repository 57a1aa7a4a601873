"""Energy vs impact: Pearson and Spearman correlations with p-values and bootstrap 95% CIs (scipy)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from energybench.layers.rows import Correlation
from energybench.stats import bootstrap_ci

BOOTSTRAP_RESAMPLES = 999
Statistic = Callable[[np.ndarray, np.ndarray], float]


def correlation(x: list[float | None], y: list[float | None], seed: int = 0) -> Correlation:
    """Pearson and Spearman of the pairs where both values exist, with p-values and bootstrap CIs.

    Values are None with a ``reason`` when fewer than 3 pairs or a constant column make them undefined.
    """
    from scipy import stats  # deferred: heavy

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    xs, ys = np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)
    if len(pairs) < 3:
        return Correlation(n=len(pairs), reason=f"{len(pairs)} pairs; a correlation needs at least 3")
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return Correlation(n=len(pairs), reason="one of the two columns is constant; correlation undefined")
    pearson, spearman = stats.pearsonr(xs, ys), stats.spearmanr(xs, ys)
    pearson_lo, pearson_hi = correlation_ci(xs, ys, lambda a, b: stats.pearsonr(a, b).statistic, seed)
    spearman_lo, spearman_hi = correlation_ci(xs, ys, lambda a, b: stats.spearmanr(a, b).statistic, seed)
    return Correlation(
        n=len(pairs),
        pearson_r=float(pearson.statistic),
        pearson_p=float(pearson.pvalue),
        pearson_ci95_lo=pearson_lo,
        pearson_ci95_hi=pearson_hi,
        spearman_rho=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
        spearman_ci95_lo=spearman_lo,
        spearman_ci95_hi=spearman_hi,
    )


def correlation_ci(
    xs: np.ndarray, ys: np.ndarray, statistic: Statistic, seed: int
) -> tuple[float | None, float | None]:
    """Paired percentile bootstrap; (None, None) when resamples are degenerate (too few distinct pairs)."""

    def safe(a: np.ndarray, b: np.ndarray) -> float:
        return float(statistic(a, b)) if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan

    found = bootstrap_ci((xs, ys), safe, paired=True, vectorized=False, resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    return found if found is not None else (None, None)
