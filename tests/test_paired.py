"""The paired accuracy loss: McNemar's exact test and the paired bootstrap CI."""

import pytest

from energybench.measure.quality import pack_bits, unpack_bits
from energybench.results.paired import paired_loss
from energybench.results.schema import Budget


def test_mcnemar_counts_only_discordant_sentences():
    base = [True] * 90 + [False] * 10
    cand = [True] * 80 + [False] * 10 + [True] * 2 + [False] * 8  # 10 lost, 2 gained
    found = paired_loss(base, cand)
    assert (found.lost, found.gained) == (10, 2)
    from scipy import stats

    assert found.mcnemar_p == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue)
    low, high = found.loss_ci95_pp
    assert low < 8.0 < high and low > 0  # 8 points lost, and the CI excludes no loss


def test_identical_predictions_have_no_loss_and_p_1():
    found = paired_loss([True, False, True], [True, False, True])
    assert (found.lost, found.gained, found.mcnemar_p, found.loss_ci95_pp) == (0, 0, 1.0, (0.0, 0.0))


def test_correctness_bits_round_trip_compactly():
    hits = [bool(i % 3) for i in range(872)]
    bits = pack_bits(hits)
    assert len(bits) == 218 and unpack_bits(bits, 872) == hits
    with pytest.raises(ValueError, match="holds 872 examples, not 900"):
        unpack_bits(bits, 900)


def test_the_budget_message_shows_the_paired_statistics():
    budget = Budget("fp32", 0.9, 0.8, 1.0, "pp", True, lost=10, gained=2, mcnemar_p=0.039, loss_ci95=(0.1, 1.6))
    text = budget.message("accuracy", "int8", 0.892)
    assert "loss 0.80 pp (95 % CI [+0.10, +1.60] pp, McNemar p=0.039 (10 lost / 2 gained)) within budget" in text
