"""CodeCarbon: CO2 (kg CO2eq) for a window, and its energy estimate when nothing better exists.

Runs CodeCarbon's OfflineEmissionsTracker (no network) for the country (and region) the user
gives, quietly, with ``save_to_file=False``: it writes no emissions.csv anywhere; its figures
go into energybench's own run records under ``reports/``. On machines without RAPL or NVML
access, CodeCarbon models CPU power as TDP x load and RAM as a constant per GB: the reading
is then labelled ``estimated`` (it is never gated on). The carbon intensity it used is stored
so CO2 can be recomputed from any stored energy figure.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

from energybench.measure.meters import MeterUnavailable, Reading, checked_reading

MEASURE_POWER_S = 1.0
MEASURED_CPU_MODES = {"intel_rapl", "amd_rapl", "rapl"}


def probe() -> str | None:
    try:
        import codecarbon  # noqa: F401  # deferred: optional
    except ImportError:
        return "codecarbon is not installed: pip install 'energybench[codecarbon]'"
    return None


class CodeCarbonMeter:
    name = "codecarbon"
    update_period_s = MEASURE_POWER_S

    def __init__(self, country_iso_code: str = "USA", region: str | None = None, output_dir: Path | None = None):
        reason = probe()
        if reason:
            raise MeterUnavailable(reason)
        self.country, self.region = country_iso_code, region
        self.output_dir = output_dir  # unused while save_to_file=False: the figures go into energybench's run
        self.device = f"process (codecarbon, {country_iso_code}{'/' + region if region else ''})"

    def start(self) -> None:
        from codecarbon import OfflineEmissionsTracker  # deferred: optional

        options: dict[str, Any] = dict(
            country_iso_code=self.country,
            save_to_file=False,
            log_level="error",
            measure_power_secs=MEASURE_POWER_S,
            allow_multiple_runs=True,
            tracking_mode="process",
        )
        if self.region:
            options["region"] = self.region
        with quiet_codecarbon():
            self._tracker = OfflineEmissionsTracker(**options)
            self._start_s = time.perf_counter()
            self._tracker.start()

    def stop(self) -> Reading:
        with quiet_codecarbon():
            emissions_kg = self._tracker.stop()
        duration = time.perf_counter() - self._start_s
        data = self._tracker.final_emissions_data
        energy_j = float(data.energy_consumed) * 3.6e6  # kWh -> J
        modes = hardware_modes(self._tracker)
        intensity = emissions_kg / float(data.energy_consumed) if data.energy_consumed else None
        details = {
            "co2_kg": emissions_kg,
            "carbon_intensity_kg_per_kwh": intensity,
            "country_iso_code": data.country_iso_code,
            "region": data.region,
            "cpu_energy_j": float(data.cpu_energy) * 3.6e6,
            "ram_energy_j": float(data.ram_energy) * 3.6e6,
            "gpu_energy_j": float(data.gpu_energy) * 3.6e6,
            "hardware_modes": modes,
            "cpu_model": data.cpu_model,
            "codecarbon_duration_s": float(data.duration),
        }
        method = "measured" if set(modes.get("CPU", [])) <= MEASURED_CPU_MODES and "RAM" not in modes else "estimated"
        return checked_reading(
            self.name,
            self.device,
            method,
            energy_j,
            duration,
            self.update_period_s,
            samples=max(1, int(duration / MEASURE_POWER_S)),
            details=details,
        )

    def close(self) -> None:
        pass


def hardware_modes(tracker: Any) -> dict[str, list[str]]:
    """How CodeCarbon measured each part: CPU 'cpu_load'/'constant' and RAM are models, RAPL is a counter."""
    modes: dict[str, list[str]] = {}
    for hardware in getattr(tracker, "_hardware", []):
        kind = type(hardware).__name__
        modes.setdefault(kind, []).append(str(getattr(hardware, "_mode", None) or "model"))
    return modes


class quiet_codecarbon:
    """CodeCarbon logs and warns on every start/stop; keep the pytest output readable."""

    def __enter__(self) -> None:
        self._logger = logging.getLogger("codecarbon")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: Any) -> None:
        self._warnings.__exit__(*exc)
        self._logger.setLevel(self._level)
