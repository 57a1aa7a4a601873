"""The figures that answer "which precision should I ship?", each drawn from the run's records
(``energybench.results.answer`` picks the shape and computes the per-item numbers):

- ``pareto``: quality loss vs fp32 against energy and latency per item, every precision x backend
  (and the mixed plan) as a point, the non-dominated ones joined and labelled;
- ``batch_scaling``: latency and energy per item against batch size, one line per precision,
  with the batch sizes where two lines cross named;
- ``precision_backend``: speed-up over eager fp32, quality loss and energy per item, one group of
  bars per precision, one bar per backend;
- ``generation``: tokens/s and J/token per precision, and prefill vs decode time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from energybench.catalog import BACKENDS
from energybench.report import draw
from energybench.results.answer import Config, batch_size, configs, per_item, pick, quality_loss, speedup
from energybench.results.schema import Record, Run

GENERATION_METRICS = ("ttft", "decode-latency", "decode-throughput", "generation-energy")


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    loss: float
    estimated: bool = False


def points(records: list[Record], model: str, metric: str) -> list[Point]:
    """One point per configuration with both a quality loss and this metric per item."""
    found = []
    for config in configs(records, model):
        loss, record = quality_loss(records, config), pick(records, config, metric)
        value = per_item(record) if record is not None else None
        if loss is not None and value is not None:
            found.append(Point(config.variant, value, loss.value, draw.is_estimated(record.basis)))  # type: ignore[union-attr]
    return found


def front(found: list[Point]) -> list[Point]:
    """The non-dominated points (no other point is at most as costly and at most as lossy, one strictly)."""

    def dominated(p: Point) -> bool:
        return any(q.x <= p.x and q.loss <= p.loss and (q.x < p.x or q.loss < p.loss) for q in found)

    return sorted((p for p in found if not dominated(p)), key=lambda p: p.x)


def pareto_panel(ax: Axes, records: list[Record], model: str, metric: str, xlabel: str, unit: str) -> None:
    found = points(records, model, metric)
    ax.set_title(f"quality loss vs {metric} per item", fontsize=10)
    if not found:
        draw.not_measured(ax, f"no configuration of {model} has both a quality loss and {metric} in this run")
        return
    best = front(found)
    for p in found:
        on_front = p in best
        ax.scatter(
            p.x,
            p.loss,
            s=40 if on_front else 22,
            facecolor="#4C72B0" if on_front and not p.estimated else "white",
            edgecolor="#4C72B0" if on_front else "#8C8C8C",
            zorder=3,
        )
        ax.annotate(
            p.label,
            (p.x, p.loss),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7,
            color="#1d1d1d" if on_front else "#8C8C8C",
            fontweight="bold" if on_front else "normal",
        )
    ax.plot([p.x for p in best], [p.loss for p in best], color="#4C72B0", linewidth=1.2, zorder=2, label="Pareto front")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(f"quality loss vs fp32 ({unit}), lower is better", fontsize=8)
    ax.axhline(0, color="#bbbbbb", linewidth=0.8)
    ax.legend(fontsize=7, loc="best")


def pareto(run: Run, frame: pd.DataFrame, model: str) -> Figure:
    records = run.records
    loss = next((quality_loss(records, c) for c in configs(records, model) if quality_loss(records, c)), None)
    unit = loss.unit if loss else "pp or %"
    figure = draw.new_figure(11, 4.2)
    figure.suptitle(f"{model}: quality loss against cost per item (hollow = estimated energy or off the front)")
    energy_ax, latency_ax = figure.subplots(1, 2)
    pareto_panel(energy_ax, records, model, "energy", "energy per item (J)", unit)
    pareto_panel(latency_ax, records, model, "latency", "latency per item (s)", unit)
    return draw.stamp(figure, frame)


# -- batch size -----------------------------------------------------------------------------
def series(records: list[Record], model: str, metric: str) -> dict[str, dict[int, float]]:
    """Variant -> batch size -> value per item."""
    out: dict[str, dict[int, float]] = {}
    for r in records:
        if r.model == model and r.metric == metric and r.value is not None:
            out.setdefault(r.variant, {})[batch_size(r)] = per_item(r)  # type: ignore[assignment]
    return out


def crossovers(lines: dict[str, dict[int, float]]) -> list[str]:
    """``int8 below fp32 from batch 8``: where the order of two lines flips between measured batches."""
    found = []
    names = list(lines)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(set(lines[a]) & set(lines[b]))
            for lo, hi in zip(shared, shared[1:]):
                before, after = lines[a][lo] - lines[b][lo], lines[a][hi] - lines[b][hi]
                if before * after < 0:
                    lower = a if after < 0 else b
                    other = b if lower == a else a
                    found.append(f"{lower} below {other} from batch {hi}")
    return found


def scaling_panel(ax: Axes, records: list[Record], model: str, metric: str, ylabel: str) -> None:
    lines = series(records, model, metric)
    ax.set_title(f"{metric} per item vs batch size", fontsize=10)
    if not lines or all(len(v) < 2 for v in lines.values()):
        draw.not_measured(ax, f"{metric} of {model} at two or more batch sizes is not in this run (a shape sweep)")
        return
    for i, (name, values) in enumerate(lines.items()):
        sizes = sorted(values)
        ax.plot(sizes, [values[s] for s in sizes], marker="o", color=draw.PALETTE[i % len(draw.PALETTE)], label=name)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("batch size", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7)
    named = crossovers(lines)
    if named:
        ax.text(0.01, 0.01, "crossovers: " + "; ".join(named), transform=ax.transAxes, fontsize=7, va="bottom")


def batch_scaling(run: Run, frame: pd.DataFrame, model: str) -> Figure:
    figure = draw.new_figure(11, 4.2)
    figure.suptitle(f"{model}: cost per item against batch size")
    latency_ax, energy_ax = figure.subplots(1, 2)
    scaling_panel(latency_ax, run.records, model, "latency", "latency per item (s) = call latency / batch")
    scaling_panel(energy_ax, run.records, model, "energy", "energy per item (J)")
    return draw.stamp(figure, frame)


# -- precision x backend --------------------------------------------------------------------
def grouped(
    ax: Axes,
    table: dict[Config, float],
    title: str,
    ylabel: str,
    reason: str,
    estimated: frozenset[Config] = frozenset(),
) -> None:
    ax.set_title(title, fontsize=10)
    if not table:
        draw.not_measured(ax, reason)
        return
    model = next(iter(table)).model
    precisions = list(dict.fromkeys(c.precision for c in table))
    backends = [b for b in BACKENDS if any(c.backend == b for c in table)]
    width = 0.8 / len(backends)
    colors = draw.model_colors(backends)
    for j, backend in enumerate(backends):
        x = np.arange(len(precisions)) + (j - (len(backends) - 1) / 2) * width
        heights = [table.get(Config(model, p, backend), np.nan) for p in precisions]
        drawn = ax.bar(x, heights, width, color=colors[backend], edgecolor="#333333", linewidth=0.6, label=backend)
        for patch, precision in zip(drawn, precisions):
            if Config(model, precision, backend) in estimated:
                patch.set_hatch(draw.ESTIMATED_HATCH)
    ax.set_xticks(np.arange(len(precisions)), precisions, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7, title="backend", title_fontsize=7)


def precision_backend(run: Run, frame: pd.DataFrame, model: str) -> Figure:
    records = run.records
    every = configs(records, model)
    speed = {c: s for c in every if (s := speedup(records, c)) is not None}
    loss = {c: q.value for c in every if (q := quality_loss(records, c)) is not None}
    energy_records = {c: r for c in every if (r := pick(records, c, "energy")) is not None}
    energy = {c: per_item(r) for c, r in energy_records.items()}
    estimated = frozenset(c for c, r in energy_records.items() if draw.is_estimated(r.basis))
    figure = draw.new_figure(12, 4)
    figure.suptitle(f"{model}: precision x backend, against eager fp32")
    axes = figure.subplots(1, 3)
    grouped(axes[0], speed, "speed-up over eager fp32", "x (higher is better)", "no latency or throughput")
    grouped(axes[1], loss, "quality loss vs fp32", "pp or % (lower is better)", "no quality record")
    grouped(axes[2], energy, "energy per item", "J, hatched = estimated", "no energy record", estimated)  # type: ignore[arg-type]
    return draw.stamp(figure, frame)


# -- generation -----------------------------------------------------------------------------
def generation_values(records: list[Record], model: str, metric: str) -> dict[str, Record]:
    """Variant -> the record at the largest batch."""
    out: dict[str, Record] = {}
    for r in records:
        if r.model == model and r.metric == metric and r.value is not None:
            if r.variant not in out or batch_size(r) > batch_size(out[r.variant]):
                out[r.variant] = r
    return out


def generation_bars(ax: Axes, found: dict[str, Record], title: str, ylabel: str, metric: str) -> None:
    ax.set_title(title, fontsize=10)
    if not found:
        draw.not_measured(ax, f"{metric}: not in this run")
        return
    rows = pd.DataFrame(
        {
            "precision": list(found),
            "display_value": [r.value for r in found.values()],
            "energy_basis": [r.basis for r in found.values()],
        }
    )
    draw.bars(ax, rows, lo=None, hi=None)
    ax.set_ylabel(ylabel, fontsize=8)


def prefill_decode(ax: Axes, records: list[Record], model: str) -> None:
    """Time to first token against the time per generated token, per precision."""
    ttft, decode = generation_values(records, model, "ttft"), generation_values(records, model, "decode-latency")
    ax.set_title("prefill (time to first token) vs decode (per token)", fontsize=10)
    shared = [v for v in ttft if v in decode]
    if not shared:
        draw.not_measured(ax, "ttft and decode-latency: not in this run")
        return
    x = np.arange(len(shared))
    ax.bar(x - 0.2, [ttft[v].value for v in shared], 0.4, color="#4C72B0", label="prefill: ttft (s)")
    ax.bar(x + 0.2, [decode[v].value for v in shared], 0.4, color="#DD8452", label="decode: s per token")
    for i, v in enumerate(shared):
        ax.annotate(
            prefill_share(ttft[v], decode[v]),
            (i, 0),
            xytext=(0, -20),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=6,
        )
    ax.set_xticks(x, shared, fontsize=8)
    ax.set_ylabel("s", fontsize=8)
    ax.legend(fontsize=7)


def prefill_share(ttft: Record, decode: Record) -> str:
    """Prefill's share of one generation of N tokens (the prefill gives the first, N - 1 decode steps
    the rest) where N is in the shape, else ttft in decode steps."""
    tokens = ttft.shape.get("gen_tokens") or decode.shape.get("gen_tokens")
    if tokens:
        share = ttft.value / (ttft.value + decode.value * (int(tokens) - 1))  # type: ignore[operator]
        return f"prefill {share:.0%} of {int(tokens)} tokens"
    return f"ttft = {ttft.value / decode.value:.1f} decode steps"  # type: ignore[operator]


def energy_scope(records: list[Record]) -> str:
    """What the J/token covers, as the records say: "decode only" or "whole generation"."""
    said = {
        scope
        for r in records
        for value in r.details.values()
        if isinstance(value, str)
        for scope in ("decode only", "whole generation")
        if scope in value
    }
    return " / ".join(sorted(said)) or "scope not recorded"


def generation(run: Run, frame: pd.DataFrame, model: str) -> Figure:
    records = run.records
    energy = generation_values(records, model, "generation-energy")
    scope = energy_scope(list(energy.values())) if energy else ""
    figure = draw.new_figure(12, 4)
    figure.suptitle(f"{model}: generation" + (f" (energy: {scope})" if scope else ""))
    axes = figure.subplots(1, 3)
    generation_bars(
        axes[0],
        generation_values(records, model, "decode-throughput"),
        "decode throughput",
        "tokens/s (higher is better)",
        "decode-throughput",
    )
    generation_bars(axes[1], energy, "energy per generated token", "J/token (hatched = estimated)", "generation-energy")
    prefill_decode(axes[2], records, model)
    return draw.stamp(figure, frame)


def has_generation(run: Run, model: str) -> bool:
    return any(r.model == model and r.metric in GENERATION_METRICS for r in run.records)


def perplexity_by_position(positions: pd.DataFrame, frame: pd.DataFrame, model: str) -> Figure:
    """Perplexity per bucket of token position inside the window, one bar per precision x backend:
    long-context damage shows in the last buckets even when the total barely moves."""
    rows = positions[positions["model"] == model].sort_values("first")
    figure = draw.new_figure(8, 4)
    figure.suptitle(f"{model}: perplexity by token position in the window (lower is better)")
    ax = figure.add_subplot()
    buckets = list(dict.fromkeys(rows["bucket"]))
    variants = list(dict.fromkeys(zip(rows["precision"], rows["backend"], strict=True)))
    width = 0.8 / max(len(variants), 1)
    for i, (precision, backend) in enumerate(variants):
        own = rows[(rows["precision"] == precision) & (rows["backend"] == backend)].set_index("bucket")
        heights = [own["perplexity"].get(b, np.nan) for b in buckets]
        label = precision if backend == BACKENDS[0] else f"{precision} ({backend})"
        ax.bar(np.arange(len(buckets)) + i * width, heights, width, label=label)
    tokens = rows.drop_duplicates("bucket").set_index("bucket")["tokens"]
    ax.set_xticks(np.arange(len(buckets)) + width * (len(variants) - 1) / 2)
    ax.set_xticklabels([f"positions {b}\n({tokens[b]:,} tokens)" for b in buckets])
    ax.set_ylabel("perplexity")
    ax.legend(fontsize="small")
    return draw.stamp(figure, frame)
