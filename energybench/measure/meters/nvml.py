"""NVIDIA GPU energy through NVML (``import pynvml`` from nvidia-ml-py), one meter per GPU index.

Uses the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ, Volta and newer)
when the GPU has it: ``measured``. Otherwise samples ``nvmlDeviceGetPowerUsage`` (mW) in a
background thread and integrates it over time: ``sampled``. The counter's update period is
probed at start and stored; driver version, power limit, temperature, SM clock and clock-event
(throttle) reasons are recorded at the start and end of each window.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from typing import Any

from energybench.measure.meters import MeterUnavailable, Reading, checked_reading

SAMPLE_PERIOD_S = 0.02
PROBE_S = 0.6
EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
THROTTLING = {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}


def load_pynvml() -> Any:
    try:
        import pynvml  # deferred: optional
    except ImportError as error:
        raise MeterUnavailable("nvidia-ml-py is not installed: pip install 'energybench[nvml]'") from error
    return pynvml


def probe(index: int = 0, nvml: Any = None) -> str | None:
    """Why NVML cannot meter GPU ``index`` here, or None when it can."""
    try:
        nvml = nvml or load_pynvml()
        errors = load_pynvml().NVMLError
        try:
            nvml.nvmlInit()
        except errors as error:
            return f"NVML cannot start ({error}): no NVIDIA driver or GPU visible"
        count = nvml.nvmlDeviceGetCount()
        if index >= count:
            return f"GPU index {index} does not exist ({count} GPU(s) visible)"
    except MeterUnavailable as error:
        return str(error)
    return None


def decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlMeter:
    name = "nvml"

    def __init__(self, index: int = 0, nvml: Any = None, probe_s: float = PROBE_S):
        reason = probe(index, nvml)
        if reason:
            raise MeterUnavailable(reason)
        self.nvml = nvml or load_pynvml()
        self.errors = load_pynvml().NVMLError
        self.index = index
        self.handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
        self.device = f"gpu:{index} {decode(self.nvml.nvmlDeviceGetName(self.handle))}"
        self.has_counter = self._counter_supported()
        self.update_period_s = self._probe_update_period(probe_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- capability and sensor timing ------------------------------------------------------
    def _counter_supported(self) -> bool:
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            return True
        except self.errors:
            return False

    def _read(self) -> float:
        """The counter in J (counter mode) or the power in W (sampling mode)."""
        if self.has_counter:
            return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def _probe_update_period(self, probe_s: float) -> float:
        """Median time between changes of the sensor's value, watched for ``probe_s`` seconds."""
        changes, last, start = [], self._read(), time.perf_counter()
        while time.perf_counter() - start < probe_s:
            value = self._read()
            if value != last:
                changes.append(time.perf_counter())
                last = value
            time.sleep(0.001)
        gaps = [b - a for a, b in zip(changes, changes[1:])]
        return statistics.median(gaps) if gaps else 0.1  # NVML's documented ~100 ms when it never moved

    # -- device state ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        nvml, handle = self.nvml, self.handle
        out: dict[str, Any] = {}
        reads = {
            "driver": lambda: decode(nvml.nvmlSystemGetDriverVersion()),
            "power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
            "temperature_c": lambda: nvml.nvmlDeviceGetTemperature(handle, 0),  # NVML_TEMPERATURE_GPU
            "sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, 1),  # NVML_CLOCK_SM
            "clock_event_reasons": lambda: reason_names(nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)),
        }
        for key, read in reads.items():
            try:
                out[key] = read()
            except self.errors as error:
                out[key] = None
                out.setdefault("unavailable", {})[key] = str(error)
        return out

    # -- the window ------------------------------------------------------------------------
    def start(self) -> None:
        self._state_start = self.state()
        self._samples: list[tuple[float, float]] = []
        self._dropped = 0
        self._start_s = time.perf_counter()
        self._start_j = self._read() if self.has_counter else None
        if not self.has_counter:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample_loop, name=f"energybench-nvml{self.index}", daemon=True)
            self._thread.start()

    def _sample_loop(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(SAMPLE_PERIOD_S):
                return

    def _sample(self) -> None:
        try:
            power = self._read()
        except self.errors:
            power = math.nan
        if power is None or not math.isfinite(power) or power < 0:
            self._dropped += 1
            return
        self._samples.append((time.perf_counter(), power))

    def stop(self) -> Reading:
        if self.has_counter:
            end_j = self._read()
            duration = time.perf_counter() - self._start_s
            energy, reason, samples = end_j - self._start_j, None, 2
            if end_j < self._start_j:
                reason = "NVML energy counter went backwards (driver reload or GPU reset): window dropped"
        else:
            self._stop.set()
            if self._thread:
                self._thread.join()
            self._sample()
            duration = time.perf_counter() - self._start_s
            energy, samples = integrate(self._samples), len(self._samples)
            reason = None if samples >= 2 else f"only {samples} valid power sample(s) ({self._dropped} dropped)"
        details = self._window_details()
        method = "measured" if self.has_counter else "sampled"
        return checked_reading(
            self.name,
            self.device,
            method,
            energy,
            duration,
            self.update_period_s,
            samples=samples,
            details=details,
            reason=reason,
        )

    def _window_details(self) -> dict[str, Any]:
        end = self.state()
        throttled = sorted(THROTTLING & set(end.get("clock_event_reasons") or []))
        return {
            "counter": "total_energy_consumption" if self.has_counter else "power_usage sampling",
            "update_period_s": self.update_period_s,
            "dropped_samples": self._dropped,
            "state_start": self._state_start,
            "state_end": end,
            "throttled": throttled,
        }

    def close(self) -> None:
        self._stop.set()


def integrate(samples: list[tuple[float, float]]) -> float | None:
    """Trapezoidal integral of (time_s, power_w) samples, in J."""
    if len(samples) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))


def reason_names(mask: int) -> list[str]:
    return [name for bit, name in EVENT_REASONS.items() if int(mask) & bit]
