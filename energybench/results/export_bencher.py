"""A run as Bencher Metric Format (BMF) JSON, for ``bencher run --adapter json --file FILE``.

The format, as published at https://bencher.dev/docs/reference/bencher-metric-format/ (its JSON
schema is https://bencher.dev/bmf.json, kept in tests/formats/bencher-bmf.schema.json): an object
of benchmarks, each an object of measures, each ``{"value": number, "lower_value"?: number,
"upper_value"?: number}``; ``value`` is required. A measure is named by slug or name (a new one is
created on first use); every project has the built-in ``latency`` (nanoseconds) and ``throughput``
(operations / second) measures (https://bencher.dev/docs/how-to/track-custom-benchmarks/).

So here: the benchmark is ``model/precision/backend/shape``; latency goes to the built-in
``latency`` in ns, throughput to ``throughput`` (items/s); every other metric to a measure named
with its unit (``energy (J/sample)``, times in ns: ``ttft (ns)``). lower/upper are the first and
third quartile of the record's timed rounds (its IQR); a number without rounds has value only.
Energy estimates are left out, as the gate leaves them out (``--estimates mark`` puts them in a
measure of their own, ``energy (J/item, estimated)``, so no threshold on measured energy sees them).
"""

from __future__ import annotations

import json
from typing import Any

from energybench.results.export_fields import benchmark_name, exported, is_estimate, quartiles
from energybench.results.schema import Record, Run

NS_PER_S = 1e9
BUILT_IN = {"latency": "latency", "throughput": "throughput"}  # Bencher's own measures
ESTIMATES = ("omit", "mark")


def measure_name(record: Record) -> tuple[str, float]:
    """The measure's name and the factor from the record's unit to the measure's."""
    if record.unit == "s":
        return BUILT_IN.get(record.metric, f"{record.metric} (ns)"), NS_PER_S
    if record.metric in BUILT_IN:
        return BUILT_IN[record.metric], 1.0
    return f"{record.metric} ({record.unit})", 1.0


def measure(record: Record) -> tuple[str, dict[str, float]]:
    name, factor = measure_name(record)
    if is_estimate(record):
        name = name[:-1] + ", estimated)" if name.endswith(")") else f"{name} (estimated)"
    metric: dict[str, float] = {"value": float(record.value or 0.0) * factor}  # exported(): never None
    spread = quartiles(record)
    if spread is not None:
        metric["lower_value"], metric["upper_value"] = spread[0] * factor, spread[1] * factor
    return name, metric


def to_bencher(run: Run, estimates: str = "omit") -> tuple[str, list[str]]:
    """The BMF JSON text and one note per record left out (and why)."""
    out: dict[str, dict[str, Any]] = {}
    notes = []
    for record in run.records:
        if not exported(record):
            continue
        if is_estimate(record) and estimates == "omit":
            notes.append(f"left out {benchmark_name(record)} {record.metric}: {record.basis} energy is never gated")
            continue
        name, metric = measure(record)
        measures = out.setdefault(benchmark_name(record), {})
        if name in measures:
            notes.append(f"left out a second {name} of {benchmark_name(record)} (test {record.test_id})")
            continue
        measures[name] = metric
    return json.dumps(out, indent=1, sort_keys=True) + "\n", notes
