"""The layer study's results as typed rows: what a layer-energy or impact record's details hold.

Each row is a frozen dataclass with flat, unit-named fields; ``to_dict`` writes it into
``Record.details`` and ``from_dict`` reads it back, also from runs saved before the rows were
typed (schema 1: ``kl_ci95`` and ``sensitivity`` nested, the window's ``method``, the plan's
``basis``). ``energybench.layers.flatten`` turns them into table rows for the CSVs and the report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

Row = TypeVar("Row")


def to_dict(row: Any) -> dict[str, Any]:
    return dataclasses.asdict(row)


def from_dict(cls: type[Row], raw: dict[str, Any]) -> Row:
    """The dataclass from a saved dict: unknown keys ignored, missing ones at their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in raw.items() if k in names})


def split_pair(raw: dict[str, Any], old: str, low: str, high: str) -> dict[str, Any]:
    """Schema 1 kept a CI as one ``[low, high]`` list; now it is two fields."""
    if old not in raw:
        return raw
    pair = raw[old] or (None, None)
    return {**raw, low: pair[0], high: pair[1]}


@dataclass(frozen=True)
class UnitRow:
    """One unit's hooked time per sample, its share of the pass, and its share of the window's energy."""

    layer: str
    layer_type: str
    calls: int
    time_s_per_sample: float
    share: float
    energy_j_per_sample: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> UnitRow:
        return from_dict(cls, raw)


@dataclass(frozen=True)
class TypeRow:
    """One layer type (or ``unattributed``): the units' summed time, share, energy and FLOPs."""

    layer_type: str
    calls: int
    time_s_per_sample: float
    share: float
    energy_j_per_sample: float | None = None
    flops_per_sample: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TypeRow:
        return from_dict(cls, raw)


@dataclass(frozen=True)
class SumCheck:
    """Do the units' times add up to the hooked passes (within 10 %)?"""

    layers_s: float
    end_to_end_s: float
    ratio: float
    within_10pct: bool


@dataclass(frozen=True)
class HookOverhead:
    """Median pass time with and without the timing hooks, at one batch size."""

    with_hooks_s: float
    without_hooks_s: float
    overhead_pct: float
    batch_size: int


@dataclass(frozen=True)
class Window:
    """The metered window the per-unit energy is apportioned from (all None with a reason if none read)."""

    name: str | None = None  # the meter
    basis: str | None = None  # measured / sampled / estimated (catalog.BASES)
    energy_j_per_sample: float | None = None
    window_s: float | None = None
    calls: int | None = None
    reason: str | None = None
    energy_test: str | None = None  # the energy test whose window this is; None: metered by the layer study

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Window:
        return from_dict(cls, {"basis": raw.get("method"), **raw})


@dataclass(frozen=True)
class LayerTable:
    """A layer-energy record's details: per unit and per layer type, with the checks and the window."""

    per_layer: list[UnitRow]
    per_type: list[TypeRow]
    timer: str
    sum_check: SumCheck | None = None
    hook_overhead: HookOverhead | None = None
    meter: Window = field(default_factory=Window)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LayerTable:
        return cls(
            per_layer=[UnitRow.from_dict(r) for r in raw.get("per_layer") or []],
            per_type=[TypeRow.from_dict(r) for r in raw.get("per_type") or []],
            timer=raw.get("timer", ""),
            sum_check=SumCheck(**raw["sum_check"]) if raw.get("sum_check") else None,
            hook_overhead=HookOverhead(**raw["hook_overhead"]) if raw.get("hook_overhead") else None,
            meter=Window.from_dict(raw.get("meter") or {}),
        )


