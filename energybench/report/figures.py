"""The run figures, each a pure function of a tidy frame (energybench.report.tidy) returning a
matplotlib Figure. They draw only what the frame holds; a missing metric is drawn as a visible
"not measured: <reason>" panel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from energybench.catalog import BASELINE_PRECISION, METRICS
from energybench.report import draw
from energybench.report.tidy import (
    measured,
    missing_reason,
    ordered_precisions,
    plan_frame,
    quality_delta_frame,
    quality_metric,
    relative_frame,
)

QUALITY_LABELS = {"accuracy": "accuracy (%)", "perplexity": "perplexity (lower is better)"}
RADAR_METRICS = ("latency", "throughput", "energy", "memory", "size")


def by_precision(rows: pd.DataFrame) -> pd.DataFrame:
    order = {p: i for i, p in enumerate(ordered_precisions(rows["precision"]))} if not rows.empty else {}
    return rows.sort_values("precision", key=lambda s: s.map(order), kind="stable")


def unit_label(rows: pd.DataFrame, column: str = "display_unit") -> str:
    return " / ".join(dict.fromkeys(str(u) for u in rows[column].dropna())) if not rows.empty else ""


def panel(ax, rows: pd.DataFrame, title: str, ylabel: str, reason: str, gaps: str = "", **bar_args) -> None:
    ax.set_title(title, fontsize=10)
    if rows.empty:
        draw.not_measured(ax, reason)
        return
    draw.bars(ax, by_precision(rows), **bar_args)
    ax.set_ylabel(ylabel, fontsize=8)
    if gaps:
        draw.gap_note(ax, gaps)


def gaps(frame: pd.DataFrame, metric: str, model: str) -> str:
    """The precisions of one model whose ``metric`` has no value, with why."""
    rows = frame[(frame["model"] == model) & (frame["metric"] == metric) & frame["value"].isna()]
    return "; ".join(f"{r.precision}: {r.reason}" for r in rows.itertuples())


# -- one model, every metric ----------------------------------------------------------------
def metric_panel(ax: Axes, frame: pd.DataFrame, model: str, metric: str, title: str, ylabel: str) -> pd.DataFrame:
    """One panel of a measured metric of the model, or why it has no data; returns what it drew."""
    rows = measured(frame, metric, model)
    label = ylabel.format(unit=unit_label(rows))
    panel(ax, rows, title, label, missing_reason(frame, metric, model), gaps(frame, metric, model))
    return rows


def overview(frame: pd.DataFrame, model: str) -> Figure:
    """Six panels for one model: latency, speedup vs fp32, energy, throughput, quality, size."""
    figure = draw.new_figure(12, 7)
    figure.suptitle(f"{model}: benchmark overview by precision")
    axes = figure.subplots(2, 3).ravel()
    latency = metric_panel(
        axes[0], frame, model, "latency", "Latency (batch 1)", "latency ({unit}), median, IQR whiskers"
    )
    speedup = relative_frame(frame, "latency")
    speedup = speedup[speedup["model"] == model]
    panel(
        axes[1],
        speedup,
        "Speedup vs fp32",
        "x fp32 (higher is faster)",
        missing_reason(frame, "latency", model) if latency.empty else "no fp32 latency to compare with",
        value="gain",
        lo="gain_lo",
        hi="gain_hi",
        fmt="{:.2f}x",
    )
    if not speedup.empty:
        axes[1].axhline(1.0, color="#888888", linewidth=0.8, linestyle="--")
    energy = metric_panel(axes[2], frame, model, "energy", "Energy per item", "energy ({unit})")
    if not energy.empty:
        draw.basis_legend(axes[2], energy["energy_basis"])
    metric_panel(axes[3], frame, model, "throughput", "Throughput", "throughput ({unit}), IQR whiskers")
    metric = quality_metric(frame, model)
    metric_panel(axes[4], frame, model, metric, metric.capitalize(), QUALITY_LABELS[metric])
    metric_panel(axes[5], frame, model, "size", "Model size", "size ({unit})")
    return draw.stamp(figure, frame[frame["model"] == model])


# -- trade-offs -----------------------------------------------------------------------------
def speed_quality_tradeoff(frame: pd.DataFrame) -> Figure:
    """Speedup vs fp32 against quality loss vs fp32, one panel per model."""
    speed = relative_frame(frame, "latency")
    loss = quality_delta_frame(frame)
    models = sorted(frame["model"].unique()) if not frame.empty else []
    figure = draw.new_figure(max(5.0, 4.5 * len(models)), 4.2)
    figure.suptitle("Speed vs quality trade-off (each model against its own fp32)")
    for ax, model in zip(np.atleast_1d(figure.subplots(1, max(1, len(models)), squeeze=False).ravel()), models):
        ax.set_title(model, fontsize=10)
        points = speed[speed["model"] == model].merge(
            loss[loss["model"] == model][["precision", "quality_loss", "quality_unit"]], on="precision"
        )
        if points.empty:
            draw.not_measured(
                ax,
                "needs latency and accuracy/perplexity at fp32 and another precision; "
                + missing_reason(frame, "latency", model),
            )
            continue
        scatter_precisions(ax, points, "gain", "quality_loss", "gain_lo", "gain_hi")
        ax.axvline(1.0, color="#888888", linewidth=0.8, linestyle="--")
        ax.axhline(0.0, color="#888888", linewidth=0.8, linestyle="--")
        ax.set_xlabel("speedup vs fp32 (x, IQR whiskers)", fontsize=8)
        ax.set_ylabel(f"quality loss vs fp32 ({points['quality_unit'].iloc[0]}, worse is up)", fontsize=8)
    if not models:
        draw.not_measured(figure.add_subplot(), "no records in this run")
    return draw.stamp(figure, frame)


def scatter_precisions(
    ax, points: pd.DataFrame, x: str, y: str, lo: str | None = None, hi: str | None = None, color_by: str = "precision"
) -> None:
    colors = (
        draw.precision_colors(list(points["precision"]))
        if color_by == "precision"
        else draw.model_colors(list(points["model"]))
    )
    for row in points.itertuples():
        key = getattr(row, color_by)
        xerr = None
        if lo and hi and pd.notna(getattr(row, lo)):
            xerr = [[max(getattr(row, x) - getattr(row, lo), 0)], [max(getattr(row, hi) - getattr(row, x), 0)]]
        ax.errorbar(getattr(row, x), getattr(row, y), xerr=xerr, fmt="o", color=colors[key], capsize=3, markersize=7)
        ax.annotate(
            f"{row.model} {row.precision}" if color_by == "model" else row.precision,
            (getattr(row, x), getattr(row, y)),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=7,
        )
    ax.margins(0.2)


def accuracy_vs_latency(frame: pd.DataFrame) -> Figure:
    """Accuracy against median latency for every model x precision measured for both."""
    latency = measured(frame, "latency")[
        ["model", "precision", "display_value", "display_value_lo", "display_value_hi"]
    ]
    accuracy = measured(frame, "accuracy")[["model", "precision", "display_value"]]
    points = latency.merge(accuracy, on=["model", "precision"], suffixes=("", "_acc"))
    figure = draw.new_figure(7, 4.5)
    figure.suptitle("Accuracy vs latency")
    ax = figure.add_subplot()
    if points.empty:
        draw.not_measured(
            ax, "needs accuracy and latency for the same model and precision; " + missing_reason(frame, "accuracy")
        )
        return draw.stamp(figure, frame)
    scatter_precisions(
        ax, points, "display_value", "display_value_acc", "display_value_lo", "display_value_hi", color_by="model"
    )
    ax.set_xlabel("latency, batch 1 (ms, median, IQR whiskers)")
    ax.set_ylabel("accuracy (%)")
    return draw.stamp(figure, frame)


# -- models side by side --------------------------------------------------------------------
def grouped(
    ax,
    rows: pd.DataFrame,
    value: str,
    group: str = "model",
    hue: str = "precision",
    lo: str | None = None,
    hi: str | None = None,
    fmt: str = "{:.3g}",
    hues: list[str] | None = None,
) -> None:
    """Bars grouped by ``group`` and coloured by ``hue``; estimated energy hatched."""
    groups = sorted(rows[group].unique())
    hues = hues or (ordered_precisions(rows[hue]) if hue == "precision" else sorted(rows[hue].unique()))
    colors = draw.precision_colors(hues) if hue == "precision" else draw.model_colors(hues)
    width = 0.8 / len(hues)
    for i, key in enumerate(hues):
        part = rows[rows[hue] == key].set_index(group).reindex(groups)
        x = np.arange(len(groups)) + (i - (len(hues) - 1) / 2) * width
        heights = part[value].astype(float).to_numpy()
        drawn = ax.bar(
            x, np.nan_to_num(heights), width, color=colors[key], edgecolor="#333333", linewidth=0.6, label=key
        )
        for patch, basis in zip(drawn, part.get("energy_basis", pd.Series([None] * len(part)))):
            if draw.is_estimated(basis):
                patch.set_hatch(draw.ESTIMATED_HATCH)
        ok = ~np.isnan(heights)
        draw.whiskers(ax, x[ok], part.reset_index()[ok], value, lo, hi)
        ax.bar_label(drawn, labels=["" if np.isnan(h) else fmt.format(h) for h in heights], fontsize=6, padding=1)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.legend(fontsize=7, title=hue, title_fontsize=7)
    ax.margins(y=0.15)


def model_comparison(frame: pd.DataFrame) -> Figure:
    """Every model's gain vs its own fp32, metric by metric: comparable across models and units."""
    models = sorted(frame["model"].unique()) if not frame.empty else []
    metrics = [*RADAR_METRICS, "accuracy", "perplexity"]
    figure = draw.new_figure(13, 6.5)
    figure.suptitle("Model vs model: each precision's gain over the model's own fp32 (higher is better)")
    if len(models) < 2:
        draw.not_measured(figure.add_subplot(), f"needs two or more models; this run has {', '.join(models) or 'none'}")
        return draw.stamp(figure, frame)
    axes = figure.subplots(2, 4).ravel()
    for ax, metric in zip(axes, metrics):
        ax.set_title(metric, fontsize=10)
        rows = relative_frame(frame, metric)
        rows = rows[rows["precision"] != BASELINE_PRECISION]
        if rows.empty:
            draw.not_measured(ax, missing_reason(frame, metric) + " (or no fp32 baseline)")
            continue
        grouped(ax, rows, "gain", group="precision", hue="model", lo="gain_lo", hi="gain_hi", fmt="{:.2f}x")
        ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle="--")
        ax.set_ylabel(
            "x fp32" + (" (value / fp32)" if METRICS[metric].higher_is_better else " (fp32 / value)"), fontsize=7
        )
    axes[-1].set_axis_off()
    return draw.stamp(figure, frame)


