"""The layer study's CSV exports, flattened from the run's layer-energy and impact records.

``layers.csv``: one row per model x precision x unit, energy and impact merged.
``correlations.csv``: one row per model x precision x level (per_layer, per_type).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from energybench.results.schema import Record

LAYERS_CSV = "layers.csv"
CORRELATIONS_CSV = "correlations.csv"
LAYER_COLUMNS = (
    "model",
    "precision",
    "layer",
    "layer_type",
    "calls",
    "time_s_per_sample",
    "share",
    "energy_j_per_sample",
    "energy_method",
    "ablation",
    "kl_mean",
    "kl_ci95_lo",
    "kl_ci95_hi",
    "quality_delta",
    "impact_score",
    "int8_quality_delta",
    "fp16_quality_delta",
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


def layer_rows(records: list[Record]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        if record.metric not in ("layer-energy", "impact") or record.status != "ok":
            continue
        method = record.details.get("meter", {}).get("method")
        for row in record.details.get("per_layer", []):
            out = merged.setdefault(
                (record.model, record.precision, row["layer"]), {"model": record.model, "precision": record.precision}
            )
            out.update({k: v for k, v in row.items() if k in LAYER_COLUMNS})
            if record.metric == "layer-energy":
                out["energy_method"] = f"apportioned from {method}" if method else None
            else:
                out["kl_ci95_lo"], out["kl_ci95_hi"] = row["kl_ci95"]
                out["int8_quality_delta"] = row["sensitivity"].get("int8")
                out["fp16_quality_delta"] = row["sensitivity"].get("fp16")
    return list(merged.values())


def correlation_rows(records: list[Record]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        if record.metric != "impact" or record.status != "ok":
            continue
        for level, stats in record.details.get("correlation", {}).items():
            row = {"model": record.model, "precision": record.precision, "level": level}
            row.update({k: v for k, v in stats.items() if k in CORRELATION_COLUMNS})
            for name in ("pearson", "spearman"):
                row[f"{name}_ci95_lo"], row[f"{name}_ci95_hi"] = stats.get(f"{name}_ci95") or (None, None)
            rows.append(row)
    return rows


def as_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def layer_csvs(records: list[Record]) -> dict[str, str]:
    """File name -> CSV text, only for the tables the run has rows for."""
    out = {}
    rows = layer_rows(records)
    if rows:
        out[LAYERS_CSV] = as_csv(rows, LAYER_COLUMNS)
    correlations = correlation_rows(records)
    if correlations:
        out[CORRELATIONS_CSV] = as_csv(correlations, CORRELATION_COLUMNS)
    return out
