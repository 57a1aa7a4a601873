"""Layers: per-layer time, share and apportioned energy; prediction impact, correlations and the mixed plan."""

import pytest


@pytest.mark.energybench("layer-energy")
def test_layer_energy(eb):
    eb.record_layer_energy()


@pytest.mark.energybench("impact")
def test_impact(eb):
    eb.record_impact()
