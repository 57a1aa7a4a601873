"""Footprint: peak memory of a forward pass and the serialized size of the converted model."""

import pytest


@pytest.mark.energybench("memory")
def test_peak_memory(eb):
    eb.record_peak_memory()


@pytest.mark.energybench("size")
def test_model_size(eb):
    eb.record_size()
