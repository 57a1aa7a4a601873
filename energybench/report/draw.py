"""Drawing helpers every figure shares: a new figure, the "not measured" panel, the provenance
stamp, colours per precision and model, and bars that show IQR and the energy basis."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from energybench.report.tidy import PRECISION_ORDER, source_labels

NOT_MEASURED_GID = "not-measured"
STAMP_GID = "source-stamp"
ESTIMATED_HATCH = "///"
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD")


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot (no global state to leak), laid out with room for the stamp."""
    figure = Figure(figsize=(width, height), layout="constrained")
    figure.get_layout_engine().set(rect=(0, 0.035, 1, 0.965))
    return figure


def not_measured(ax: Axes, reason: str) -> None:
    """Replace an axis by a visible statement of why it has no data."""
    ax.set_axis_off()
    ax.text(
        0.5,
        0.5,
        textwrap.fill(f"not measured: {reason}", 44),
        ha="center",
        va="center",
        fontsize=9,
        color="#8a1c1c",
        transform=ax.transAxes,
        gid=NOT_MEASURED_GID,
        in_layout=False,
        bbox={"boxstyle": "round", "facecolor": "#fdf0f0", "edgecolor": "#d9a0a0"},
    )


def gap_note(ax: Axes, text: str) -> None:
    """Name the bars that are absent from a panel that has some data, and why."""
    ax.text(
        0.01,
        0.99,
        textwrap.fill(f"not measured: {text}", 60),
        ha="left",
        va="top",
        fontsize=6,
        color="#8a1c1c",
        transform=ax.transAxes,
        gid=NOT_MEASURED_GID,
        in_layout=False,
    )


def not_measured_figure(title: str, reason: str, frame: pd.DataFrame, width: float = 7, height: float = 3) -> Figure:
    figure = new_figure(width, height)
    figure.suptitle(title)
    not_measured(figure.add_subplot(), reason)
    return stamp(figure, frame)


def stamp(figure: Figure, frame: pd.DataFrame) -> Figure:
    """Write the model sources and run ids at the foot of the figure: every figure carries them."""
    labels = source_labels(frame) or ["model source not recorded"]
    runs = sorted(frame["run_id"].dropna().unique()) if "run_id" in frame else []
    run_text = f" | run {runs[0]}" if len(runs) == 1 else (f" | {len(runs)} runs" if runs else "")
    figure.text(
        0.005,
        0.005,
        "source: " + "; ".join(labels) + run_text,
        fontsize=7,
        color="#444444",
        ha="left",
        va="bottom",
        gid=STAMP_GID,
    )
    return figure


def precision_colors(precisions: Sequence[str]) -> dict[str, str]:
    known = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(PRECISION_ORDER)}
    extra = [p for p in precisions if p not in known]
    known.update({p: PALETTE[(len(PRECISION_ORDER) + i) % len(PALETTE)] for i, p in enumerate(extra)})
    return known


def model_colors(models: Sequence[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(models))}


def is_estimated(basis: object) -> bool:
    return isinstance(basis, str) and "estimated" in basis


def bars(
    ax: Axes,
    rows: pd.DataFrame,
    label: str = "precision",
    value: str = "display_value",
    lo: str | None = "display_value_lo",
    hi: str | None = "display_value_hi",
    colors: dict[str, str] | None = None,
    fmt: str = "{:.3g}",
) -> None:
    """One bar per row, IQR whiskers where present, estimated numbers hatched, values written on top."""
    x = np.arange(len(rows))
    heights = rows[value].astype(float).to_numpy()
    colors = colors or precision_colors(list(rows[label]))
    drawn = ax.bar(
        x, heights, color=[colors.get(k, PALETTE[-1]) for k in rows[label]], edgecolor="#333333", linewidth=0.6
    )
    for patch, basis in zip(drawn, rows.get("energy_basis", pd.Series([None] * len(rows)))):
        if is_estimated(basis):
            patch.set_hatch(ESTIMATED_HATCH)
    whiskers(ax, x, rows, value, lo, hi)
    tops = heights if not hi or hi not in rows else np.fmax(heights, rows[hi].astype(float).to_numpy())
    for position, top, height in zip(x, tops, heights):  # above the whisker, where there is one
        ax.annotate(
            fmt.format(height),
            (position, top),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(x, [str(k) for k in rows[label]], fontsize=8)
    ax.margins(y=0.15)


def whiskers(
    ax: Axes, x: np.ndarray, rows: pd.DataFrame, value: str, lo: str | None, hi: str | None, horizontal: bool = False
) -> None:
    if not lo or not hi or lo not in rows or rows[lo].isna().all():
        return
    centre = rows[value].astype(float).to_numpy()
    low = centre - rows[lo].astype(float).fillna(rows[value]).to_numpy()
    high = rows[hi].astype(float).fillna(rows[value]).to_numpy() - centre
    errors = np.vstack([np.clip(low, 0, None), np.clip(high, 0, None)])
    if horizontal:
        ax.errorbar(centre, x, xerr=errors, fmt="none", ecolor="#222222", capsize=3, linewidth=1, label="_iqr")
    else:
        ax.errorbar(x, centre, yerr=errors, fmt="none", ecolor="#222222", capsize=3, linewidth=1, label="_iqr")


def basis_legend(ax: Axes, bases: Sequence[object]) -> None:
    """Legend of how the energy numbers were obtained: estimated ones are hatched."""
    kinds = sorted({str(b) for b in bases if isinstance(b, str)})
    if not kinds:
        return
    handles = [
        Patch(
            facecolor="white",
            edgecolor="#333333",
            hatch=ESTIMATED_HATCH if is_estimated(k) else "",
            label=k + (" (hatched)" if is_estimated(k) else ""),
        )
        for k in kinds
    ]
    ax.legend(handles=handles, title="energy basis", fontsize=7, title_fontsize=7, loc="best")
