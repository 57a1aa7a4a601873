"""Quality: SST-2 accuracy and WikiText-2 perplexity, each within its loss budget against fp32."""

import pytest


@pytest.mark.energybench("accuracy")
def test_accuracy(eb):
    eb.record_quality()


@pytest.mark.energybench("perplexity")
def test_perplexity(eb):
    eb.record_quality()