@dataclass(frozen=True)
class ImpactRow:
    """One unit: ablation KL and quality delta (with CIs), int8/fp16 sensitivity, its energy and share."""

    layer: str
    layer_type: str
    ablation: str
    kl_mean: float
    kl_ci95_lo: float | None
    kl_ci95_hi: float | None
    quality_delta: float
    impact_score: float
    quality_delta_ci95_lo: float | None = None  # classification only: paired per-sentence differences
    quality_delta_ci95_hi: float | None = None
    int8_quality_delta: float | None = None  # only this unit at int8, the rest fp32
    fp16_quality_delta: float | None = None
    energy_j_per_sample: float | None = None
    share: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImpactRow:
        raw = split_pair(raw, "kl_ci95", "kl_ci95_lo", "kl_ci95_hi")
        raw = split_pair(raw, "quality_delta_ci95", "quality_delta_ci95_lo", "quality_delta_ci95_hi")
        if "sensitivity" in raw:
            sensitivity = raw["sensitivity"] or {}
            raw = {**raw, "int8_quality_delta": sensitivity.get("int8"), "fp16_quality_delta": sensitivity.get("fp16")}
        return from_dict(cls, raw)


@dataclass(frozen=True)
class ImpactTypeRow:
    """One layer type: mean KL, quality delta and impact per unit; energy and share summed."""

    layer_type: str
    units: int | None
    kl_mean: float
    quality_delta: float
    impact_score: float
    energy_j_per_sample: float | None
    share: float | None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImpactTypeRow:
        return from_dict(cls, {"units": None, "energy_j_per_sample": None, "share": None, **raw})


@dataclass(frozen=True)
class Correlation:
    """Energy (or time share, ``x``) vs impact score: Pearson and Spearman, p-values, bootstrap 95 % CIs.

    Undefined figures are None with a ``reason`` (fewer than 3 pairs, a constant column).
    """

    n: int
    x: str | None = None
    pearson_r: float | None = None
    pearson_p: float | None = None
    pearson_ci95_lo: float | None = None
    pearson_ci95_hi: float | None = None
    spearman_rho: float | None = None
    spearman_p: float | None = None
    spearman_ci95_lo: float | None = None
    spearman_ci95_hi: float | None = None
    reason: str | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Correlation:
        raw = split_pair(raw, "pearson_ci95", "pearson_ci95_lo", "pearson_ci95_hi")
        return from_dict(cls, split_pair(raw, "spearman_ci95", "spearman_ci95_lo", "spearman_ci95_hi"))


@dataclass(frozen=True)
class Candidate:
    """A unit the plan may put at int8: its fp32 and int8 energy (or time) per sample, its int8 delta."""

    layer: str
    energy_j_per_sample: float | None
    int8_energy_j_per_sample: float | None
    int8_delta: float | None

    @property
    def usable(self) -> bool:
        return None not in (self.energy_j_per_sample, self.int8_energy_j_per_sample, self.int8_delta)

    @property
    def saving_j(self) -> float:
        return self.energy_j_per_sample - self.int8_energy_j_per_sample  # type: ignore[operator]


@dataclass(frozen=True)
class Plan:
    """The mixed-precision plan: which units go to int8, and what it predicts."""

    budget: float
    quantize: list[str]
    precision_of_quantized: str
    predicted_quality_delta: float
    predicted_loss: float
    predicted_energy_saving_pct: float | None
    method: str = ""
    energy_proxy: str = ""  # how "energy" was taken (e.g. proportional to time at the same power)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Plan:
        return from_dict(cls, {"energy_proxy": raw.get("basis", ""), **raw})


@dataclass(frozen=True)
class ImpactStudy:
    """An impact record's details: per unit and per type, both correlations, and the plan (CPU only)."""

    samples: int
    impact_score: str
    per_layer: list[ImpactRow]
    per_type: list[ImpactTypeRow]
    correlation: dict[str, Correlation]  # "per_layer", "per_type"
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImpactStudy:
        return cls(
            samples=raw.get("samples", 0),
            impact_score=raw.get("impact_score", ""),
            per_layer=[ImpactRow.from_dict(r) for r in raw.get("per_layer") or []],
            per_type=[ImpactTypeRow.from_dict(r) for r in raw.get("per_type") or []],
            correlation={k: Correlation.from_dict(v) for k, v in (raw.get("correlation") or {}).items()},
            plan=Plan.from_dict(raw["plan"]) if raw.get("plan") else None,
        )
