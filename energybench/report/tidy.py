"""Records -> tidy pandas DataFrames: one row per record (a run or a history of runs), one row
per layer or layer type, and the derived tables figures draw (ratios vs fp32, plans, correlations).

Figures only draw what these functions extract; no figure computes a number of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from energybench.catalog import ALL_PRECISIONS, BASELINE_PRECISION, METRICS, UNIT_DISPLAY
from energybench.layers import flatten
from energybench.layers.rows import Plan
from energybench.results.answer import Config, pick
from energybench.results.schema import Record, Run
from energybench.results.store import flat_row

PRECISION_ORDER = ALL_PRECISIONS
CORRELATION_SUMMARY = ("spearman_rho", "pearson_r", "n")  # joined onto each layer row of the same level


def run_frame(run: Run) -> pd.DataFrame:
    """One row per record: the run's identity and machine, the flat record, and display columns.

    ``declared_shape`` marks the one record per model x precision x metric that the answer table
    reads (``energybench.results.answer.pick``): a shape sweep holds several, the figures of one
    number per precision draw that one (the batch-size figure draws them all)."""
    declared, metrics = declared_records(run.records), run.metrics  # the built-ins and the run's own declarations
    rows = [
        {
            **record_row(run, record),
            "declared_shape": id(record) in declared,
            "higher_is_better": metrics.higher_is_better(record.metric),
        }
        for record in run.records
    ]
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else None)
    return frame


def declared_records(records: list[Record]) -> set[int]:
    """The ids of the records at each model x precision x backend x metric's declared shape."""
    keys = dict.fromkeys((r.model, r.precision, r.backend, r.metric) for r in records if r.value is not None)
    chosen = (pick(records, Config(model, precision, backend), metric) for model, precision, backend, metric in keys)
    return {id(r) for r in chosen if r is not None}


def history_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """Many runs' frames stacked, oldest first, with ``started_at`` as a timestamp."""
    frames = [run_frame(run) for run in runs if run.records]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True, format="ISO8601")
    return frame.sort_values("started_at", kind="stable").reset_index(drop=True)


def record_row(run: Run, record: Record) -> dict[str, Any]:
    row = {
        "run_id": run.run_id,
        "started_at": run.started_at,
        "commit": (run.commit.get("id") or "")[:10] or None,
        "commit_dirty": run.commit.get("dirty"),
        "fingerprint": run.machine.get("fingerprint"),
        **flat_row(record),
        "precision": record.variant,  # a non-default backend's rows: onnxruntime-int8-static, against eager fp32
        "backend": record.backend,
        "energy_basis": flatten.energy_basis(record),
        "rounds_s": record.timing.rounds_s if record.timing else None,
        "details": record.details,
    }
    row["value_lo"], row["value_hi"] = spread(record)
    display = UNIT_DISPLAY.get(record.unit)
    factor, unit = (display.factor, display.unit) if display else (1.0, record.unit)
    row["display_unit"] = unit
    for key in ("value", "value_lo", "value_hi"):
        row[f"display_{key}"] = None if row[key] is None else row[key] * factor
    return row


def spread(record: Record) -> tuple[float | None, float | None]:
    """The interquartile range of the value, from the raw rounds, where rounds exist."""
    timing = record.timing
    if timing is None or record.value is None or len(timing.rounds_s) < 2:
        return None, None
    q1, q3 = (float(q) for q in np.percentile(timing.rounds_s, [25, 75]))
    if record.unit == "s":
        return q1, q3
    if record.unit.endswith("/s"):  # a rate = items / median time: the slow quartile gives the low end
        return record.value * timing.median_s / q3, record.value * timing.median_s / q1
    return None, None


