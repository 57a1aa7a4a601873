"""A test double: a meter that reads a fixed power, so energy = power x window, labelled as you say.

Use it to test code that consumes readings without hardware (energybench's own tests do).
"""

from __future__ import annotations

import time

from energybench.measure.meters import Reading, checked_reading


class FakeMeter:
    def __init__(
        self,
        name: str = "fake",
        power_w: float = 50.0,
        update_period_s: float = 0.01,
        method: str = "measured",
        device: str = "fake device",
    ):
        self.name, self.power_w, self.update_period_s = name, power_w, update_period_s
        self.method, self.device = method, device
        self.windows = 0

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> Reading:
        duration = time.perf_counter() - self._start
        self.windows += 1
        return checked_reading(
            self.name, self.device, self.method, self.power_w * duration, duration, self.update_period_s, samples=1
        )

    def close(self) -> None:
        pass
