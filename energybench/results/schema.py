"""The result schema: one frozen Record per model x precision x metric, and the Run envelope.

Units live in the names (``median_s``, ``size_bytes``) or, for the one headline number of a
record, in its ``unit`` field. A number that was not measured is ``None`` with a ``reason``,
never 0. An energy-like number says how it was obtained in ``basis`` (``catalog.BASES``).

Schema history: 2 added ``Record.basis`` and flat, typed layer-study rows
(``energybench.layers.rows``); files of schema 1 are upgraded on load (``upgrade``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from energybench.catalog import BASES, DEFAULT_BACKEND, ENERGY_METRICS, MetricTable, custom_metric, variant
from energybench.errors import DataError

SCHEMA_VERSION = 2  # 2: Record.basis; TimingStats.blocks_s / between_block_cv; Budget's paired statistics
UNSTABLE_IQR_OVER_MEDIAN = 0.10
STATUSES = ("ok", "skipped", "error", "budget-breach")


class SchemaError(DataError):
    """A run file this version cannot read."""


@dataclass(frozen=True)
class TimingStats:
    """Order statistics of timed rounds, in seconds, with the raw rounds for later comparison.

    ``blocks_s`` keeps the rounds of each block (``--blocks``), in timing order; the pooled order
    statistics are over all of them. ``between_block_cv`` is the spread of the block medians
    (standard deviation / mean), ``None`` with one block. Runs older than schema 2 read as one block.
    """

    rounds: int
    median_s: float
    iqr_s: float
    p90_s: float
    p99_s: float
    mean_s: float
    stddev_s: float
    min_s: float
    max_s: float
    unstable: bool
    rounds_s: tuple[float, ...]
    blocks_s: tuple[tuple[float, ...], ...] = ()
    between_block_cv: float | None = None

    def __post_init__(self) -> None:
        if not self.blocks_s:  # one block: the rounds themselves
            object.__setattr__(self, "blocks_s", (tuple(self.rounds_s),))

    @property
    def block_medians_s(self) -> tuple[float, ...]:
        return tuple(float(np.median(block)) for block in self.blocks_s)

    @classmethod
    def from_blocks(cls, blocks_s: list[list[float]] | tuple[tuple[float, ...], ...]) -> TimingStats:
        """Pooled statistics of every block's rounds, with the blocks and their between-block spread."""
        blocks = tuple(tuple(float(x) for x in block) for block in blocks_s if len(block))
        if not blocks:
            raise ValueError("timed blocks: got no rounds")
        pooled = cls.from_rounds([x for block in blocks for x in block])
        medians = np.array([np.median(block) for block in blocks])
        spread = float(medians.std(ddof=1) / medians.mean()) if medians.size > 1 else None
        return dataclasses.replace(pooled, blocks_s=blocks, between_block_cv=spread)

    @classmethod
    def from_rounds(cls, rounds_s: list[float] | tuple[float, ...]) -> TimingStats:
        data = np.asarray(rounds_s, dtype=float)
        if data.size == 0 or not np.all(np.isfinite(data)) or np.any(data <= 0):
            raise ValueError(f"timed rounds must be positive and finite, got {list(rounds_s)[:5]}...")
        q1, median, q3, p90, p99 = np.percentile(data, [25, 50, 75, 90, 99])
        iqr = float(q3 - q1)
        return cls(
            rounds=int(data.size),
            median_s=float(median),
            iqr_s=iqr,
            p90_s=float(p90),
            p99_s=float(p99),
            mean_s=float(data.mean()),
            stddev_s=float(data.std(ddof=1)) if data.size > 1 else 0.0,
            min_s=float(data.min()),
            max_s=float(data.max()),
            unstable=bool(iqr / median > UNSTABLE_IQR_OVER_MEDIAN),
            rounds_s=tuple(float(x) for x in data),
        )


@dataclass(frozen=True)
class Budget:
    """An accuracy-loss budget verdict against the FP32 baseline of the same model and data."""

    baseline_precision: str
    baseline_value: float
    loss: float  # in `unit`, positive = worse
    limit: float
    unit: str  # "pp" (accuracy points) or "%" (perplexity increase)
    passed: bool
    # accuracy: the paired difference on the same sentences (energybench.results.paired)
    lost: int | None = None  # baseline right, this precision wrong
    gained: int | None = None  # baseline wrong, this precision right
    mcnemar_p: float | None = None  # exact McNemar (binomial test on the discordant sentences)
    loss_ci95: tuple[float, float] | None = None  # paired bootstrap 95 % CI of the loss, in `unit`

    def paired(self) -> str:
        """``95 % CI [a, b] pp, McNemar p=.. (lost/gained discordant)``, or "" without per-sentence data."""
        if self.mcnemar_p is None or self.loss_ci95 is None:
            return ""
        low, high = self.loss_ci95
        return (
            f"95 % CI [{low:+.2f}, {high:+.2f}] {self.unit}, McNemar p={self.mcnemar_p:.2g} "
            f"({self.lost} lost / {self.gained} gained)"
        )

    def message(self, metric: str, precision: str, value: float) -> str:
        verdict = "within" if self.passed else "exceeds"
        paired = f" ({self.paired()})" if self.paired() else ""
        return (
            f"{metric} {precision} {value:.4f} vs {self.baseline_precision} baseline "
            f"{self.baseline_value:.4f}: loss {self.loss:.2f} {self.unit}{paired} {verdict} budget "
            f"{self.limit:.2f} {self.unit}"
        )


