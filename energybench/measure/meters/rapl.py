"""RAPL energy counters from ``/sys/class/powercap`` (Intel and AMD), without double counting.

Counted: every top-level package zone plus DRAM zones (top-level or under a package). Not
counted: core/uncore subzones (already inside their package) and ``psys`` (the whole SoC,
which would count the packages twice). Counters wrap at ``max_energy_range_uj``; a
background thread polls often enough that at most one wrap can happen between two reads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from energybench.measure.meters import MAX_PLAUSIBLE_POWER_W, MeterUnavailable, Reading, checked_reading

DEFAULT_ROOT = Path("/sys/class/powercap")
RAPL_UPDATE_PERIOD_S = 0.001  # RAPL counters update about every millisecond
PERMISSION_FIX = (
    "RAPL counters are root-only since Linux 5.10 (CVE-2020-8694); run as root, or "
    "`sudo chmod a+r /sys/class/powercap/*/energy_uj` (until reboot), or use --meters codecarbon"
)


@dataclass(frozen=True)
class Zone:
    path: Path
    name: str  # e.g. package-0, dram
    max_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text())


def discover(root: Path = DEFAULT_ROOT) -> list[Zone]:
    """The zones to sum: packages and DRAM, never psys or core/uncore."""
    root = Path(root)
    if not root.is_dir():
        raise MeterUnavailable(f"no powercap tree at {root}: this kernel or machine exposes no RAPL")
    zones = []
    for path in sorted(root.glob("*-rapl:*")):
        if path.is_symlink() and not path.exists():
            continue
        name = (path / "name").read_text().strip() if (path / "name").is_file() else ""
        top_level = path.name.count(":") == 1
        if (top_level and name.startswith("package")) or name == "dram":
            zones.append(Zone(path, name, int((path / "max_energy_range_uj").read_text())))
    if not zones:
        raise MeterUnavailable(f"no RAPL package or dram zones under {root}")
    return zones


def probe(root: Path = DEFAULT_ROOT) -> str | None:
    """Why RAPL cannot run here, or None when it can."""
    try:
        for zone in discover(root):
            zone.read_uj()
    except MeterUnavailable as error:
        return str(error)
    except PermissionError as error:
        return f"permission denied reading {error.filename or root}: {PERMISSION_FIX}"
    except (OSError, ValueError) as error:
        return f"cannot read RAPL counters under {root}: {error}"
    return None


def poll_period_s(zones: list[Zone]) -> float:
    """Fast enough that no counter can wrap twice between polls, even at an implausibly high power."""
    shortest_wrap_s = min(z.max_range_uj for z in zones) / 1e6 / MAX_PLAUSIBLE_POWER_W
    return min(1.0, max(0.005, shortest_wrap_s / 4))


class RaplMeter:
    name = "rapl"
    update_period_s = RAPL_UPDATE_PERIOD_S

    def __init__(self, root: Path = DEFAULT_ROOT):
        reason = probe(root)
        if reason:
            raise MeterUnavailable(reason)
        self.zones = discover(root)
        self.device = "cpu " + "+".join(z.name for z in self.zones)
        self.poll_s = poll_period_s(self.zones)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._last = [z.read_uj() for z in self.zones]
        self._total_uj = [0] * len(self.zones)
        self._wraps = [0] * len(self.zones)
        self._polls = 0
        self._start_s = time.perf_counter()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll_loop, name="energybench-rapl", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        """Add each zone's delta since the last read, correcting one wrap through max_energy_range_uj."""
        with self._lock:
            for i, zone in enumerate(self.zones):
                now = zone.read_uj()
                delta = now - self._last[i]
                if delta < 0:
                    delta += zone.max_range_uj
                    self._wraps[i] += 1
                self._total_uj[i] += delta
                self._last[i] = now
            self._polls += 1

    def stop(self) -> Reading:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.poll()
        duration = time.perf_counter() - self._start_s
        energy = sum(self._total_uj) / 1e6
        details = {
            "zones": {z.name: uj / 1e6 for z, uj in zip(self.zones, self._total_uj)},
            "wraps": sum(self._wraps),
            "poll_period_s": self.poll_s,
        }
        return checked_reading(
            self.name,
            self.device,
            "measured",
            energy,
            duration,
            self.update_period_s,
            samples=self._polls,
            details=details,
        )

    def close(self) -> None:
        self._stop.set()