def metric_bars(frame: pd.DataFrame) -> Figure:
    """Accuracy, latency, peak memory, model size and emissions, model by precision."""
    figure = draw.new_figure(14, 4.2)
    figure.suptitle("Accuracy, latency, memory, size and emissions by model and precision")
    titles = {
        "accuracy": "Accuracy",
        "latency": "Latency (batch 1)",
        "memory": "Peak memory",
        "size": "Model size",
        "co2": "Emissions per item",
    }
    for ax, (metric, title) in zip(figure.subplots(1, 5).ravel(), titles.items()):
        ax.set_title(title, fontsize=10)
        rows = measured(frame, metric)
        if rows.empty:
            draw.not_measured(ax, missing_reason(frame, metric))
            continue
        grouped(ax, rows, "display_value", lo="display_value_lo", hi="display_value_hi")
        ax.set_ylabel(unit_label(rows), fontsize=8)
    return draw.stamp(figure, frame)


def custom_metric_bars(frame: pd.DataFrame, metrics: list[str]) -> Figure:
    """The run's own metrics (declared by users' benchmarks), model by precision, one panel each."""
    figure = draw.new_figure(max(5.0, 4.2 * max(len(metrics), 1)), 4.2)
    figure.suptitle("Your own metrics by model and precision")
    axes = figure.subplots(1, max(len(metrics), 1), squeeze=False).ravel()
    for ax, metric in zip(axes, metrics or [""]):
        rows = measured(frame, metric)
        higher = bool(rows["higher_is_better"].any()) if "higher_is_better" in rows else False  # the run's table
        ax.set_title(f"{metric} ({'higher' if higher else 'lower'} is better)" if metric else "", fontsize=10)
        if rows.empty:
            draw.not_measured(ax, missing_reason(frame, metric) if metric else "no custom metric in this run")
            continue
        grouped(ax, rows, "display_value", lo="display_value_lo", hi="display_value_hi")
        ax.set_ylabel(unit_label(rows), fontsize=8)
    return draw.stamp(figure, frame)