@dataclass(frozen=True)
class Record:
    """One measured (or explicitly not measured) number."""

    model: str
    precision: str
    metric: str
    value: float | None
    unit: str
    status: str = "ok"
    reason: str | None = None
    method: str = ""
    basis: str | None = None  # energy-like metrics: measured / sampled / estimated / apportioned
    device: str = "cpu"
    shape: dict[str, int] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    data: dict[str, str] | None = None
    timing: TimingStats | None = None
    budget: Budget | None = None
    details: dict[str, Any] = field(default_factory=dict)
    test_id: str = ""
    backend: str = DEFAULT_BACKEND  # what ran the model (eager, compile, onnxruntime); older runs: eager

    @property
    def variant(self) -> str:
        """The precision as run by its backend (``int8``, ``onnxruntime-int8-static``)."""
        return variant(self.precision, self.backend)

    @property
    def series(self) -> tuple[str, str, str]:
        """What this record is a measurement of: (model, precision as run by its backend, metric).
        compare and A/B align records by it (and by shape, where a run swept the metric)."""
        return (self.model, self.variant, self.metric)

    @property
    def checkpoint(self) -> tuple[Any, ...]:
        """Which weights were measured: a local checkpoint by its weights digest (the same bytes in
        another folder are the same model), any other source by kind, checkpoint and revision."""
        kind, revision = self.source.get("kind"), self.source.get("revision")
        if kind == "path" and str(revision or "").startswith("sha256:"):
            return (kind, revision)
        return (kind, self.source.get("checkpoint"), revision)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"record status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.value is None and not self.reason:
            raise ValueError(f"{self.model}/{self.precision}/{self.metric}: a missing value needs a reason")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"{self.model}/{self.precision}/{self.metric}: value {self.value} is not finite")
        if self.basis is not None and self.basis not in BASES:
            raise ValueError(f"record basis {self.basis!r} is not one of {', '.join(BASES)}")
        if self.metric in ENERGY_METRICS and self.value is not None and self.basis is None:
            raise ValueError(f"{self.model}/{self.precision}/{self.metric}: an energy figure needs its basis")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def unstable(self) -> str | None:
        """Why this record's number is unstable, or None: its energy window's meters disagreed
        (``details["unstable"]``), or its timed rounds spread (IQR / median over the bound)."""
        if self.details.get("unstable"):
            return str(self.details["unstable"])
        if self.timing is not None and self.timing.unstable:
            return f"IQR/median > {UNSTABLE_IQR_OVER_MEDIAN:.0%}"
        return None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Record:
        raw = dict(raw)
        if raw.get("timing"):
            timing = dict(raw["timing"])
            timing["rounds_s"] = tuple(timing["rounds_s"])
            timing["blocks_s"] = tuple(tuple(block) for block in timing.get("blocks_s") or ())
            raw["timing"] = TimingStats(**timing)
        if raw.get("budget"):
            budget = dict(raw["budget"])
            budget["loss_ci95"] = tuple(budget["loss_ci95"]) if budget.get("loss_ci95") else None
            raw["budget"] = Budget(**budget)
        return cls(**raw)


@dataclass
class Run:
    """One pytest session's worth of records, with where and on what they were measured."""

    run_id: str
    started_at: str
    finished_at: str
    energybench_version: str
    machine: dict[str, Any]
    commit: dict[str, Any]
    options: dict[str, Any]
    models: dict[str, dict[str, Any]]
    records: list[Record]
    meters: dict[str, Any] = field(default_factory=dict)
    partial: bool = False  # interrupted or stopped early: never a baseline, never `latest`
    partial_reason: str | None = None  # why it is partial (Ctrl-C, -x, collection errors)
    custom_metrics: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> direction, unit, description
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["records"] = [r.to_dict() for r in self.records]
        return out

    @property
    def metrics(self) -> MetricTable:
        """The metrics this run knows: the built-ins and its own declarations (``custom_metrics``)."""
        return declare_custom_metrics(self.custom_metrics)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Run:
        if not isinstance(raw, dict):
            raise SchemaError(f"a JSON {type(raw).__name__}, not an object: not an energybench run")
        version = raw.get("schema_version")
        if not isinstance(version, int):
            raise SchemaError("no integer schema_version: not an energybench run")
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"schema_version {version} is newer than this energybench reads ({SCHEMA_VERSION}); "
                "upgrade energybench to read it"
            )
        raw = upgrade(raw)
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in fields}
        kwargs["records"] = [Record.from_dict(r) for r in raw.get("records", [])]
        declare_custom_metrics(raw.get("custom_metrics") or {})  # a bad declaration stops the load
        return cls(**kwargs)


