"""The layer figures, each a pure function of ``tidy.layer_frame`` (per layer and per layer type):
energy and ablation impact by layer type, energy against impact, and their correlations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from energybench.report import draw
from energybench.report.figures import grouped
from energybench.report.tidy import layer_correlations, layer_series

NO_LAYERS = "no {what} records in this run (run the layer benchmarks: metric '{metric}')"


def stamped_layers(figure: Figure, layers: pd.DataFrame) -> Figure:
    """The stamp wants ``source_kind`` per model; layer rows carry it too."""
    return draw.stamp(figure, layers.assign(checkpoint=None, run_id=layers.attrs.get("run_id")))


def types(layers: pd.DataFrame, column: str) -> pd.DataFrame:
    if layers.empty:
        return layers
    rows = layers[(layers["level"] == "per_type") & layers[column].notna()]
    return rows.assign(series=rows["model"] + " " + rows["precision"])


def energy_by_layer_type(layers: pd.DataFrame) -> Figure:
    """Energy per sample apportioned to each layer type by its time share; estimated meters hatched."""
    figure, ax, rows = layer_type_bars(
        layers,
        "energy_j_per_sample",
        "layer-energy",
        "Energy by layer type (apportioned by time share)",
        "energy per sample (J)",
    )
    if not rows.empty:
        ax.text(
            0.01,
            0.99,
            "basis: "
            + ", ".join(sorted(rows["energy_basis"].dropna().unique()))
            + ("  (hatched = from an estimated meter)" if rows["energy_basis"].map(draw.is_estimated).any() else ""),
            transform=ax.transAxes,
            va="top",
            fontsize=7,
        )
    return figure


def impact_by_layer_type(layers: pd.DataFrame) -> Figure:
    """Prediction impact of ablating each layer type (impact score; KL and quality delta in the table)."""
    figure, _, _ = layer_type_bars(
        layers, "impact_score", "impact", "Prediction impact by layer type (ablation)", "impact score"
    )
    return figure


def layer_type_bars(layers: pd.DataFrame, column: str, metric: str, title: str, ylabel: str) -> tuple:
    """Grouped bars of one per-type column, model x precision as hue; a "not measured" panel when empty."""
    rows = types(layers, column)
    figure = draw.new_figure(10, 4.5)
    figure.suptitle(title)
    ax = figure.add_subplot()
    if rows.empty:
        draw.not_measured(ax, layer_reason(layers, column, metric))
    else:
        grouped(
            ax,
            rows.rename(columns={"series": "model x precision"}),
            column,
            group="layer_type",
            hue="model x precision",
        )
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelrotation=20)
    return stamped_layers(figure, layers), ax, rows


def energy_vs_impact(layers: pd.DataFrame) -> Figure:
    """Per-layer energy against impact score, with the recorded Pearson r and Spearman rho."""
    rows = layers[(layers["level"] == "per_layer")] if not layers.empty else layers
    rows = rows.dropna(subset=["energy_j_per_sample", "impact_score"]) if not rows.empty else rows
    figure = draw.new_figure(8, 5)
    figure.suptitle("Energy vs impact per layer")
    ax = figure.add_subplot()
    if rows.empty:
        draw.not_measured(ax, layer_reason(layers, "impact_score", "impact"))
        return stamped_layers(figure, layers)
    colors = draw.model_colors(list((rows["model"] + " " + rows["precision"]).unique()))
    for (model, precision), part in rows.groupby(["model", "precision"], sort=True):
        label = f"{model} {precision}: " + correlation_text(part.iloc[0])
        ax.scatter(
            part["energy_j_per_sample"], part["impact_score"], color=colors[f"{model} {precision}"], label=label, s=30
        )
    ax.set_xlabel("energy per sample (J, apportioned)")
    ax.set_ylabel("impact score")
    ax.legend(fontsize=7)
    return stamped_layers(figure, layers)


def correlation_text(row: pd.Series) -> str:
    if pd.isna(row.get("spearman_rho")) and pd.isna(row.get("pearson_r")):
        return "correlation not recorded"
    n = "" if pd.isna(row.get("n")) else f", n={int(row['n'])}"
    return f"Spearman rho={row['spearman_rho']:.2f}, Pearson r={row['pearson_r']:.2f}{n}"


def correlation_heatmap(layers: pd.DataFrame) -> Figure:
    """Spearman correlations between the per-layer energy, time and impact measures, per model x precision."""
    series = layer_series(layers)
    figure = draw.new_figure(max(7.0, 6.5 * len(series)), 5.5)
    figure.suptitle("Energy / impact correlations across layers (Spearman)")
    if not series:
        draw.not_measured(figure.add_subplot(), layer_reason(layers, "impact_score", "impact"))
        return stamped_layers(figure, layers)
    for ax, (model, precision) in zip(figure.subplots(1, len(series), squeeze=False).ravel(), series):
        ax.set_title(f"{model} {precision}", fontsize=10)
        matrix = layer_correlations(layers, model, precision)
        if matrix.empty:
            draw.not_measured(ax, "fewer than two per-layer measures with three or more layers")
            continue
        heatmap(figure, ax, matrix)
    return stamped_layers(figure, layers)


def heatmap(figure: Figure, ax, matrix: pd.DataFrame) -> None:
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(np.arange(len(matrix)), matrix.columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(matrix)), matrix.index, fontsize=8)
    for (i, j), value in np.ndenumerate(values):
        ax.text(
            j,
            i,
            "-" if np.isnan(value) else f"{value:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if abs(value) > 0.6 else "black",
        )
    figure.colorbar(image, ax=ax, label="Spearman rho", shrink=0.8)


def layer_reason(layers: pd.DataFrame, column: str, metric: str) -> str:
    reasons = layers.attrs.get("reasons", {}).get(metric) if hasattr(layers, "attrs") else None
    if reasons:
        return "; ".join(reasons)
    if layers.empty or column not in layers or layers[column].isna().all():
        return NO_LAYERS.format(what=metric, metric=metric)
    return f"{column} not recorded"
