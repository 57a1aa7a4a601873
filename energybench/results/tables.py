"""The layer study's CSV exports, flattened from the run's layer-energy and impact records.

``layers.csv``: one row per model x precision x unit, energy and impact merged.
``correlations.csv``: one row per model x precision x level (per_layer, per_type).
Rows and column names come from ``energybench.layers.flatten``, as do the report's layer frames.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from energybench.layers.flatten import CORRELATION_COLUMNS, correlation_rows, layer_rows
from energybench.results.schema import Record

LAYERS_CSV = "layers.csv"
CORRELATIONS_CSV = "correlations.csv"
LAYER_CSV_COLUMNS = (
    "model",
    "precision",
    "layer",
    "layer_type",
    "calls",
    "time_s_per_sample",
    "share",
    "energy_j_per_sample",
    "energy_basis",
    "ablation",
    "kl_mean",
    "kl_ci95_lo",
    "kl_ci95_hi",
    "quality_delta",
    "impact_score",
    "int8_quality_delta",
    "fp16_quality_delta",
)


def unit_rows(records: list[Record]) -> list[dict[str, Any]]:
    """The per-unit rows (``layers.csv`` leaves the per-type sums to the report)."""
    return [row for row in layer_rows(records) if row["level"] == "per_layer"]


def as_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def layer_csvs(records: list[Record]) -> dict[str, str]:
    """File name -> CSV text, only for the tables the run has rows for."""
    out = {}
    rows = unit_rows(records)
    if rows:
        out[LAYERS_CSV] = as_csv(rows, LAYER_CSV_COLUMNS)
    correlations = correlation_rows(records)
    if correlations:
        out[CORRELATIONS_CSV] = as_csv(correlations, CORRELATION_COLUMNS)
    return out