def radar(frame: pd.DataFrame) -> Figure:
    """One radar per model: each precision's gain over fp32 on every measured axis (fp32 = 1)."""
    models = sorted(frame["model"].unique()) if not frame.empty else []
    figure = draw.new_figure(max(5.0, 4.6 * len(models)), 4.8)
    figure.suptitle("Gain over fp32 per model (outside the dashed fp32 ring is better)")
    for i, model in enumerate(models or [""]):
        ax = figure.add_subplot(1, max(1, len(models)), i + 1, projection="polar")
        ax.set_title(model, fontsize=10, pad=14)
        axes_rows = {m: relative_frame(frame, m) for m in (*RADAR_METRICS, quality_metric(frame, model))}
        axes_rows = {m: r[r["model"] == model] for m, r in axes_rows.items() if not r[r["model"] == model].empty}
        if len(axes_rows) < 3:
            draw.not_measured(ax, f"needs three metrics with an fp32 baseline; {model or 'run'} has {len(axes_rows)}")
            continue
        radar_polygons(ax, axes_rows)
    return draw.stamp(figure, frame)


def radar_polygons(ax, axes_rows: dict[str, pd.DataFrame]) -> None:
    names = list(axes_rows)
    angles = np.linspace(0, 2 * np.pi, len(names), endpoint=False)
    precisions = ordered_precisions(pd.concat(axes_rows.values())["precision"])
    colors = draw.precision_colors(precisions)
    for precision in precisions:
        gains = [axes_rows[n].set_index("precision")["gain"].get(precision, np.nan) for n in names]
        closed = np.append(gains, gains[0])
        style = {"linestyle": "--", "linewidth": 1.0} if precision == BASELINE_PRECISION else {"linewidth": 1.6}
        ax.plot(np.append(angles, angles[0]), closed, color=colors[precision], label=precision, **style)
    ax.set_xticks(angles, names, fontsize=8)
    ax.tick_params(axis="y", labelsize=6)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.25, 1.1))