def ordered_precisions(values: Iterable[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    known = [p for p in PRECISION_ORDER if p in present]
    return known + sorted(p for p in present if p not in PRECISION_ORDER)


def measured(frame: pd.DataFrame, metric: str, model: str | None = None) -> pd.DataFrame:
    """Rows of one metric (and model) that hold a value, one per precision: the declared shape's."""
    if frame.empty:
        return frame
    rows = frame[(frame["metric"] == metric) & frame["value"].notna()]
    if "declared_shape" in rows:
        rows = rows[rows["declared_shape"].astype(bool)]
    return rows if model is None else rows[rows["model"] == model]


def missing_reason(frame: pd.DataFrame, metric: str, model: str | None = None) -> str:
    """Why a metric has no value: the records' own reasons, or that no record exists."""
    if frame.empty:
        return f"no {metric} record in this run"
    rows = frame[frame["metric"] == metric]
    if model is not None:
        rows = rows[rows["model"] == model]
    reasons = list(dict.fromkeys(str(r) for r in rows["reason"].dropna()))
    if reasons:
        return "; ".join(reasons[:2]) + (f" (+{len(reasons) - 2} more)" if len(reasons) > 2 else "")
    return f"no {metric} record" + (f" for {model}" if model else "") + " in this run"


def quality_metric(frame: pd.DataFrame, model: str) -> str:
    rows = frame[(frame["model"] == model) & frame["metric"].isin(["accuracy", "perplexity"])]
    return "perplexity" if (rows["metric"] == "perplexity").any() else "accuracy"


def relative_frame(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each precision's value relative to fp32 of the same model: ``gain`` > 1 is better.

    gain = fp32 / value for lower-is-better metrics (so latency gives the speedup), value / fp32
    otherwise; ``change_pct`` is the plain change of the value; gain_lo/hi follow the IQR.
    """
    rows = measured(frame, metric)
    base = rows[rows["precision"] == BASELINE_PRECISION].drop_duplicates("model").set_index("model")["value"]
    rows = rows[rows["model"].isin(base.index)].copy()
    fp32 = rows["model"].map(base)
    lower = not (metric in METRICS and METRICS[metric].higher_is_better)
    rows["fp32_value"] = fp32
    rows["change_pct"] = (rows["value"] / fp32 - 1.0) * 100.0
    rows["gain"] = fp32 / rows["value"] if lower else rows["value"] / fp32
    lo, hi = (rows["value_hi"], rows["value_lo"]) if lower else (rows["value_lo"], rows["value_hi"])
    rows["gain_lo"] = fp32 / lo if lower else lo / fp32
    rows["gain_hi"] = fp32 / hi if lower else hi / fp32
    return rows


def quality_delta_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Quality change vs fp32 per model and precision, worse is positive: accuracy in points, perplexity in %."""
    parts = []
    for metric in (METRICS["accuracy"], METRICS["perplexity"]):
        rel = relative_frame(frame, metric.name)
        if rel.empty:
            continue
        loss = metric.loss(rel["value"], rel["fp32_value"])
        parts.append(rel.assign(quality_loss=loss, quality_unit=metric.loss_unit))
    if not parts:
        return relative_frame(frame, "accuracy").assign(
            quality_loss=pd.Series(dtype=float), quality_unit=pd.Series(dtype=object)
        )
    return pd.concat(parts, ignore_index=True)


def source_labels(frame: pd.DataFrame) -> list[str]:
    """'model: kind (checkpoint)' for every model of the frame that records a source."""
    if frame.empty or "source_kind" not in frame:
        return []
    rows = frame.dropna(subset=["source_kind"]).drop_duplicates(["model", "source_kind", "checkpoint"])
    labels = []
    for row in rows.itertuples():
        checkpoint = f" ({row.checkpoint})" if isinstance(row.checkpoint, str) and row.checkpoint else ""
        labels.append(f"{row.model}: {row.source_kind}{checkpoint}")
    return sorted(labels)


POSITION_COLUMNS = ("model", "precision", "backend", "bucket", "first", "tokens", "perplexity")


def position_frame(run: Run) -> pd.DataFrame:
    """Perplexity by token position inside the window (the quality pass's buckets), one row per bucket."""
    rows = [
        {
            "model": r.model,
            "precision": r.precision,
            "backend": r.backend,
            "bucket": bucket["label"],
            "first": bucket["first"],
            "tokens": bucket["tokens"],
            "perplexity": bucket["perplexity"],
        }
        for r in run.records
        if r.metric == "perplexity" and r.value is not None
        for bucket in r.details.get("perplexity_by_position") or ()
        if bucket.get("perplexity") is not None
    ]
    return pd.DataFrame(rows, columns=list(POSITION_COLUMNS))


def layer_frame(run: Run) -> pd.DataFrame:
    """One row per layer and per layer type (``level``), energy and impact side by side, with the
    level's correlation (columns and rows from ``energybench.layers.flatten``, as in ``layers.csv``)."""
    rows = pd.DataFrame(flatten.layer_rows(run.records), columns=list(flatten.LAYER_COLUMNS))
    correlations = pd.DataFrame(flatten.correlation_rows(run.records), columns=list(flatten.CORRELATION_COLUMNS))
    keys = ["model", "precision", "level"]
    frame = rows.merge(correlations[[*keys, *CORRELATION_SUMMARY]], on=keys, how="left")
    frame.attrs["run_id"] = run.run_id
    frame.attrs["reasons"] = {
        metric: [
            f"{r.model} {r.precision}: {r.reason}"
            for r in run.records
            if r.metric == metric and r.value is None and r.reason
        ]
        for metric in ("layer-energy", "impact")
    }
    return frame


LAYER_VARIABLES = {
    "energy_j_per_sample": "energy / sample",
    "time_s_per_sample": "time / sample",
    "share": "time share",
    "kl_mean": "KL (ablation)",
    "quality_delta": "quality delta",
    "impact_score": "impact score",
    "int8_quality_delta": "int8 sensitivity",
}


def layer_series(layers: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, precision) pairs that hold per-layer rows."""
    rows = layers[layers["level"] == "per_layer"] if not layers.empty else layers
    return sorted(set(zip(rows["model"], rows["precision"]))) if not rows.empty else []


def layer_correlations(layers: pd.DataFrame, model: str, precision: str) -> pd.DataFrame:
    """Spearman correlation between one model x precision's per-layer measures (at least 3 layers)."""
    rows = layers[(layers["level"] == "per_layer") & (layers["model"] == model) & (layers["precision"] == precision)]
    columns = [c for c in LAYER_VARIABLES if c in rows and rows[c].notna().sum() >= 3 and rows[c].nunique() > 1]
    if len(columns) < 2:
        return pd.DataFrame()
    matrix = rows[columns].astype(float).corr(method="spearman", min_periods=3)
    return matrix.rename(index=LAYER_VARIABLES, columns=LAYER_VARIABLES)


def plan_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Mixed-precision plans: predicted vs measured quality loss and energy saving, per model."""
    rows = []
    quality = quality_delta_frame(frame)
    energy = relative_frame(frame, "energy")
    for record in frame[frame["precision"] == "mixed"].itertuples():
        saved = record.details.get("plan") if isinstance(record.details, dict) else None
        if not saved:
            continue
        plan = Plan.from_dict(saved)
        if record.metric in ("accuracy", "perplexity"):
            got = quality[(quality["model"] == record.model) & (quality["precision"] == "mixed")]
            unit = "pp" if record.metric == "accuracy" else "%"
            # predicted_loss is a loss like Budget.loss (positive = worse), not the signed delta
            rows.append(
                plan_row(record, plan, f"{record.metric} loss ({unit})", plan.predicted_loss, got, "quality_loss")
            )
        elif record.metric == "energy":
            got = energy[(energy["model"] == record.model) & (energy["precision"] == "mixed")]
            got = got.assign(saving_pct=-got["change_pct"])
            predicted = plan.predicted_energy_saving_pct
            rows.append(plan_row(record, plan, "energy saving (%)", predicted, got, "saving_pct"))
    return pd.DataFrame(rows, columns=["model", "quantity", "predicted", "measured", "reason", "layers", "budget"])


def plan_row(
    record: Any, plan: Plan, quantity: str, predicted: float | None, got: pd.DataFrame, column: str
) -> dict[str, Any]:
    """``record`` is a row of the run frame (a namedtuple from ``itertuples``)."""
    value = float(got[column].iloc[0]) if not got.empty else None
    reason = None if value is not None else (record.reason or "no fp32 baseline of the same model in this run")
    return {
        "model": record.model,
        "quantity": quantity,
        "predicted": predicted,
        "measured": value,
        "reason": reason,
        "layers": len(plan.quantize),
        "budget": plan.budget,
    }
