"""The report pipeline: load the run(s), tidy them, draw every figure, write PNG (300 DPI) + SVG
per figure and one index.html, atomically, into ``<run folder>/report/`` (or ``out``)."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from energybench.catalog import METRICS
from energybench.errors import UsageError
from energybench.progress import progress_bar
from energybench.report import answer_figures, draw, figures, layer_figures, tidy
from energybench.report.deltas import delta_frame
from energybench.report.html import OmittedFigure, RenderedFigure, page
from energybench.results.schema import Run, SchemaError
from energybench.results.store import RUN_FILE, RunNotFound, list_runs, load_run, resolve_ref

PNG_DPI = 300
REPORT_FOLDER = "report"
MARKER = ".energybench-report"  # marks a folder this code wrote, so replacing it never deletes anything else
TREND_METRICS = ("accuracy", "perplexity", "latency", "throughput", "memory", "size", "energy", "co2")


class ReportError(UsageError):
    """A report that cannot be built; the message is one line a user can act on."""


@dataclass(frozen=True)
class FigureJob:
    name: str
    title: str
    caption: str
    draw: Callable[[], Figure]
    answer: bool = False  # drawn at the top of the page, with the answer table


def resolve_run(spec: str | Path, reports_dir: Path) -> Path:
    """A run folder, a run.json, a run id, ``latest`` or a baseline name (store.resolve_ref) -> its path."""
    try:
        found = resolve_ref(str(spec), Path(reports_dir))
    except RunNotFound as error:
        raise ReportError(str(error)) from None
    return found.parent if found.is_file() and found.name == RUN_FILE else found


def load(folder: Path) -> Run:
    try:
        run = load_run(folder)
    except SchemaError as error:
        raise ReportError(str(error)) from None
    if not run.records:
        raise ReportError(f"{folder}: the run has no records; there is nothing to report")
    return run


def history_runs(folder: Path, run: Run) -> list[Run]:
    """The runs saved beside this one (same reports dir) up to and including it, on the same machine
    fingerprint (a trend across machines would mix hardware into it); unreadable ones skipped."""
    if folder.parent.name != "runs":
        return [run]
    runs = []
    for path in list_runs(folder.parent.parent):
        try:
            other = run if path.resolve() == folder.resolve() else load_run(path)
        except SchemaError:
            continue
        same_machine = other.machine.get("fingerprint") == run.machine.get("fingerprint")
        if other.records and same_machine and other.started_at <= run.started_at:
            runs.append(other)
    return runs or [run]


def answer_jobs(run: Run, frame: pd.DataFrame) -> list[FigureJob]:
    """Per model: the Pareto front, precision x backend, cost against batch size, perplexity by
    position and generation."""
    jobs, positions = [], tidy.position_frame(run)
    for model in sorted(frame["model"].unique()):
        jobs += [
            FigureJob(
                f"pareto-{model}",
                f"{model}: Pareto front",
                "Quality loss vs fp32 against energy and latency per item (the answer table's shapes); every "
                "precision x backend and the mixed plan as a point; the non-dominated ones joined and labelled.",
                lambda m=model: answer_figures.pareto(run, frame, m),
                answer=True,
            ),
            FigureJob(
                f"precision-backend-{model}",
                f"{model}: precision x backend",
                "Speed-up over eager fp32, quality loss and energy per item; one bar per backend.",
                lambda m=model: answer_figures.precision_backend(run, frame, m),
                answer=True,
            ),
            FigureJob(
                f"batch-scaling-{model}",
                f"{model}: cost per item against batch size",
                "Latency per item (call latency / batch) and energy per item, one line per precision; "
                "where two lines cross is named.",
                lambda m=model: answer_figures.batch_scaling(run, frame, m),
                answer=True,
            ),
        ]
        if model in set(positions["model"]):
            jobs.append(
                FigureJob(
                    f"perplexity-by-position-{model}",
                    f"{model}: perplexity by token position",
                    "WikiText-2 perplexity of the tokens at positions 0-127, 128-511 and 512+ inside their window, "
                    "per precision, from the same perplexity pass (token-weighted).",
                    lambda m=model: answer_figures.perplexity_by_position(positions, frame, m),
                    answer=True,
                )
            )
        if answer_figures.has_generation(run, model):
            jobs.append(
                FigureJob(
                    f"generation-{model}",
                    f"{model}: generation",
                    "Decode tokens/s and J per generated token per precision; prefill (time to first token) vs "
                    "decode time per token.",
                    lambda m=model: answer_figures.generation(run, frame, m),
                    answer=True,
                )
            )
    return jobs


# The run-wide figures: (name, title, caption, draw) with draw taking (frame, layers).
RUN_FIGURES: tuple[tuple[str, str, str, Callable[[pd.DataFrame, pd.DataFrame], Any]], ...] = (
    (
        "speed-quality",
        "Speed vs quality trade-off",
        "Speedup against quality loss, each vs fp32.",
        lambda frame, layers: figures.speed_quality_tradeoff(frame),
    ),
    (
        "energy-by-layer-type",
        "Energy by layer type",
        "Energy per sample apportioned by hook time.",
        lambda frame, layers: layer_figures.energy_by_layer_type(layers),
    ),
    (
        "impact-by-layer-type",
        "Impact by layer type",
        "Ablation impact score per layer type.",
        lambda frame, layers: layer_figures.impact_by_layer_type(layers),
    ),
    (
        "energy-vs-impact",
        "Energy vs impact",
        "Per layer, with the recorded correlations.",
        lambda frame, layers: layer_figures.energy_vs_impact(layers),
    ),
    (
        "layer-correlations",
        "Energy / impact correlations",
        "Spearman rho between per-layer measures.",
        lambda frame, layers: layer_figures.correlation_heatmap(layers),
    ),
    (
        "model-comparison",
        "Model vs model",
        "Each model's gain over its own fp32, per metric.",
        lambda frame, layers: figures.model_comparison(frame),
    ),
    (
        "metric-bars",
        "Accuracy, latency, memory, size, emissions",
        "By model and precision.",
        lambda frame, layers: figures.metric_bars(frame),
    ),
    (
        "accuracy-vs-latency",
        "Accuracy vs latency",
        "Median latency with IQR whiskers.",
        lambda frame, layers: figures.accuracy_vs_latency(frame),
    ),
    (
        "radar",
        "Radar per model",
        "Gain over fp32 on every measured axis; fp32 is the dashed ring.",
        lambda frame, layers: figures.radar(frame),
    ),
    (
        "emissions",
        "Emissions per item",
        "CO2eq per item; hatched = estimated.",
        lambda frame, layers: figures.emissions_bars(frame),
    ),
    (
        "emissions-reduction",
        "Emissions reduction vs fp32",
        "In %; hatched = estimated.",
        lambda frame, layers: figures.emissions_reduction(frame),
    ),
    (
        "emissions-vs-size",
        "Emissions vs model size",
        "Hollow markers = estimated emissions.",
        lambda frame, layers: figures.emissions_vs_size(frame),
    ),
    (
        "mixed-plan",
        "Mixed-precision plan",
        "Predicted vs measured quality loss and energy saving.",
        lambda frame, layers: figures.plan_predicted_vs_measured(frame),
    ),
)


def figure_jobs(run: Run, history: pd.DataFrame, baseline: Run | None) -> list[FigureJob]:
    frame, layers = tidy.run_frame(run), tidy.layer_frame(run)
    jobs = answer_jobs(run, frame)
    jobs += [
        FigureJob(
            f"overview-{model}",
            f"{model}: overview",
            "Latency and throughput with IQR whiskers over "
            "the timed rounds; speedup vs fp32; energy per item (hatched = estimated); quality; size.",
            lambda m=model: figures.overview(frame, m),
        )
        for model in sorted(frame["model"].unique())
    ]
    jobs += [
        FigureJob(name, title, caption, lambda draw=draw: draw(frame, layers))
        for name, title, caption, draw in RUN_FIGURES
    ]
    custom = custom_metrics(frame)
    if custom:
        caption = "Metrics your benchmarks declared with eb_record, by model and precision."
        jobs.append(
            FigureJob("custom-metrics", "Your own metrics", caption, lambda: figures.custom_metric_bars(frame, custom))
        )
    jobs += trend_jobs(history, frame)
    if baseline is not None:
        deltas = delta_frame(baseline, run)
        jobs.append(
            FigureJob(
                "comparison",
                f"Comparison with {baseline.run_id}",
                "Change vs the baseline run.",
                lambda: figures.comparison(deltas, frame),
            )
        )
    return jobs


def custom_metrics(frame: pd.DataFrame) -> list[str]:
    """The users' own metrics measured in this run (declared in the run, not built into the catalog)."""
    names = dict.fromkeys(frame["metric"]) if "metric" in frame else {}
    return [m for m in names if m not in METRICS and not tidy.measured(frame, m).empty]


