"""NVIDIA GPU energy through NVML (``import pynvml`` from nvidia-ml-py), one meter per GPU index.

Uses the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ, Volta and newer)
when the GPU has it: ``measured``. Otherwise samples ``nvmlDeviceGetPowerUsage`` (mW) in a
background thread and integrates it over time: ``sampled``. The counter's update period is
probed at start and stored; driver version, power limit, temperature, SM clock and clock-event
(throttle) reasons are recorded at the start and end of each window.

Truth check: with the counter, power is sampled as well and integrated over the same window
(``details["cross_check"]``: both energies, their ratio, the samples and a verdict). NVML samples
only part of the runtime (Yang et al., SC24: ~25 % on A100/H100), so the two can disagree:
more than 5 % apart on a window of 5 s or more makes the window ``unstable``, with the reason in
``details["flags"]``. A change of SM clock, power limit or clock-event reasons between the ends of
a window is flagged there too. Power is sampled from the instantaneous field
(``NVML_FI_DEV_POWER_INSTANT``) where the driver has it: on Ampere (except GA100) and newer, H100
included, ``nvmlDeviceGetPowerUsage`` is a 1 s average, which lags every change of load.
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
AGREEMENT = 0.05  # counter vs integrated power further apart than this: an unstable window ...
JUDGED_WINDOW_S = 5.0  # ... once the window is this long (shorter ones are reported, not judged)
FI_POWER_INSTANT, SCOPE_GPU = 186, 0  # NVML_FI_DEV_POWER_INSTANT, NVML_POWER_SCOPE_GPU (nvml.h)
NVML_SUCCESS = 0
WATCHED = ("sm_clock_mhz", "power_limit_w", "clock_event_reasons")  # a change between the ends is flagged


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
        self.power_source = self._power_source()
        if not self.has_counter and self.power_source is None:
            raise MeterUnavailable(f"{self.device} reports neither its energy counter nor its power through NVML")
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
        return self._power_w()

    def _power_source(self) -> str | None:
        """``instant`` (field 186), else ``average_1s`` (nvmlDeviceGetPowerUsage), else None."""
        for source in ("instant", "average_1s"):
            self.power_source = source
            try:
                self._power_w()
                return source
            except self.errors:
                continue
        return None

    def _power_w(self) -> float:
        if self.power_source == "instant":
            field = self.nvml.nvmlDeviceGetFieldValues(self.handle, [(FI_POWER_INSTANT, SCOPE_GPU)])[0]
            if field.nvmlReturn != NVML_SUCCESS:
                raise self.errors(field.nvmlReturn)
            return field.value.uiVal / 1000.0
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
            "clock_event_reasons": lambda: reason_names(self._event_reasons()),
        }
        for key, read in reads.items():
            try:
                out[key] = read()
            except self.errors as error:
                out[key] = None
                out.setdefault("unavailable", {})[key] = str(error)
        return out

    def _event_reasons(self) -> int:
        try:
            return self.nvml.nvmlDeviceGetCurrentClocksEventReasons(self.handle)
        except self.errors:  # drivers before 535 have only the older name
            return self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons(self.handle)

    # -- the window ------------------------------------------------------------------------
    def start(self) -> None:
        self._state_start = self.state()
        self._samples: list[tuple[float, float]] = []
        self._dropped = 0
        self._start_s = time.perf_counter()
        self._start_j = self._read() if self.has_counter else None
        if self.power_source:  # the measurement without a counter, the cross-check with one
            self._sample()  # opens the window now, whenever the thread gets to run
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample_loop, name=f"energybench-nvml{self.index}", daemon=True)
            self._thread.start()

    def _sample_loop(self) -> None:
        while not self._stop.wait(SAMPLE_PERIOD_S):
            self._sample()

    def _sample(self) -> None:
        try:
            power = self._power_w()
        except self.errors:
            power = math.nan
        if power is None or not math.isfinite(power) or power < 0:
            self._dropped += 1
            return
        self._samples.append((time.perf_counter(), power))

    def stop(self) -> Reading:
        end_j = self._read() if self.has_counter else None
        counter_s = time.perf_counter() - self._start_s
        self._stop_sampling()
        duration = counter_s if self.has_counter else time.perf_counter() - self._start_s
        sampled_j, sampled_n = integrate(self._samples), len(self._samples)
        if self.has_counter:
            energy, reason, samples = end_j - self._start_j, None, 2
            if end_j < self._start_j:
                reason = "NVML energy counter went backwards (driver reload or GPU reset): window dropped"
        else:
            energy, samples = sampled_j, sampled_n
            reason = None if samples >= 2 else f"only {samples} valid power sample(s) ({self._dropped} dropped)"
        details = self._window_details()
        if self.has_counter:
            check = cross_check(energy, sampled_j, duration, self.power_source, sampled_n)
            details["cross_check"] = check
            if check["verdict"] == "unstable":
                details["flags"].append(check["reason"])
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

    def _stop_sampling(self) -> None:
        """Close the window with a sample taken now; a later one from the thread falls outside it."""
        if self._thread:
            self._sample()
            end = self._samples[-1][0] if self._samples else math.inf
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._samples = sorted(sample for sample in self._samples if sample[0] <= end)

    def _window_details(self) -> dict[str, Any]:
        end = self.state()
        throttled = sorted(THROTTLING & set(end.get("clock_event_reasons") or []))
        return {
            "counter": "total_energy_consumption" if self.has_counter else f"{self.power_source} power sampling",
            "update_period_s": self.update_period_s,
            "dropped_samples": self._dropped,
            "state_start": self._state_start,
            "state_end": end,
            "throttled": throttled,
            "power_source": self.power_source,
            "flags": state_changes(self._state_start, end),
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


def cross_check(
    counter_j: float | None, sampled_j: float | None, duration_s: float, source: str | None, samples: int
) -> dict[str, Any]:
    """Counter energy against integrated power over one window: both, their ratio and a verdict."""
    out: dict[str, Any] = {
        "counter_j": counter_j,
        "sampled_j": sampled_j,
        "ratio": None,
        "power_source": source,
        "samples": samples,
        "window_s": duration_s,
        "verdict": "unjudged",
        "reason": None,
    }
    if sampled_j is None or not counter_j or counter_j <= 0:
        out["reason"] = "no power samples to compare" if sampled_j is None else "counter energy is not positive"
        return out
    out["ratio"] = ratio = sampled_j / counter_j
    apart = abs(ratio - 1.0)
    if duration_s < JUDGED_WINDOW_S:
        out["reason"] = f"{apart:.1%} apart, not judged: window {duration_s:.2f} s is under {JUDGED_WINDOW_S:g} s"
    elif apart > AGREEMENT:
        out["verdict"] = "unstable"
        out["reason"] = (
            f"unstable: integrated {source} power gives {sampled_j:.1f} J, the energy counter "
            f"{counter_j:.1f} J ({apart:.1%} apart, over {AGREEMENT:.0%}) in {duration_s:.1f} s"
        )
    else:
        out["verdict"] = "agrees"
    return out


def state_changes(start: dict[str, Any], end: dict[str, Any]) -> list[str]:
    """One line per watched device state (SM clock, power limit, clock-event reasons) that changed in the window."""
    return [
        f"{key} changed in the window: {start.get(key)} -> {end.get(key)}"
        for key in WATCHED
        if start.get(key) != end.get(key)
    ]
