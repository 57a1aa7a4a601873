"""Energy: per sample (per token for GPT-2), average power and CO2, with the method behind each number."""

import pytest


@pytest.mark.energybench("energy")
def test_energy(eb):
    eb.record_energy()
