"""Energy: per sample (per token for GPT-2), average power and CO2, with the method behind each number."""

import pytest


@pytest.mark.energybench("energy")
def test_energy(eb_model, power_meter):
    batch = eb_model.batch()  # --batch-size x --seq-len real tokens
    outcome = power_meter.measure(
        eb_model.forward(batch), items=eb_model.items_in(batch), item=eb_model.item, shape=eb_model.shape(batch)
    )
    assert outcome.passed, outcome.message  # --energy-budget, where given, against this test's fp32 figure