def trend_jobs(history: pd.DataFrame, frame: pd.DataFrame) -> list[FigureJob]:
    metrics = [m for m in (*TREND_METRICS, *custom_metrics(frame)) if not tidy.measured(frame, m).empty]
    if history.empty or history["run_id"].nunique() < 2:
        only = history if not history.empty else frame
        return [
            FigureJob(
                "history",
                "History",
                "Trends need two or more saved runs in the same reports folder.",
                lambda: draw.not_measured_figure(
                    "History", "only one saved run (on this machine) in this reports folder; a trend needs two", only
                ),
            )
        ]
    caption = (
        "Median per run saved in this reports folder on the same machine fingerprint; whiskers are the "
        "IQR where rounds exist."
    )
    return [
        FigureJob(f"history-{m}", f"History: {m}", caption, lambda m=m: figures.history_trend(history, m))
        for m in metrics
    ]


def render(job: FigureJob, folder: Path) -> RenderedFigure | OmittedFigure:
    """Draw the job; write PNG + SVG where the figure has data, else only say why it has none."""
    figure = job.draw()
    missing = not_measured_texts(figure)
    if not has_data(figure):
        return OmittedFigure(job.name, job.title, missing or ["no data in this run"])
    svg = folder / f"{job.name}.svg"
    figure.savefig(folder / f"{job.name}.png", dpi=PNG_DPI)
    figure.set_layout_engine("none")  # keep the layout the PNG computed: the SVG needs no second pass
    figure.savefig(svg)
    encoded = base64.b64encode(svg.read_bytes()).decode("ascii")
    return RenderedFigure(
        job.name, job.title, job.caption, encoded, [f"{job.name}.png", svg.name], missing, answer=job.answer
    )


