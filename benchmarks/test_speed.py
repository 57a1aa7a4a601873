"""Speed: single-request latency (batch 1) and batched throughput, timed by pytest-benchmark."""

import pytest


@pytest.mark.energybench("latency")
def test_latency(eb, benchmark):
    eb.record_latency(benchmark)


@pytest.mark.energybench("throughput")
def test_throughput(eb, benchmark):
    eb.record_throughput(benchmark)
