"""Which records of two runs are compared: alignment by key, like with like, intact records, drift.

A row is only compared when both sides measured the same thing: same machine fingerprint, model
source and revision, precision implementation, shape, data file and device. A record whose value
disagrees with its own rounds (an edited or damaged file) is named and left out.

Drift between runs: when the history (the saved runs) holds at least ``HISTORY_MIN_RUNS``
earlier runs of the same machine fingerprint that measured a comparable record, the band
widens to ``HISTORY_K`` x their run-to-run CV (the last ``HISTORY_LOOKBACK`` runs, as
Conbench's lookback z-score).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from energybench.results.schema import Record, Run, shape_label
from energybench.results.verdicts import Band
from energybench.stats import cv

HISTORY_LOOKBACK = 10
HISTORY_MIN_RUNS = 3
HISTORY_K = 3.0
AGREEMENT = 1e-6  # relative: a value and the median of its own rounds agree to float rounding

Key = tuple[str, str, str, str]  # model, precision as run by its backend, metric, shape label ("" unswept)


def index(records: list[Record], swept: set[tuple[str, str, str]] | None = None) -> dict[Key, Record]:
    """Records by (model, precision as run by its backend, metric, shape): backends are never aligned
    together; shapes only where a run swept them (otherwise unlike shapes are refused as before)."""
    out = {}
    for r in records:
        triple = r.series
        out[(*triple, shape_label(r.shape) if triple in (swept or set()) else "")] = r
    return out


def run_incomparability(run_a: Run, run_b: Run) -> str | None:
    fa, fb = run_a.machine.get("fingerprint"), run_b.machine.get("fingerprint")
    if fa != fb:
        differing = [
            k
            for k in sorted(set(run_a.machine) | set(run_b.machine))
            if k not in ("fingerprint", "node") and run_a.machine.get(k) != run_b.machine.get(k)
        ]
        shown = ", ".join(f"{k} {run_a.machine.get(k)!r} vs {run_b.machine.get(k)!r}" for k in differing[:3])
        return f"different machine fingerprint {fa} vs {fb} ({shown or 'fingerprint scheme differs'})"
    return None


COMPARABLE_FIELDS = (
    ("model source (checkpoint or weights digest)", lambda r: r.checkpoint),
    ("backend", lambda r: r.backend),
    ("precision implementation", lambda r: r.details.get("implementation")),
    ("shape", lambda r: tuple(sorted(r.shape.items()))),
    ("data", lambda r: (r.data or {}).get("sha256")),
    ("device", lambda r: r.device),
    (
        "perplexity protocol (protocol, context, stride)",
        lambda r: (
            r.metric == "perplexity"
            and (r.details.get("protocol", "strided"), r.details.get("context"), r.details.get("stride"))
        ),
    ),
)


def record_incomparability(a: Record, b: Record) -> str | None:
    for name, key in COMPARABLE_FIELDS:
        if key(a) != key(b):
            return f"different {name}: {key(a)} vs {key(b)}"
    return None


def disagreement(record: Record) -> str | None:
    """Why a timed record contradicts its own rounds (an edited or damaged file), or None.

    Its order statistics must be those of its rounds, and a value in seconds is their median;
    a rate (items/s) is a whole number of items per median call."""
    timing = record.timing
    if timing is None or record.value is None:
        return None
    rounds = [x for block in timing.blocks_s for x in block]
    median = float(np.median(rounds)) if rounds else math.nan
    if len(rounds) != timing.rounds or not math.isclose(median, timing.median_s, rel_tol=AGREEMENT):
        return f"its timing says median {timing.median_s:.4g} s of {timing.rounds} rounds, its blocks {median:.4g} s"
    if record.unit == "s" and not math.isclose(record.value, median, rel_tol=AGREEMENT):
        return f"value {record.value:.4g} s, the median of its own {len(rounds)} rounds {median:.4g} s"
    items = record.value * median
    if record.unit.endswith("/s") and not math.isclose(items, round(items), rel_tol=AGREEMENT, abs_tol=1e-6):
        return f"value {record.value:.4g} {record.unit} is {items:.4g} items per median call, not a whole number"
    return None


def history_band(b: Record, fingerprint: Any, history: list[Run], exclude: str) -> Band | None:
    """``HISTORY_K`` x the run-to-run CV of this record over the last runs of the same machine."""
    values = [
        record.value
        for run in sorted(history, key=lambda r: r.started_at)
        if run.run_id != exclude and run.machine.get("fingerprint") == fingerprint
        for record in run.records
        if (record.model, record.precision, record.metric) == (b.model, b.precision, b.metric)
        and record.value is not None
        and record.status == "ok"
        and record_incomparability(record, b) is None
        and disagreement(record) is None
    ][-HISTORY_LOOKBACK:]
    if len(values) < HISTORY_MIN_RUNS:
        return None
    spread = cv(values)
    return Band(HISTORY_K * 100.0 * spread, f"history of {len(values)} runs, run-to-run CV {100.0 * spread:.1f} %")
