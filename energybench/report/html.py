"""One self-contained HTML page: every figure (inline, as base64 SVG), the summary table, budgets
and verdicts, the comparison, the "not measured" reasons and the machine fingerprint. No script,
no server, no external file: it opens from disk in any browser."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from energybench.results.answer import AnswerRow, answer_table, shape_note, wh_per_1000
from energybench.results.recommend import recommend
from energybench.results.schema import Record, Run
from energybench.results.summary import format_value

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1d;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.5rem 0;background:#fff;border:1px solid #e3e3e3;padding:.5rem}
figure img{width:100%;height:auto}figcaption{font-size:.85rem;color:#444}
.missing{color:#8a1c1c}.bad{color:#b00020;font-weight:600}.good{color:#1b6e2a}
nav a{margin-right:.8rem;font-size:.9rem}.meta{font-size:.9rem;color:#333}
"""


@dataclass
class RenderedFigure:
    name: str
    title: str
    caption: str
    svg_base64: str
    files: Sequence[str]
    not_measured: list[str] = field(default_factory=list)
    answer: bool = False  # drawn in the answer section at the top of the page


@dataclass(frozen=True)
class OmittedFigure:
    """A figure with no data in this run: not written, named in "Not measured" with why."""

    name: str
    title: str
    reasons: list[str]


def page(
    run: Run,
    figures: list[RenderedFigure],
    deltas: pd.DataFrame | None = None,
    baseline: Run | None = None,
    omitted: Sequence[OmittedFigure] = (),
) -> str:
    """The whole page as one string."""
    answers = [f for f in figures if f.answer]
    sections = [
        header(run),
        navigation(figures, deltas is not None),
        section("answer", "Which precision to ship", answer_html(run) + "".join(figure_html(f) for f in answers)),
        section("not-measured", "Not measured", not_measured_list(run, figures, omitted)),
        section("budgets", "Budgets and verdicts", budget_table(run.records)),
    ]
    if deltas is not None:
        sections.append(section("comparison", "Comparison", comparison_table(deltas, baseline, run)))
    sections.append(section("figures", "Figures", "".join(figure_html(f) for f in figures if not f.answer)))
    sections.append(section("summary", "All records", summary_table(run.records)))
    sections.append(section("machine", "Machine, options and meters", machine_tables(run)))
    title = f"energybench report {run.run_id}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body><main>\n"
        + "\n".join(sections)
        + "\n</main></body></html>\n"
    )


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], table_id: str, numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>" for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return '<p class="missing">none</p>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def header(run: Run) -> str:
    commit = run.commit.get("id") or run.commit.get("reason") or "unknown"
    dirty = " (uncommitted changes)" if run.commit.get("dirty") else ""
    sources = "; ".join(
        f"{name}: {info.get('kind', '?')} {info.get('checkpoint') or ''}".strip()
        for name, info in sorted(run.models.items())
    )
    return (
        f"<h1>energybench report: run {esc(run.run_id)}</h1>"
        f'<p class="meta">started {esc(run.started_at)}, finished {esc(run.finished_at)} · energybench '
        f"{esc(run.energybench_version)} · commit {esc(commit)}{esc(dirty)} · machine "
        f"{esc(run.machine.get('fingerprint'))}<br>"
        f"model sources: {esc(sources or 'not recorded')}</p>"
    )


def navigation(figures: list[RenderedFigure], compared: bool) -> str:
    links = [("answer", "Answer"), ("not-measured", "Not measured"), ("budgets", "Budgets")]
    links += [("comparison", "Comparison")] if compared else []
    links += [("figures", "Figures"), ("summary", "All records"), ("machine", "Machine")]
    return "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in links) + "</nav>"


# -- the answer: recommendation and per-model table --------------------------------------------
def answer_html(run: Run) -> str:
    """The recommendation lines (least energy, least latency), then one table per model."""
    lines = [found.line() for objective in ("energy", "latency") for found in recommend(run, objective)]
    intro = (
        "<p>The measured configuration that meets every quality budget with the least energy per item, "
        "then with the least latency per item (<code>energybench recommend</code>). Energy ranks only "
        "measured figures: an estimate is shown, never ranked on.</p>"
    )
    recommendation = '<ul id="recommendation">' + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>"
    note = shape_note(run.records)
    caption = (
        '<p class="meta">Ratios against eager fp32 of the same model. Loss: accuracy points (pp) or perplexity '
        "increase (%), positive = worse. Energy per 1,000 inferences, the unit of Luccioni et al., "
        f"<em>Power Hungry Processing</em> (2023). Shapes: {esc(note or 'one shape per metric')}.</p>"
    )
    tables = "".join(
        f"<h3>{esc(model)}</h3>" + answer_rows_table(model, rows) for model, rows in answer_table(run).items()
    )
    return intro + recommendation + caption + tables


def answer_rows_table(model: str, rows: list[AnswerRow]) -> str:
    headers = (
        "precision",
        "backend",
        "quality loss vs fp32",
        "budget",
        "verdict",
        "behaviour vs fp32 (95 % CI)",
        "recovery (95 % CI)",
        "speed-up",
        "energy ratio",
        "energy per 1,000 (J)",
        "energy per 1,000 (Wh)",
        "energy basis",
        "size ratio",
        "memory ratio",
    )
    return table(headers, (answer_cells(r) for r in rows), f"answer-{model}", numeric=(2, 7, 8, 9, 10, 12, 13))