# -- emissions ------------------------------------------------------------------------------
def emissions_bars(frame: pd.DataFrame) -> Figure:
    """CO2 per item, one horizontal bar per model x precision; estimated values hatched."""
    rows = measured(frame, "co2")
    figure = draw.new_figure(8, max(2.8, 0.45 * len(rows) + 1.5))
    figure.suptitle("Emissions per item (CO2eq)")
    ax = figure.add_subplot()
    if rows.empty:
        draw.not_measured(ax, missing_reason(frame, "co2"))
        return draw.stamp(figure, frame)
    rows = rows.assign(rank=rows["precision"].map(precision_rank(rows))).sort_values(["model", "rank"])
    y = np.arange(len(rows))
    colors = draw.model_colors(list(rows["model"]))
    drawn = ax.barh(y, rows["value"], color=[colors[m] for m in rows["model"]], edgecolor="#333333", linewidth=0.6)
    for patch, basis in zip(drawn, rows["energy_basis"]):
        if draw.is_estimated(basis):
            patch.set_hatch(draw.ESTIMATED_HATCH)
    ax.bar_label(drawn, labels=[f"{v:.3g}" for v in rows["value"]], fontsize=7, padding=2)
    ax.set_yticks(y, [f"{m} {p}" for m, p in zip(rows["model"], rows["precision"])], fontsize=8)
    ax.set_xlabel(unit_label(rows, "unit"))
    ax.margins(x=0.2)
    draw.basis_legend(ax, rows["energy_basis"])
    return draw.stamp(figure, frame)