def not_measured_texts(figure: Figure) -> list[str]:
    """The figure's "not measured: <reason>" statements, one line each."""
    return [
        " ".join(t.get_text().split()).removeprefix("not measured: ")
        for ax in figure.axes
        for t in ax.texts
        if t.get_gid() == draw.NOT_MEASURED_GID
    ]


def has_data(figure: Figure) -> bool:
    """Some panel is drawn and holds data (bars, lines, points or an image); a panel that only
    says "not measured" is switched off by ``draw.not_measured``."""
    return any(ax.axison and (ax.patches or ax.lines or ax.collections or ax.images) for ax in figure.axes)


def build_report(
    run_path: str | Path,
    compare: str | Path | None = None,
    out: str | Path | None = None,
    reports_dir: str | Path = "reports",
) -> Path:
    """Write the report of one run (optionally compared with a baseline run) and return its folder."""
    folder = resolve_run(run_path, Path(reports_dir))
    if folder.is_file() and out is None:
        raise ReportError(f"{folder}: a baseline is one file, not a run folder; give --out DIR for its report")
    run = load(folder)
    baseline = load(resolve_run(compare, Path(reports_dir))) if compare is not None else None
    target = Path(out) if out is not None else folder / REPORT_FOLDER
    staging = staging_folder(target)
    try:
        history = tidy.history_frame(history_runs(folder, run))
        jobs = figure_jobs(run, history, baseline)
        drawn = [render(job, staging) for job in progress_bar(jobs, desc="energybench report", unit="figure")]
        rendered = [f for f in drawn if isinstance(f, RenderedFigure)]
        omitted = [f for f in drawn if isinstance(f, OmittedFigure)]
        deltas = delta_frame(baseline, run) if baseline is not None else None
        (staging / "index.html").write_text(page(run, rendered, deltas, baseline, omitted), encoding="utf-8")
        (staging / MARKER).write_text(f"energybench report of run {run.run_id}\n", encoding="utf-8")
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def staging_folder(target: Path) -> Path:
    """A hidden temporary folder beside the target, so the final rename is atomic."""
    if target.exists() and not replaceable(target):
        raise ReportError(
            f"{target}: exists and is not an energybench report folder; give --out a new or empty "
            "folder (an earlier report there is replaced)"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    except OSError as error:
        raise ReportError(
            f"{target}: cannot write the report there ({error.strerror or error}); choose another folder with --out"
        ) from None


def replaceable(target: Path) -> bool:
    """An earlier report (it holds the marker) or an empty folder; never a file or someone's folder."""
    try:
        return target.is_dir() and ((target / MARKER).is_file() or not any(target.iterdir()))
    except OSError:
        return False


def replace_folder(staging: Path, target: Path) -> None:
    """Swap the finished report into place; an older report is removed only after the swap."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
        os.rename(target, old / target.name)
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.rename(old / target.name, target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
