"""The layer study's rows as flat table rows, one set of column names for ``layers.csv``,
``correlations.csv`` and the report's frames; and the basis of an energy figure.

Works on anything shaped like a ``Record`` (model, precision, metric, status, basis, source,
details), so this stage needs nothing from ``results``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Protocol

from energybench.catalog import GATED_BASES
from energybench.layers.rows import Correlation, ImpactStudy, LayerTable, Window

APPORTIONED = "apportioned"
LEVELS = ("per_layer", "per_type")
LAYER_COLUMNS = (
    "model",
    "precision",
    "level",
    "layer",
    "layer_type",
    "calls",
    "units",
    "time_s_per_sample",
    "share",
    "energy_j_per_sample",
    "energy_basis",
    "flops_per_sample",
    "ablation",
    "kl_mean",
    "kl_ci95_lo",
    "kl_ci95_hi",
    "quality_delta",
    "quality_delta_ci95_lo",
    "quality_delta_ci95_hi",
    "impact_score",
    "int8_quality_delta",
    "fp16_quality_delta",
    "source_kind",
)
CORRELATION_COLUMNS = (
    "model",
    "precision",
    "level",
    "x",
    "n",
    "pearson_r",
    "pearson_p",
    "pearson_ci95_lo",
    "pearson_ci95_hi",
    "spearman_rho",
    "spearman_p",
    "spearman_ci95_lo",
    "spearman_ci95_hi",
    "reason",
)


class StudyRecord(Protocol):
    """What this module reads of a ``energybench.results.schema.Record``."""

    model: str
    precision: str
    metric: str
    status: str
    basis: str | None
    source: dict[str, Any]
    details: dict[str, Any]


def window_basis(record: StudyRecord) -> str | None:
    """The basis of the figure itself, or for an apportioned one, of the window it was apportioned from."""
    if record.basis != APPORTIONED:
        return record.basis
    return Window.from_dict(record.details.get("meter") or {}).basis


def energy_basis(record: StudyRecord) -> str | None:
    """How an energy-like number was obtained: ``measured``, ``estimated``, ``apportioned (estimated)``..."""
    if record.basis != APPORTIONED:
        return record.basis
    window = window_basis(record)
    return f"{APPORTIONED} ({window})" if window else APPORTIONED


def gated(record: StudyRecord) -> bool:
    """May a comparison fail on this record? Never on an estimate, nor on a share of one."""
    basis = window_basis(record)
    return basis is None or basis in GATED_BASES


def layer_rows(records: Iterable[StudyRecord]) -> list[dict[str, Any]]:
    """One row per model x precision x level x unit (or layer type), energy and impact merged."""
    merged: dict[tuple, dict[str, Any]] = {}
    for record in records:
        for level, values in study_rows(record):
            key = (record.model, record.precision, level, values.get("layer"), values["layer_type"])
            row = merged.setdefault(key, identity(record, level))
            row.update({k: v for k, v in values.items() if v is not None})
    return [{column: row.get(column) for column in LAYER_COLUMNS} for row in merged.values()]


def identity(record: StudyRecord, level: str) -> dict[str, Any]:
    return {
        "model": record.model,
        "precision": record.precision,
        "level": level,
        "source_kind": record.source.get("kind"),
    }


def study_rows(record: StudyRecord) -> list[tuple[str, dict[str, Any]]]:
    """(level, values) of one layer-energy or impact record; nothing for other records."""
    if record.status != "ok" or not record.details:
        return []
    if record.metric == "layer-energy":
        table = LayerTable.from_dict(record.details)
        basis = {"energy_basis": energy_basis(record)}
        return [("per_layer", {**as_row(r), **basis}) for r in table.per_layer] + [
            ("per_type", {**as_row(r), **basis}) for r in table.per_type
        ]
    if record.metric == "impact":
        study = ImpactStudy.from_dict(record.details)
        return [("per_layer", as_row(r)) for r in study.per_layer] + [("per_type", as_row(r)) for r in study.per_type]
    return []


def correlation_rows(records: Iterable[StudyRecord]) -> list[dict[str, Any]]:
    """One row per model x precision x level of each impact record."""
    rows = []
    for record in records:
        if record.metric != "impact" or record.status != "ok":
            continue
        correlations = ImpactStudy.from_dict(record.details).correlation
        for level in LEVELS:
            found: Correlation | None = correlations.get(level)
            if found is not None:
                rows.append({"model": record.model, "precision": record.precision, "level": level, **as_row(found)})
    return rows


def as_row(row: Any) -> dict[str, Any]:
    return dataclasses.asdict(row)