def precision_rank(rows: pd.DataFrame) -> dict[str, int]:
    return {p: i for i, p in enumerate(ordered_precisions(rows["precision"]))}


def emissions_reduction(frame: pd.DataFrame) -> Figure:
    """Emission reduction vs fp32 in %, per model and precision; estimated values hatched."""
    rows = relative_frame(frame, "co2")
    rows = rows[rows["precision"] != BASELINE_PRECISION].assign(reduction_pct=lambda r: -r["change_pct"])
    figure = draw.new_figure(8, 4)
    figure.suptitle("Emissions reduction vs fp32 (%)")
    ax = figure.add_subplot()
    if rows.empty:
        draw.not_measured(ax, missing_reason(frame, "co2") + " (or no fp32 baseline)")
        return draw.stamp(figure, frame)
    grouped(ax, rows, "reduction_pct", fmt="{:.1f}%")
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    ax.set_ylabel("reduction vs fp32 (%; above 0 emits less)")
    draw.basis_legend(ax, rows["energy_basis"])
    return draw.stamp(figure, frame)


def emissions_vs_size(frame: pd.DataFrame) -> Figure:
    """CO2 per item against model size: hollow markers are estimated emissions."""
    size = measured(frame, "size")[["model", "precision", "display_value"]]
    co2 = measured(frame, "co2")[["model", "precision", "value", "unit", "energy_basis"]]
    points = size.merge(co2, on=["model", "precision"])
    figure = draw.new_figure(7, 4.5)
    figure.suptitle("Emissions vs model size")
    ax = figure.add_subplot()
    if points.empty:
        draw.not_measured(ax, "needs size and CO2 for the same model and precision; " + missing_reason(frame, "co2"))
        return draw.stamp(figure, frame)
    colors = draw.model_colors(list(points["model"]))
    for row in points.itertuples():
        hollow = draw.is_estimated(row.energy_basis)
        ax.scatter(
            row.display_value,
            row.value,
            s=50,
            edgecolors=colors[row.model],
            facecolors="none" if hollow else colors[row.model],
            linewidths=1.5,
        )
        ax.annotate(
            f"{row.model} {row.precision}",
            (row.display_value, row.value),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=7,
        )
    ax.set_xlabel("model size (MiB)")
    ax.set_ylabel(f"emissions ({unit_label(points, 'unit')})")
    ax.margins(0.2)
    ax.text(0.01, 0.99, "hollow markers: estimated emissions", transform=ax.transAxes, va="top", fontsize=7)
    return draw.stamp(figure, frame)


# -- plans, history, comparison -------------------------------------------------------------
def plan_predicted_vs_measured(frame: pd.DataFrame) -> Figure:
    """The mixed-precision plan's predicted quality loss and energy saving next to the measured ones."""
    plans = plan_frame(frame)
    figure = draw.new_figure(9, 4)
    figure.suptitle("Mixed-precision plan: predicted vs measured")
    if plans.empty:
        reason = "no mixed-precision plan in this run (precision 'mixed' records with details.plan)"
        draw.not_measured(figure.add_subplot(), reason)
        return draw.stamp(figure, frame)
    quantities = list(dict.fromkeys(plans["quantity"]))
    for ax, quantity in zip(figure.subplots(1, len(quantities), squeeze=False).ravel(), quantities):
        rows = plans[plans["quantity"] == quantity].melt(
            id_vars=["model", "reason"], value_vars=["predicted", "measured"], var_name="kind", value_name="value"
        )
        ax.set_title(quantity, fontsize=10)
        grouped(
            ax,
            rows.dropna(subset=["value"]),
            "value",
            group="model",
            hue="kind",
            fmt="{:.2f}",
            hues=[k for k in ("predicted", "measured") if k in set(rows.dropna(subset=["value"])["kind"])],
        )
        for reason in rows["reason"].dropna().unique():
            ax.text(
                0.01,
                0.01,
                f"measured: not measured: {reason}",
                transform=ax.transAxes,
                fontsize=7,
                color="#8a1c1c",
                gid=draw.NOT_MEASURED_GID,
            )
    return draw.stamp(figure, frame)


