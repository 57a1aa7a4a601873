"""A comparison as text: an aligned table for the terminal, Markdown for CI, CSV and JSON for tools."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

from energybench.results.limits import CompareError
from energybench.results.verdicts import Comparison, Row

FORMATS = ("table", "markdown", "csv", "json")
COLUMNS = ("model", "precision", "metric", "A", "B", "change", "verdict", "basis")


def row_cells(row: Row) -> list[str]:
    change = "" if row.change_pct is None else describe_change(row.change_pct)
    if row.change_pp is not None:
        change += f" ({row.change_pp:+.2f} pp lost)"
    verdict = row.verdict.upper() + (" -> FAIL " + row.limit if row.failed else "")
    return [
        row.model,
        row.precision,
        f"{row.metric} {row.shape}" if row.shape else row.metric,
        fmt_value(row.value_a, row.unit),
        fmt_value(row.value_b, row.unit),
        change,
        verdict,
        row.basis,
    ]


def describe_change(change_pct: float) -> str:
    if abs(change_pct) < 0.005:
        return "0.00 %"
    return f"{change_pct:+.2f} % worse" if change_pct > 0 else f"{-change_pct:.2f} % better"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.4g} {unit}".strip()


def header_line(comparison: Comparison) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in comparison.counts().items())
    head = f"A={comparison.run_a} (baseline)  B={comparison.run_b}  {counts}"
    if comparison.not_comparable:
        head += f"\nnot comparable: {comparison.not_comparable}"
    return head


def render(comparison: Comparison, fmt: str = "table") -> str:
    if fmt not in FORMATS:
        raise CompareError(f"--format {fmt!r}: accepted: {', '.join(FORMATS)}")
    return {"table": render_table, "markdown": render_markdown, "csv": render_csv, "json": render_json}[fmt](comparison)


def render_table(comparison: Comparison) -> str:
    cells = [list(COLUMNS)] + [row_cells(row) for row in comparison.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS) - 1)]
    lines = [header_line(comparison)]
    for line in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1])
    return "\n".join(lines)


def render_markdown(comparison: Comparison) -> str:
    lines = [
        "### energybench comparison",
        "",
        header_line(comparison).replace("\n", "  \n"),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in comparison.rows:
        cells = [c.replace("|", "\\|") for c in row_cells(row)]
        if row.failed:
            cells[6] = f"**{cells[6]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_csv(comparison: Comparison) -> str:
    buffer = io.StringIO()
    fields = ["run_a", "run_b", *Row.__dataclass_fields__]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in comparison.rows:
        writer.writerow({"run_a": comparison.run_a, "run_b": comparison.run_b, **dataclasses.asdict(row)})
    return buffer.getvalue()


def render_json(comparison: Comparison) -> str:
    return json.dumps(dataclasses.asdict(comparison), indent=1)
