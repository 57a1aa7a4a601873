"""The metered window: an idle baseline, then the workload repeated until the window is long enough
for the sensor, divided back into energy per item, total and above idle, with CO2.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from energybench.measure.meters import Reading
from energybench.measure.meters.selection import MeterSet

MIN_WINDOW_FLOOR_S = 2.0
UPDATE_PERIODS_PER_WINDOW = 10


@dataclass(frozen=True)
class EnergyResult:
    primary: str
    method: str
    calls: int
    items: int
    window_s: float
    min_window_s: float
    energy_j: float | None
    per_item_j: float | None
    dynamic_per_item_j: float | None
    avg_power_w: float | None
    idle_power_w: float | None
    co2_per_item_g: float | None
    carbon_intensity_kg_per_kwh: float | None
    reason: str | None
    readings: dict[str, Reading] = field(default_factory=dict)
    idle: Reading | None = None


def min_window_s(update_period_s: float, configured: float | None) -> float:
    """Many sensor update periods long, never under two seconds (unless the user sets it)."""
    return configured or max(MIN_WINDOW_FLOOR_S, UPDATE_PERIODS_PER_WINDOW * update_period_s)


def measure(
    run: Callable[[], None],
    meters: MeterSet,
    idle: Reading,
    *,
    items_per_call: int,
    configured_min_s: float | None,
    min_calls: int,
) -> EnergyResult:
    """Run ``run`` (which synchronizes the device itself) inside one window of every meter."""
    primary = meters.primary()
    window = min_window_s(primary.update_period_s, configured_min_s)
    run()  # warm-up outside the window
    for meter in meters.meters:
        meter.start()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < window:  # repeat until long and many enough
        run()
        calls += 1
    readings = {meter.name: meter.stop() for meter in reversed(meters.meters)}
    return summarize(readings, primary.name, idle, calls, calls * items_per_call, window)


def summarize(
    readings: dict[str, Reading], primary: str, idle: Reading, calls: int, items: int, window: float
) -> EnergyResult:
    main = readings[primary]
    idle_power = idle.avg_power_w
    dynamic = None
    if main.energy_j is not None and idle_power is not None:
        dynamic = (main.energy_j - idle_power * main.duration_s) / items
    intensity = carbon_intensity(readings)
    per_item = main.energy_j / items if main.energy_j is not None else None
    co2_g = per_item / 3.6e6 * intensity * 1000 if per_item is not None and intensity is not None else None
    # a Reading with a reason already has energy_j None, so every derived figure is None with it
    return EnergyResult(
        primary=primary,
        method=main.method,
        calls=calls,
        items=items,
        window_s=main.duration_s,
        min_window_s=window,
        energy_j=main.energy_j,
        per_item_j=per_item,
        dynamic_per_item_j=dynamic,
        avg_power_w=main.avg_power_w,
        idle_power_w=idle_power,
        co2_per_item_g=co2_g,
        carbon_intensity_kg_per_kwh=intensity,
        reason=main.reason,
        readings=readings,
        idle=idle,
    )


def carbon_intensity(readings: dict[str, Reading]) -> float | None:
    """CodeCarbon's grid carbon intensity for the window (kg CO2eq per kWh), if it ran."""
    reading = readings.get("codecarbon")
    return reading.details.get("carbon_intensity_kg_per_kwh") if reading else None


def energy_details(result: Any) -> dict[str, Any]:
    details = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("readings", "idle")}
    details["readings"] = {name: dataclasses.asdict(r) for name, r in result.readings.items()}
    details["idle"] = dataclasses.asdict(result.idle) if result.idle else None
    details.update(truth_check(result.readings[result.primary]))
    return details


def truth_check(reading: Any) -> dict[str, Any]:
    """The primary meter's verdicts, lifted onto the record: ``unstable`` (counter and sampled power
    disagree) with its reason, ``flags`` (clocks, power limit or throttling changed in the window)."""
    check = reading.details.get("cross_check") or {}
    out: dict[str, Any] = {}
    if check:
        out["cross_check"] = check
        out["unstable"] = check["reason"] if check["verdict"] == "unstable" else None
    flags = [flag for flag in reading.details.get("flags", []) if flag != check.get("reason")]
    if flags:
        out["flags"] = flags
    return out
