"""Quality: SST-2 accuracy and WikiText-2 perplexity, each within its loss budget against fp32."""

import pytest


@pytest.mark.energybench("accuracy")
def test_accuracy(eb, quality_budget):
    record = eb.record_quality(fail_on_budget=False)  # SST-2 validation accuracy, with its fp32 verdict
    result = quality_budget.of(record)  # --accuracy-budget (default 1 pp) against fp32
    assert result.passed, result.message


@pytest.mark.energybench("perplexity")
def test_perplexity(eb, quality_budget):
    record = eb.record_quality(fail_on_budget=False)  # strided WikiText-2 test perplexity
    result = quality_budget.of(record)  # --perplexity-budget (default 5 %) against fp32
    assert result.passed, result.message
