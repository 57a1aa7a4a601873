"""Every statistic energybench reports a CI or a p-value with, in one place (scipy where it fits).

- ``bootstrap_ci``: the one percentile bootstrap (scipy.stats.bootstrap), independent or paired
  samples, seeded, so the same data give the same interval;
- ``mean_ci95``: the normal-approximation 95 % CI of a mean (per-sample KL, paired differences);
- ``binomial_ci``: the exact (Clopper-Pearson) CI of a proportion (flips);
- ``mcnemar_exact_p``: McNemar's exact test, a binomial test of the discordant pairs at p = 1/2;
- ``welch_log_ratio``: Welch's t on the logarithms of two samples, the CI of their ratio
  (Kalibera & Jones);
- ``one_sample_t``: the t-test and 95 % CI of a mean (the log ratios of A/B pairs);
- ``mann_whitney_p``, ``relative_iqr_pct``, ``cv``: the rank test and spreads of raw rounds.

It sits below every stage (it imports no energybench module), so the layer study and the
comparisons share it; scipy is imported only when a statistic is computed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

BOOTSTRAP_RESAMPLES = 999
CONFIDENCE = 0.95


def bootstrap_ci(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., float | np.ndarray],
    *,
    paired: bool = False,
    vectorized: bool = True,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The percentile bootstrap 95 % CI of ``statistic`` over ``samples``; None when the resamples
    are degenerate (a constant sample, too few distinct pairs, a statistic that gave nan).

    ``vectorized``: ``statistic(*samples, axis=-1)`` takes batches of resamples; ``paired``:
    the samples are resampled together, index by index."""
    from scipy import stats  # deferred: heavy

    if all(np.ptp(np.asarray(sample)) == 0 for sample in samples):
        value = float(statistic(*samples, axis=-1) if vectorized else statistic(*samples))
        return (value, value) if math.isfinite(value) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples give nan, reported as None below
        result = stats.bootstrap(
            samples,
            statistic,
            paired=paired,
            vectorized=vectorized,
            n_resamples=resamples,
            confidence_level=CONFIDENCE,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
    low, high = (float(x) for x in result.confidence_interval)
    return None if math.isnan(low) or math.isnan(high) else (low, high)


def binomial_ci(successes: int, trials: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95 % CI of a proportion, as fractions; (0, 1) with no trials."""
    from scipy import stats  # deferred: heavy

    if trials == 0:
        return (0.0, 1.0)
    interval = stats.binomtest(successes, trials).proportion_ci(CONFIDENCE, method="exact")
    return (float(interval.low), float(interval.high))


def mean_ci95(values: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The mean and its normal-approximation 95 % CI (1.96 standard errors, ddof 1)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, (mean, mean)
    half = 1.96 * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, (mean - half, mean + half)


def mcnemar_exact_p(lost: int, gained: int) -> float:
    """McNemar's exact p: ``lost`` among the ``lost + gained`` discordant pairs at p = 1/2 (1 with none)."""
    from scipy import stats  # deferred: heavy

    return float(stats.binomtest(lost, lost + gained, 0.5).pvalue) if lost + gained else 1.0


def welch_log_ratio(a: np.ndarray, b: np.ndarray) -> tuple[float, float, tuple[float, float]]:
    """Welch's t on log(b) vs log(a): (mean log ratio, p-value, 95 % CI of the mean log ratio).

    exp of each is the ratio of the geometric means B/A and its CI; a p-value scipy cannot give
    (both samples constant) reads as 1."""
    from scipy import stats  # deferred: heavy

    log_a, log_b = np.log(a), np.log(b)
    diff = float(log_b.mean() - log_a.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant samples: nan, handled below
        test = stats.ttest_ind(log_b, log_a, equal_var=False)
        low, high = test.confidence_interval(CONFIDENCE)
    p_value = float(test.pvalue) if math.isfinite(test.pvalue) else 1.0
    if not (math.isfinite(low) and math.isfinite(high)):
        low = high = diff
    return diff, p_value, (float(low), float(high))


def one_sample_t(values: np.ndarray) -> tuple[float, tuple[float, float]]:
    """p-value and 95 % CI of the mean against 0; a spread of exactly 0 gives p 0 (or 1 with a mean of 0)."""
    from scipy import stats  # deferred: heavy

    mean = float(values.mean())
    if float(values.std()) == 0.0:
        return (0.0 if mean != 0.0 else 1.0), (mean, mean)
    test = stats.ttest_1samp(values, 0.0)
    low, high = test.confidence_interval(CONFIDENCE)
    return float(test.pvalue), (float(low), float(high))


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sided Mann-Whitney U p-value of two sets of raw rounds."""
    from scipy import stats  # deferred: heavy

    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def relative_iqr_pct(values: np.ndarray) -> float:
    """The interquartile range in percent of the median."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float((q3 - q1) / median * 100.0)


def cv(values: np.ndarray | list[float]) -> float:
    """The coefficient of variation (standard deviation, ddof 1, over the mean)."""
    values = np.asarray(values, dtype=float)
    return float(np.std(values, ddof=1) / np.mean(values))


def geometric_mean(values: np.ndarray) -> float:
    return float(math.exp(float(np.log(np.asarray(values, dtype=float)).mean())))
