"""What every export reads of a record the same way: its name, its spread, whether it gates, and
the machine it ran on (a merged run keeps each record's own machine)."""

from __future__ import annotations

from typing import Any

import numpy as np

from energybench.catalog import METRICS
from energybench.layers.flatten import gated
from energybench.results.schema import Record, Run, shape_label

NO_SHAPE = "-"


def exported(record: Record) -> bool:
    """A measured number of a metric that is compared between runs (not the layer study's rows)."""
    known = METRICS.get(record.metric)
    return record.value is not None and known is not None and known.comparable


def is_estimate(record: Record) -> bool:
    """An energy figure the gate never fails on: an estimate, or a share of one (``flatten.gated``)."""
    return not gated(record)


def shape_name(record: Record) -> str:
    return shape_label(record.shape).replace(" ", "") if record.shape else NO_SHAPE


def benchmark_name(record: Record) -> str:
    """``model/precision/backend/shape``, e.g. ``distilbert/int8/eager/b1x128``."""
    return f"{record.model}/{record.precision}/{record.backend}/{shape_name(record)}"


def round_values(record: Record) -> list[float]:
    """Every timed round in the record's own unit (a latency's seconds, a throughput's items/s):
    a throughput is items / round time, so it scales with the inverse of each round."""
    timing, value = record.timing, record.value
    if timing is None or value is None or not timing.rounds_s:
        return [] if value is None else [value]
    known = METRICS.get(record.metric)
    if known is not None and known.higher_is_better:
        return [value * timing.median_s / x for x in timing.rounds_s]
    return [value * x / timing.median_s for x in timing.rounds_s]


def quartiles(record: Record) -> tuple[float, float] | None:
    """The first and third quartile of the record's rounds in its own unit; None without rounds."""
    values = round_values(record)
    if record.timing is None or len(values) < 2:
        return None
    low, high = np.percentile(values, [25, 75])
    return float(low), float(high)


def record_machine(run: Run, record: Record) -> dict[str, Any]:
    """The machine that measured this record: its runner's, in a merged run; else the run's."""
    runner = record.details.get("merged_from")
    for machine in run.machine.get("runners") or []:
        if runner is not None and machine.get("run_id") == runner:
            return machine
    return run.machine


def hardware(machine: dict[str, Any]) -> str:
    """``NVIDIA H200 (driver 580.159.04)``, or the CPU where no GPU was used."""
    if machine.get("gpu"):
        driver = f" (driver {machine['gpu_driver']})" if machine.get("gpu_driver") else ""
        return f"{machine['gpu']}{driver}"
    return f"CPU {machine.get('cpu') or 'unknown'} x {machine.get('cpu_count') or '?'}"