def declare_custom_metrics(*declared: dict[str, dict[str, str]]) -> MetricTable:
    """The metric table of runs' own declarations (``custom_metrics``): compare, history and the
    report read a custom metric's direction and unit from it like a built-in's. A SchemaError
    names a declaration that is incomplete, takes a built-in name or disagrees with another."""
    table = MetricTable()
    for declarations in declared:
        for name, facts in declarations.items():
            try:
                table.declare(custom_metric(name, facts))
            except (KeyError, TypeError, ValueError) as error:
                raise SchemaError(f"custom metric {name!r}: {error}") from None
    return table


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring an older run dict up to SCHEMA_VERSION, one step per version.

    Runs saved before ``partial`` existed were only ever saved complete: they load as complete.
    The layer study's old row keys are read by ``energybench.layers.rows`` ``from_dict``.
    """
    raw = dict(raw)
    raw["partial"] = bool(raw.get("partial", False))
    raw.setdefault("partial_reason", None)
    if raw["schema_version"] < 2:
        records = [one_block({**r, "basis": basis_from_method(r)}) for r in raw.get("records", [])]
        raw = {**raw, "records": records, "schema_version": 2}
    if any(is_old_impact(r) for r in raw.get("records", [])):
        raw = {**raw, "records": [part for r in raw["records"] for part in split_impact(r)]}
    return raw


def is_old_impact(record: dict[str, Any]) -> bool:
    """Before ``energy-impact-rho`` existed, the ``impact`` record's value was that Spearman rho."""
    return record.get("metric") == "impact" and record.get("unit") == "rho"


def split_impact(record: dict[str, Any]) -> list[dict[str, Any]]:
    """An old ``impact`` record -> the ``impact`` record (its value the largest per-unit impact score,
    the rows unchanged) and the ``energy-impact-rho`` record (the old value, the correlations)."""
    if not is_old_impact(record):
        return [record]
    details = record.get("details") or {}
    rho = {**record, "metric": "energy-impact-rho", "details": {"correlation": details.get("correlation") or {}}}
    scores = [(row.get("impact_score"), row.get("layer")) for row in details.get("per_layer") or []]
    scores = [(score, layer) for score, layer in scores if isinstance(score, (int, float))]
    if not scores:
        reason = record.get("reason") or "no per-unit impact rows in this old record"
        return [{**record, "value": None, "unit": "nats", "reason": reason}, rho]
    score, layer = max(scores, key=lambda pair: pair[0])
    impact = {**record, "value": float(score), "unit": "nats", "details": {**details, "largest_unit": layer}}
    return [impact, rho]


def one_block(record: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: a run timed before blocks existed holds its rounds as one block."""
    timing = record.get("timing")
    if not timing:
        return record
    return {**record, "timing": {**timing, "blocks_s": [list(timing["rounds_s"])], "between_block_cv": None}}


def basis_from_method(record: dict[str, Any]) -> str | None:
    """Schema 1 wrote the basis only into the method text (``estimated: codecarbon on cpu, ...``);
    co2's method quotes the energy method after its own. The one place that still parses it.
    A figure whose method names no basis is taken as an estimate, so it is shown but never gates."""
    if record.get("metric") not in ENERGY_METRICS:
        return None
    for part in str(record.get("method", "")).split("; "):
        head = part.split(":", 1)[0].strip()
        if head in BASES:
            return head
    return "estimated" if record.get("value") is not None else None


# -- shapes ---------------------------------------------------------------------------------
def swept_metrics(runs: list[list[Record]]) -> set[tuple[str, str, str]]:
    """(model, variant, metric) that some run measured at several shapes: aligned shape by shape."""
    swept = set()
    for records in runs:
        seen: dict[tuple[str, str, str], set[tuple]] = {}
        for r in records:
            seen.setdefault(r.series, set()).add(shape_key(r))
        swept |= {triple for triple, shapes in seen.items() if len(shapes) > 1}
    return swept


def shape_key(record: Record) -> tuple:
    return tuple(sorted(record.shape.items()))


def shape_label(shape: dict[str, int]) -> str:
    """``b8x128`` (batch x sequence length), ``+32 new`` for a generation's new tokens."""
    text = f"b{shape.get('batch_size', '?')}" + (f"x{shape['seq_len']}" if "seq_len" in shape else "")
    return text + (f"+{shape['gen_tokens']} new" if "gen_tokens" in shape else "")
