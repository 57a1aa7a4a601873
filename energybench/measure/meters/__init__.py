"""Power meters: one Meter protocol, one class per back-end, each with an availability probe.

A meter measures one window: ``start()`` then ``stop()`` returns a :class:`Reading` whose
``energy_j`` is a number only when it is trustworthy; otherwise it is ``None`` with a reason.
``method`` says how the number was obtained:

- ``measured``: an energy counter read at both ends (NVML total-energy counter, RAPL);
- ``sampled``: power samples integrated over time (NVML power when no counter);
- ``estimated``: a model (CodeCarbon's TDP x CPU load, RAM W/GB). Shown, never gated on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from energybench.errors import UsageError

METHODS = ("measured", "sampled", "estimated")
MAX_PLAUSIBLE_POWER_W = 5000.0  # above any single GPU or CPU socket: a reading this high is a glitch


class MeterUnavailable(UsageError):
    """A meter cannot run here; the message says why and how to fix it."""


@dataclass(frozen=True)
class Reading:
    meter: str
    device: str
    method: str
    energy_j: float | None
    duration_s: float
    samples: int = 0
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"reading method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.energy_j is None and not self.reason:
            raise ValueError(f"{self.meter}: a missing energy reading needs a reason")

    @property
    def avg_power_w(self) -> float | None:
        if self.energy_j is None or self.duration_s <= 0:
            return None
        return self.energy_j / self.duration_s


class Meter(Protocol):
    name: str
    device: str
    update_period_s: float  # how often the sensor's value changes; windows must be many of these

    def start(self) -> None: ...

    def stop(self) -> Reading: ...

    def close(self) -> None: ...


def checked_reading(
    meter: str,
    device: str,
    method: str,
    energy_j: float | None,
    duration_s: float,
    update_period_s: float,
    samples: int = 0,
    details: dict[str, Any] | None = None,
    reason: str | None = None,
) -> Reading:
    """A Reading whose energy is None (with the reason) unless it is positive, finite and plausible."""
    details = details or {}
    if reason is None:
        reason = implausible(energy_j, duration_s, update_period_s)
    if reason is not None:
        return Reading(meter, device, method, None, duration_s, samples, reason, details)
    return Reading(meter, device, method, energy_j, duration_s, samples, None, details)


def implausible(energy_j: float | None, duration_s: float, update_period_s: float) -> str | None:
    if energy_j is None or not math.isfinite(energy_j):
        return f"energy reading is not a number ({energy_j})"
    if duration_s < update_period_s:
        return (
            f"window {duration_s * 1000:.1f} ms is shorter than the sensor update period "
            f"{update_period_s * 1000:.1f} ms: repeat the workload for longer"
        )
    if energy_j <= 0:
        return f"energy delta {energy_j:.6g} J is not positive (counter reset, wrap or stale sensor)"
    power = energy_j / duration_s if duration_s > 0 else math.inf
    if power > MAX_PLAUSIBLE_POWER_W:
        return f"average power {power:.0f} W is above any plausible device ({MAX_PLAUSIBLE_POWER_W:.0f} W)"
    return None
