"""Energy vs impact: Pearson and Spearman correlations with p-values and bootstrap 95% CIs (scipy)."""

from __future__ import annotations

from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 999


def correlation(x: list[float], y: list[float], seed: int = 0) -> dict[str, Any]:
    """{"n", "pearson_r", "pearson_p", "pearson_ci95", "spearman_rho", "spearman_p", "spearman_ci95"}.

    Values are None with a "reason" when fewer than 3 pairs or a constant column make them undefined.
    """
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    out: dict[str, Any] = {
        "n": len(pairs),
        "pearson_r": None,
        "pearson_p": None,
        "pearson_ci95": None,
        "spearman_rho": None,
        "spearman_p": None,
        "spearman_ci95": None,
    }
    xs, ys = np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)
    if len(pairs) < 3:
        return {**out, "reason": f"{len(pairs)} pairs; a correlation needs at least 3"}
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return {**out, "reason": "one of the two columns is constant; correlation undefined"}
    pearson, spearman = stats.pearsonr(xs, ys), stats.spearmanr(xs, ys)
    out.update(
        pearson_r=float(pearson.statistic),
        pearson_p=float(pearson.pvalue),
        spearman_rho=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
    )
    out["pearson_ci95"] = bootstrap_ci(xs, ys, lambda a, b: stats.pearsonr(a, b).statistic, seed)
    out["spearman_ci95"] = bootstrap_ci(xs, ys, lambda a, b: stats.spearmanr(a, b).statistic, seed)
    return out


def bootstrap_ci(xs: np.ndarray, ys: np.ndarray, statistic: Any, seed: int) -> list[float] | None:
    """Paired percentile bootstrap; None when resamples are degenerate (too few distinct pairs)."""
    import warnings

    from scipy import stats

    def safe(a: np.ndarray, b: np.ndarray) -> float:
        return float(statistic(a, b)) if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples give nan, reported as None below
        result = stats.bootstrap(
            (xs, ys),
            safe,
            paired=True,
            vectorized=False,
            n_resamples=BOOTSTRAP_RESAMPLES,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    return None if np.isnan(low) or np.isnan(high) else [float(low), float(high)]
