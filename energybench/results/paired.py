"""A paired accuracy loss on the same sentences: McNemar's exact test and a paired bootstrap CI.

Two precisions of one model judged on the same sentences disagree only on the discordant
ones: ``lost`` (the baseline right, this one wrong) and ``gained`` (the reverse). McNemar's
exact test is a binomial test of ``lost`` among the discordant pairs at p = 1/2; the CI of the
loss (in accuracy points) resamples sentences, keeping each sentence's pair together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from energybench.stats import bootstrap_ci, mcnemar_exact_p

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class PairedLoss:
    lost: int  # baseline right, this one wrong
    gained: int  # baseline wrong, this one right
    mcnemar_p: float
    loss_ci95_pp: tuple[float, float]


def paired_loss(baseline: list[bool], candidate: list[bool], seed: int = 0) -> PairedLoss:
    """McNemar's exact p and the paired bootstrap 95 % CI of (baseline - candidate) accuracy, in points."""
    base, cand = np.asarray(baseline, dtype=bool), np.asarray(candidate, dtype=bool)
    if base.shape != cand.shape or base.size == 0:
        raise ValueError(f"paired loss needs the same sentences on both sides: {base.size} vs {cand.size}")
    lost, gained = int(np.sum(base & ~cand)), int(np.sum(~base & cand))
    diff = (base.astype(float) - cand.astype(float)) * 100.0  # +100 lost, -100 gained, 0 agreed: points
    ci = bootstrap_ci((diff,), np.mean, resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    mean = float(diff.mean())
    return PairedLoss(lost, gained, mcnemar_exact_p(lost, gained), ci or (mean, mean))
