"""Which meters a session opens: ``--meters auto|none|nvml,rapl,codecarbon``.

``auto`` opens what works here and records why the others are absent; a meter asked for by
name that cannot run is an error at start-up (the plugin turns it into one usage error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from energybench.measure.meters import Meter, MeterUnavailable
from energybench.measure.meters.codecarbon import CodeCarbonMeter
from energybench.measure.meters.nvml import NvmlMeter
from energybench.measure.meters.rapl import DEFAULT_ROOT, RaplMeter

METER_NAMES = ("nvml", "rapl", "codecarbon")


@dataclass
class MeterSet:
    meters: list[Meter] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)  # name -> why not

    def primary(self) -> Meter | None:
        """The most direct energy source: NVML counter/sampling, then RAPL, then CodeCarbon's estimate."""
        for name in METER_NAMES:
            for meter in self.meters:
                if meter.name == name:
                    return meter
        return self.meters[0] if self.meters else None  # e.g. a FakeMeter

    def by_name(self, name: str) -> Meter | None:
        return next((m for m in self.meters if m.name == name), None)

    def close(self) -> None:
        for meter in self.meters:
            meter.close()


def open_meter(
    name: str, device: Any, *, country: str, region: str | None, rapl_root: Path | None, output_dir: Path | None
) -> Meter:
    if name == "nvml":
        if getattr(device, "type", "cpu") != "cuda":
            raise MeterUnavailable("the benchmark device is the CPU, not a GPU")

        return NvmlMeter(index=device.index or 0)
    if name == "rapl":
        return RaplMeter(rapl_root or DEFAULT_ROOT)

    return CodeCarbonMeter(country, region, output_dir)


def open_meters(requested: tuple[str, ...] | str, device: Any, **options: Any) -> MeterSet:
    """Open the requested meters; raise MeterUnavailable naming the meter when one asked for by name fails."""
    result = MeterSet()
    if requested == "none":
        result.absent = {name: "--meters none" for name in METER_NAMES}
        return result
    names = METER_NAMES if requested == "auto" else requested
    for name in names:
        try:
            result.meters.append(open_meter(name, device, **options))
        except MeterUnavailable as error:
            if requested != "auto":
                result.close()
                raise MeterUnavailable(f"--meters {name}: {error}") from error
            result.absent[name] = str(error)
    return result
