"""Generation: greedy decoding with the KV cache; time to first token, per-token decode latency and
throughput, peak memory with the cache, and energy per generated token (causal LMs)."""

import pytest


@pytest.mark.energybench("generation")
def test_generation(eb):
    eb.record_generation()  # exactly --gen-tokens new tokens after a --seq-len WikiText-2 prompt
