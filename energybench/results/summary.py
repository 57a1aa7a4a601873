"""The end-of-session table: one line per record, readable in a terminal and in CI logs."""

from __future__ import annotations

from energybench import catalog
from energybench.layers.flatten import energy_basis
from energybench.results.answer import JOULES_PER_WH, PER_THOUSAND
from energybench.results.schema import Record, shape_label, swept_metrics


def format_value(record: Record) -> str:
    """The record's value in its display unit (energybench.catalog.UNIT_DISPLAY)."""
    return catalog.format_value(record.value, record.unit)


def note(record: Record) -> str:
    if record.value is None:
        return f"{record.status}: {record.reason}"
    parts = []
    if record.metric in catalog.ENERGY_METRICS:
        parts.append(provenance(record))  # e.g. "estimated: codecarbon" -- provenance first
    if record.metric == "energy":
        parts.append(per_thousand(record.value))
    if record.timing:
        t = record.timing
        parts.append(f"IQR {t.iqr_s * 1000:.3f} ms, p99 {t.p99_s * 1000:.3f} ms, n={t.rounds}")
    if record.unstable:
        parts.append(f"UNSTABLE ({record.unstable})")
    if record.details.get("flags"):
        parts.append("flagged: " + "; ".join(record.details["flags"]))
    if record.budget:
        b = record.budget
        paired = f", {b.paired()}" if b.paired() else ""
        parts.append(f"loss {b.loss:+.2f} {b.unit}{paired} (budget {b.limit:.2f}) {'ok' if b.passed else 'BREACH'}")
    return "; ".join(parts)


def per_thousand(joules_per_item: float) -> str:
    """Energy per 1,000 inferences, the unit of Luccioni et al., "Power Hungry Processing" (2023)."""
    joules = joules_per_item * PER_THOUSAND
    return f"{joules:.4g} J = {joules / JOULES_PER_WH:.4g} Wh per 1,000 items"


def provenance(record: Record) -> str:
    """``estimated: codecarbon``: how an energy figure was obtained (its basis), and by which meter."""
    meter = record.details.get("primary") or (record.details.get("meter") or {}).get("name")
    basis = energy_basis(record) or "basis not recorded"
    return f"{basis}: {meter}" if meter else basis


def summary_table(records: list[Record]) -> list[str]:
    rows = [("model", "precision", "metric", "value", "source", "note")]
    swept = swept_metrics([records])
    for r in records:
        metric = f"{r.metric} {shape_label(r.shape)}" if (r.model, r.variant, r.metric) in swept else r.metric
        rows.append((r.model, r.variant, metric, format_value(r), r.source.get("kind", ""), note(r)))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return lines
