"""A metric over saved runs: one row per run that measured it, by date and commit."""

from __future__ import annotations

from dataclasses import dataclass

from energybench.results.schema import Run, shape_label, swept_metrics


@dataclass(frozen=True)
class Point:
    run_id: str
    started_at: str
    commit: str
    machine: str
    model: str
    precision: str
    metric: str
    value: float | None
    unit: str
    iqr: float | None
    rounds: int | None
    source: str
    status: str
    reason: str | None
    shape: str = ""  # ``b8x128`` where the run swept this metric over shapes


def metric_history(runs: list[Run], metric: str, model: str | None = None, precision: str | None = None) -> list[Point]:
    points = []
    for run in sorted(runs, key=lambda r: r.started_at):
        swept = swept_metrics([run.records])
        for r in run.records:
            if r.metric != metric or (model and r.model != model) or (precision and r.precision != precision):
                continue
            iqr = None
            if r.timing is not None and r.value is not None:
                iqr = r.timing.iqr_s * (r.value / r.timing.median_s)  # in the record's own unit
            commit = (run.commit.get("id") or "-")[:10] + ("+dirty" if run.commit.get("dirty") else "")
            points.append(
                Point(
                    run.run_id,
                    run.started_at,
                    commit,
                    run.machine.get("fingerprint", "-"),
                    r.model,
                    r.precision,
                    metric,
                    r.value,
                    r.unit,
                    iqr,
                    r.timing.rounds if r.timing else None,
                    r.source.get("kind", "-"),
                    r.status,
                    r.reason,
                    shape_label(r.shape) if (r.model, r.variant, r.metric) in swept else "",
                )
            )
    return points


def render_history(points: list[Point]) -> str:
    header = ("run", "started", "commit", "machine", "model", "precision", "value", "iqr", "source", "status")
    rows = [header] + [
        (
            p.run_id,
            p.started_at,
            p.commit,
            p.machine,
            p.model,
            f"{p.precision} {p.shape}".rstrip(),
            "-" if p.value is None else f"{p.value:.4g} {p.unit}",
            "-" if p.iqr is None else f"{p.iqr:.2g}",
            p.source,
            p.status if p.value is not None else f"{p.status}: {p.reason}",
        )
        for p in points
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