def answer_cells(row: AnswerRow) -> tuple[Any, ...]:
    loss = row.loss
    if loss is None:
        verdict = "quality not measured"
    elif loss.limit is None:
        verdict = "baseline" if row.config.is_baseline else "no budget"
    else:
        verdict = "pass" if loss.passed else "BREACH"
    if row.fallback:
        verdict += f"; FALLBACK, not a quantized result: {row.fallback}"
    per_1000 = row.energy_j_per_1000
    return (
        row.config.precision,
        row.config.backend,
        f"{loss.value:+.2f} {loss.unit}" if loss else "-",
        f"{loss.limit:.2f} {loss.unit}" if loss and loss.limit is not None else "-",
        verdict,
        with_ci(row.behaviour),
        with_ci(row.recovery),
        ratio_text(row.speedup),
        ratio_text(row.energy_ratio),
        number(per_1000, "{:.4g}"),
        number(wh_per_1000(per_1000) if per_1000 is not None else None, "{:.4g}"),
        row.energy_basis or "-",
        ratio_text(row.size_ratio),
        ratio_text(row.memory_ratio),
    )


def with_ci(record: Any) -> str:
    """``flips 0.23 pp [0.03, 0.83]``: a behaviour record (a fraction) in points with its CI."""
    if record is None or record.value is None:
        return "-"
    low, high = (record.details.get("ci95") or (None, None))[:2]
    ci = f" [{100 * low:.2f}, {100 * high:.2f}]" if low is not None and high is not None else ""
    return f"{record.metric} {100 * record.value:.2f} %{ci}"


def ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def not_measured_list(run: Run, figures: list[RenderedFigure], omitted: Sequence[OmittedFigure] = ()) -> str:
    items = [f"{r.model} {r.precision} {r.metric}: {r.status}: {r.reason}" for r in run.records if r.value is None]
    items += [f"figure '{f.title}' not drawn, no data: {'; '.join(dict.fromkeys(f.reasons))}" for f in omitted]
    items += [f"figure '{f.title}': {reason}" for f in figures for reason in f.not_measured]
    if not items:
        return "<p>Every record holds a value and every figure panel has data.</p>"
    return '<ul class="missing">' + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def summary_table(records: list[Record]) -> str:
    headers = (
        "model",
        "precision",
        "metric",
        "value",
        "unit",
        "status",
        "source",
        "basis / method",
        "IQR of timed rounds",
        "rounds",
        "note",
    )
    return table(headers, (summary_row(r) for r in records), "summary-table", numeric=(3, 8, 9))


def summary_row(record: Record) -> tuple[Any, ...]:
    timing = record.timing
    iqr = f"{timing.iqr_s * 1000:.3f} ms" if timing else ""
    note = record.reason or ("UNSTABLE (IQR/median > 10%)" if timing and timing.unstable else "")
    return (
        record.model,
        record.precision,
        record.metric,
        format_value(record),
        record.unit,
        record.status,
        record.source.get("kind", ""),
        record.method,
        iqr,
        timing.rounds if timing else "",
        note,
    )


def budget_table(records: list[Record]) -> str:
    rows = []
    for r in records:
        if r.budget is None:
            continue
        b = r.budget
        rows.append(
            (
                r.model,
                r.precision,
                r.metric,
                format_value(r),
                f"{b.baseline_value:.4g}",
                f"{b.loss:+.3g} {b.unit}",
                f"{b.limit:.3g} {b.unit}",
                "pass" if b.passed else "BREACH",
            )
        )
    headers = ("model", "precision", "metric", "value", f"baseline ({'fp32'})", "loss", "limit", "verdict")
    return table(headers, rows, "budget-table", numeric=(3, 4, 5, 6))


def number(value: Any, pattern: str = "{:.4g}") -> str:
    return "-" if value is None or pd.isna(value) else pattern.format(value)


def comparison_table(deltas: pd.DataFrame, baseline: Run | None, run: Run) -> str:
    intro = (
        f"<p>A = baseline run {esc(baseline.run_id if baseline else '?')}, B = this run {esc(run.run_id)}."
        " Delta is (B / A - 1) in %; the verdict accounts for whether lower or higher is better.</p>"
    )
    rows = (
        (
            r.model,
            r.precision,
            r.metric,
            getattr(r, "unit", ""),
            number(r.value_a),
            number(r.value_b),
            number(r.delta_pct, "{:+.2f}%"),
            r.verdict,
            getattr(r, "note", ""),
        )
        for r in deltas.itertuples()
    )
    headers = ("model", "precision", "metric", "unit", "A", "B", "delta", "verdict", "note")
    return intro + table(headers, rows, "comparison-table", numeric=(4, 5, 6))


def figure_html(figure: RenderedFigure) -> str:
    links = " · ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in figure.files)
    return (
        f'<figure id="fig-{esc(figure.name)}"><img alt="{esc(figure.title)}" '
        f'src="data:image/svg+xml;base64,{figure.svg_base64}">'
        f"<figcaption><strong>{esc(figure.title)}.</strong> {esc(figure.caption)} Files: {links}</figcaption>"
        "</figure>"
    )


def machine_tables(run: Run) -> str:
    machine = table(("key", "value"), sorted(run.machine.items()), "machine-table")
    options = table(("option", "value"), sorted(run.options.items()), "options-table")
    meters = table(("meter", "state"), meter_rows(run.meters), "meters-table")
    return f"<h3>Machine fingerprint</h3>{machine}<h3>Options</h3>{options}<h3>Meters</h3>{meters}"


def meter_rows(meters: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(name, f"open on {device}") for name, device in (meters.get("open") or {}).items()]
    return rows + [(name, f"absent: {why}") for name, why in (meters.get("absent") or {}).items()]
