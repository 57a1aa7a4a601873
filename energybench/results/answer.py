"""The answer table: per model and precision x backend, the quality loss vs fp32 with its budget
verdict, and the speed-up, energy, size and memory ratios against eager fp32, with energy per
1,000 inferences (the unit of Luccioni et al., "Power Hungry Processing", 2023).

A run may hold one metric at several shapes (a shape sweep). The table reads one declared shape
per metric (``SHAPE_RULE``): latency at batch 1 where measured (else the smallest batch), the
others at the largest batch; ``shape_note`` says which, for the caption.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from energybench.catalog import BASELINE_PRECISION, DEFAULT_BACKEND, METRICS, QUALITY_METRICS, directed, variant
from energybench.results.schema import Record, Run

SHAPE_RULE = {"latency": "smallest", "throughput": "largest", "energy": "largest", "memory": "largest"}
JOULES_PER_WH = 3600.0
PER_THOUSAND = 1000


@dataclass(frozen=True)
class Config:
    """One measured configuration of a model: precision as run by a backend."""

    model: str
    precision: str
    backend: str

    @property
    def variant(self) -> str:
        return variant(self.precision, self.backend)

    @property
    def is_baseline(self) -> bool:
        return self.precision == BASELINE_PRECISION and self.backend == DEFAULT_BACKEND


@dataclass(frozen=True)
class Loss:
    """Quality loss vs eager fp32 of the same model (positive = worse) and its budget verdict."""

    metric: str
    value: float  # in `unit`
    unit: str  # "pp" (accuracy) or "%" (perplexity)
    limit: float | None  # None: no budget applies (fp32, or none set)
    passed: bool


@dataclass(frozen=True)
class AnswerRow:
    config: Config
    loss: Loss | None
    speedup: float | None  # fp32 latency per item / this one's
    energy_ratio: float | None  # this energy per item / fp32's
    size_ratio: float | None
    memory_ratio: float | None
    energy_j_per_1000: float | None
    energy_basis: str | None
    behaviour: Record | None = None  # flips (classifiers) or top-1 agreement (LMs) against fp32, CI in details
    recovery: Record | None = None  # quality / fp32 quality, paired CI in details
    fallback: str | None = None  # the kernel path ran none of the precision's quantized operators: why


def batch_size(record: Record) -> int:
    return int(record.shape.get("batch_size") or 1)


def per_item(record: Record) -> float | None:
    """The record's value per item: latency is one call of a batch, so divided by its batch size."""
    if record.value is None:
        return None
    return record.value / batch_size(record) if record.metric == "latency" else record.value


def configs(records: Iterable[Record], model: str) -> list[Config]:
    """The model's configurations in the run's order, eager fp32 first."""
    found = dict.fromkeys(Config(r.model, r.precision, r.backend) for r in records if r.model == model)
    return sorted(found, key=lambda c: not c.is_baseline)


def pick(records: Iterable[Record], config: Config, metric: str) -> Record | None:
    """The configuration's measured record of this metric at the declared shape (SHAPE_RULE)."""
    found = [
        r
        for r in records
        if (r.model, r.precision, r.backend, r.metric) == (config.model, config.precision, config.backend, metric)
        and r.value is not None
    ]
    if not found:
        return None
    if SHAPE_RULE.get(metric) == "smallest":
        return min(found, key=batch_size)
    return max(found, key=batch_size)


def shape_note(records: Iterable[Record]) -> str:
    """Which shape the table read each metric at, e.g. ``latency at batch 1; energy at batch 32``."""
    records = list(records)
    parts = []
    for metric, rule in SHAPE_RULE.items():
        sizes = {batch_size(r) for r in records if r.metric == metric and r.value is not None}
        if sizes:
            chosen = min(sizes) if rule == "smallest" else max(sizes)
            parts.append(f"{metric} at batch {chosen}")
    return "; ".join(parts)