def history_trend(history: pd.DataFrame, metric: str) -> Figure:
    """One metric over the saved runs, one line per model x precision, IQR whiskers where rounds exist."""
    rows = measured(history, metric)
    figure = draw.new_figure(9, 4)
    figure.suptitle(f"History: {metric} over runs")
    ax = figure.add_subplot()
    if rows.empty or rows["run_id"].nunique() < 2:
        draw.not_measured(
            ax, f"{metric} is in {rows['run_id'].nunique() if not rows.empty else 0} saved run(s); a trend needs two"
        )
        return draw.stamp(figure, history)
    rows = rows.assign(source_kind=rows["source_kind"].fillna("?"))
    several_sources = rows.groupby("model")["source_kind"].nunique().max() > 1
    series = rows.groupby(["model", "source_kind", "precision"], sort=True)
    labels = {key: f"{key[0]} {key[2]}" + (f" ({key[1]})" if several_sources else "") for key in series.groups}
    colors = draw.model_colors(list(labels.values()))
    for key, part in series:  # a change of model source is its own line, never a step in one
        label = labels[key]
        x, y = part["started_at"], part["display_value"].astype(float)
        ax.plot(x, y, marker="o", color=colors[label], label=label)
        if part["display_value_lo"].notna().any():
            lo = (y - part["display_value_lo"].astype(float)).clip(lower=0).fillna(0)
            hi = (part["display_value_hi"].astype(float) - y).clip(lower=0).fillna(0)
            ax.errorbar(x, y, yerr=[lo, hi], fmt="none", ecolor=colors[label], capsize=3)
    ax.set_ylabel(f"{metric} ({unit_label(rows)})")
    ax.set_xlabel("run start (UTC)")
    ax.legend(fontsize=7, ncols=2)
    figure.autofmt_xdate()
    return draw.stamp(figure, history)


VERDICT_COLORS = {
    "better": "#55A868",
    "worse": "#C44E52",
    "same": "#8C8C8C",
    "inconclusive": "#DD8452",
    "not comparable": "#BBBBBB",
}


def comparison(deltas: pd.DataFrame, frame: pd.DataFrame) -> Figure:
    """Run B against run A: the change of every shared number, coloured by its verdict."""
    deltas = deltas[deltas["delta_pct"].notna()].reset_index(drop=True)  # the page lists the others with why
    figure = draw.new_figure(9, max(3.0, 0.32 * len(deltas) + 1.6))
    figure.suptitle("Comparison: change vs the baseline run (%)")
    ax = figure.add_subplot()
    if deltas.empty:
        draw.not_measured(ax, "the two runs share no measured model x precision x metric")
        return draw.stamp(figure, frame)
    y = np.arange(len(deltas))
    colors = [VERDICT_COLORS.get(v, "#8172B3") for v in deltas["verdict"]]
    drawn = ax.barh(y, deltas["delta_pct"], color=colors, edgecolor="#333333", linewidth=0.5)
    ax.bar_label(
        drawn, labels=[f"{d:+.1f}% {v}" for d, v in zip(deltas["delta_pct"], deltas["verdict"])], fontsize=6, padding=2
    )
    ax.set_yticks(y, [f"{r.model} {r.precision} {r.metric}" for r in deltas.itertuples()], fontsize=7)
    ax.axvline(0, color="#444444", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("change of the value, B vs A (%); the verdict accounts for each metric's direction")
    ax.margins(x=0.25)
    return draw.stamp(figure, frame)