def quality_loss(records: list[Record], config: Config) -> Loss | None:
    """The loss vs eager fp32 and its verdict: the record's own budget where it has one.

    Accuracy (in points) or perplexity (in %) where measured; else a user's own metric that a
    ``quality_budget`` check judged (its budget's loss and unit)."""
    for metric in QUALITY_METRICS.values():
        found = metric_loss(records, config, metric, METRICS[metric].loss_unit, METRICS[metric].higher_is_better)
        if found is None:
            continue
        own = pick(records, config, metric)
        if config.precision == BASELINE_PRECISION or own is None or own.budget is None:
            return found
        return dataclasses.replace(found, limit=own.budget.limit, passed=own.budget.passed)
    return budgeted_loss(records, config)


def budgeted_loss(records: list[Record], config: Config) -> Loss | None:
    """The loss of a user's own metric that carries a budget on some configuration of the model."""
    budgeted = [r for r in records if r.model == config.model and r.budget is not None and r.value is not None]
    for record in budgeted:
        if record.metric in QUALITY_METRICS.values():
            continue
        own = pick(records, config, record.metric)
        if own is None:
            continue
        if own.budget is None:  # the baseline the others were judged against
            return Loss(record.metric, 0.0, record.budget.unit, None, True) if config.is_baseline else None  # type: ignore[union-attr]
        return Loss(own.metric, own.budget.loss, own.budget.unit, own.budget.limit, own.budget.passed)
    return None


def metric_loss(
    records: list[Record], config: Config, metric: str, unit: str, higher_is_better: bool, limit: float | None = None
) -> Loss | None:
    """How much worse than eager fp32 this configuration's ``metric`` is, positive = worse, in
    points (``pp``, x100 of a fraction) or percent (``%``); None where either side is missing."""
    own = pick(records, config, metric)
    base = pick(records, Config(config.model, BASELINE_PRECISION, DEFAULT_BACKEND), metric)
    if own is None or base is None or own.value is None or base.value is None or (unit == "%" and not base.value):
        return None
    value = directed(metric, higher_is_better).loss(own.value, base.value, unit)  # the catalog's one loss rule
    return Loss(metric, value, unit, limit, limit is None or value <= limit + 1e-9)


def ratio(records: list[Record], config: Config, metric: str, invert: bool = False) -> float | None:
    base_config = Config(config.model, BASELINE_PRECISION, DEFAULT_BACKEND)
    own, base = pick(records, config, metric), pick(records, base_config, metric)
    if own is None or base is None:
        return None
    own_value, base_value = per_item(own), per_item(base)
    if not own_value or not base_value:
        return None
    return base_value / own_value if invert else own_value / base_value


def speedup(records: list[Record], config: Config) -> float | None:
    """Latency per item of fp32 over this one's; throughput's ratio where latency was not measured."""
    found = ratio(records, config, "latency", invert=True)
    return found if found is not None else ratio(records, config, "throughput")


def answer_row(records: list[Record], config: Config) -> AnswerRow:
    energy = pick(records, config, "energy")
    return AnswerRow(
        config=config,
        loss=quality_loss(records, config),
        speedup=speedup(records, config),
        energy_ratio=ratio(records, config, "energy"),
        size_ratio=ratio(records, config, "size"),
        memory_ratio=ratio(records, config, "memory"),
        energy_j_per_1000=energy.value * PER_THOUSAND if energy and energy.value is not None else None,
        energy_basis=energy.basis if energy else None,
        behaviour=pick(records, config, "flips") or pick(records, config, "agreement"),
        recovery=pick(records, config, "recovery"),
        fallback=next(
            (r.details["fallback"] for r in records if same_config(r, config) and r.details.get("fallback")), None
        ),
    )


def same_config(record: Record, config: Config) -> bool:
    return (record.model, record.precision, record.backend) == (config.model, config.precision, config.backend)


def answer_table(run: Run) -> dict[str, list[AnswerRow]]:
    """Model -> one row per configuration, eager fp32 first."""
    records = run.records
    models = dict.fromkeys(r.model for r in records)
    return {model: [answer_row(records, c) for c in configs(records, model)] for model in models}


def wh_per_1000(joules_per_1000: float) -> float:
    return joules_per_1000 / JOULES_PER_WH
