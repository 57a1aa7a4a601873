"""A small index beside the runs, so ``list``, ``history`` and ``compare`` stay fast at 1,000 runs.

``<root>/runs/.index.json`` keeps, per run folder, the stamp of its ``run.json`` (modification
time in ns, size, inode), the run's envelope (id, dates, commit, machine fingerprint, partial) and
each record without its rounds, method and details (their implementation and instability kept), or
why the file could not be read. Every use re-stats every ``run.json`` (1,000 stats take a few ms) and
re-reads any whose stamp changed, that is new or whose entry is missing; entries of deleted folders
are dropped. So the index is never trusted over the run files: it is a cache of what reading them
gives, rebuilt whole when missing, unreadable or written by another index or schema version, and
written back atomically (a read-only history is read and not written).

What it answers is checked against reading every file (tests/test_merge.py): the ``list`` rows,
``history`` points (``energybench.results.history.metric_history``) and the history runs the
comparison's drift band reads (``history_runs``: records without rounds or most details).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energybench.catalog import variant
from energybench.results.history import Point
from energybench.results.schema import SCHEMA_VERSION, Record, Run, SchemaError, shape_label
from energybench.results.store import RUN_FILE, current_umask, list_runs, load_run, runs_dir
from energybench.version import __version__

INDEX_FILE = ".index.json"
INDEX_VERSION = 1
KEPT_DETAILS = ("implementation", "unstable", "window", "merged_from", "machine")
SeriesKey = tuple[str, str, str]  # model, precision, metric


@dataclass
class Entry:
    stamp: list[int] | None
    run: dict[str, Any] | None = None  # the envelope; None when unreadable
    records: list[dict[str, Any]] | None = None
    error: str | None = None


def index_path(root: Path) -> Path:
    return runs_dir(root) / INDEX_FILE


def stamp_of(folder: Path) -> list[int] | None:
    try:
        found = (folder / RUN_FILE).stat()
    except OSError:
        return None
    return [found.st_mtime_ns, found.st_size, found.st_ino]


# A record is one row: its numbers as they are, then every other field as an index into the index's
# table of distinct values (a run repeats its sources, shapes and names on every record).
NUMBERS = ("value", "rounds", "median_s", "iqr_s")
FIELDS = (
    "model",
    "precision",
    "metric",
    "unit",
    "status",
    "reason",
    "basis",
    "device",
    "shape",
    "source",
    "data",
    "details",
    "backend",
    "test_id",
)
VALUE, ROUNDS, MEDIAN, IQR = range(4)
MODEL, PRECISION, METRIC, UNIT, STATUS, REASON, BASIS, DEVICE, SHAPE, SOURCE, DATA, DETAILS, BACKEND, TEST_ID = range(
    len(NUMBERS), len(NUMBERS) + len(FIELDS)
)


def record_row(record: Record) -> list[Any]:
    timing = record.timing
    numbers = [record.value, *((timing.rounds, timing.median_s, timing.iqr_s) if timing else (None, None, None))]
    source = {k: record.source.get(k) for k in ("kind", "checkpoint", "revision", "task")}
    data = {"name": record.data.get("name"), "sha256": record.data.get("sha256")} if record.data else None
    details = {k: record.details[k] for k in KEPT_DETAILS if k in record.details}
    fields = (record.model, record.precision, record.metric, record.unit, record.status, record.reason, record.basis)
    return [*numbers, *fields, record.device, record.shape, source, data, details, record.backend, record.test_id]


def encoded(rows: list[list[Any]], table: dict[str, int]) -> list[list[Any]]:
    """Rows with every field but the numbers replaced by its index in ``table`` (added as needed)."""
    out = []
    for row in rows:
        ids = [table.setdefault(json.dumps(v, sort_keys=True), len(table)) for v in row[len(NUMBERS) :]]
        out.append(row[: len(NUMBERS)] + ids)
    return out


def decoded(rows: list[list[Any]], table: list[Any]) -> list[list[Any]]:
    return [row[: len(NUMBERS)] + [table[i] for i in row[len(NUMBERS) :]] for row in rows]


def entry_of(folder: Path, stamp: list[int] | None) -> Entry:
    try:
        run = load_run(folder)
    except SchemaError as error:
        return Entry(stamp, error=f"skipped {error}")
    envelope = {
        "run_id": run.run_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "energybench_version": run.energybench_version,
        "commit": {k: run.commit.get(k) for k in ("id", "dirty", "branch")},
        "fingerprint": run.machine.get("fingerprint"),
        "models": sorted(run.models),
        "records": len(run.records),
        "partial": run.partial,
        "partial_reason": run.partial_reason,
    }
    return Entry(stamp, envelope, [record_row(r) for r in run.records])


def read_index(root: Path) -> dict[str, Entry]:
    """The stored entries, or none when the index is missing, unreadable or of another version."""
    try:
        raw = json.loads(index_path(root).read_text(encoding="utf-8"))
        if raw.get("version") != [INDEX_VERSION, SCHEMA_VERSION, __version__]:
            return {}
        table = raw["table"]
        entries = {name: Entry(**entry) for name, entry in raw["runs"].items()}
        for entry in entries.values():
            entry.records = decoded(entry.records or [], table)
        return entries
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def write_index(root: Path, entries: dict[str, Entry]) -> None:
    """Atomically; a history that cannot be written (read-only artifacts) is simply not indexed."""
    table: dict[str, int] = {}
    runs = {k: {**vars(e), "records": encoded(e.records or [], table)} for k, e in entries.items()}
    values = [json.loads(text) for text in table]  # in insertion order: the index each row holds
    data = {"version": [INDEX_VERSION, SCHEMA_VERSION, __version__], "table": values, "runs": runs}
    try:
        handle = tempfile.NamedTemporaryFile("w", dir=runs_dir(root), prefix=".tmp-index-", delete=False)
    except OSError:
        return
    staging = Path(handle.name)
    try:
        with handle:
            json.dump(data, handle, separators=(",", ":"))
        staging.chmod(0o666 & ~current_umask())
        os.replace(staging, index_path(root))
    except OSError:
        staging.unlink(missing_ok=True)


def refreshed(root: Path) -> list[Entry]:
    """One entry per run folder, oldest first, each checked against its run.json."""
    stored = read_index(root)
    entries, changed = {}, False
    for folder in list_runs(root):
        stamp = stamp_of(folder)
        entry = stored.get(folder.name)
        if entry is None or entry.stamp is None or entry.stamp != stamp:
            entry, changed = entry_of(folder, stamp), True
        entries[folder.name] = entry
    if changed or set(stored) != set(entries):
        write_index(root, entries)
    return list(entries.values())


def summaries(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Each readable run's envelope, oldest first, and one line per file skipped."""
    entries = refreshed(Path(root))
    return [e.run for e in entries if e.run is not None], [e.error for e in entries if e.error]


def history_points(
    root: Path, metric: str, model: str | None = None, precision: str | None = None
) -> tuple[list[Point], list[str]]:
    """What ``metric_history(load_runs(root)...)`` gives, read from the index."""
    entries = refreshed(Path(root))
    readable = [e for e in entries if e.run is not None]
    points = []
    for entry in sorted(readable, key=lambda e: (e.run or {})["started_at"]):
        run, records = entry.run or {}, entry.records or []
        swept = swept_series(records)
        commit = (run["commit"].get("id") or "-")[:10] + ("+dirty" if run["commit"].get("dirty") else "")
        for r in records:
            if r[METRIC] != metric or (model and r[MODEL] != model) or (precision and r[PRECISION] != precision):
                continue
            points.append(point(run, commit, r, swept))
    return points, [e.error for e in entries if e.error]


def series_of(row: list[Any]) -> tuple[str, str, str]:
    """``Record.series`` of an indexed record."""
    return (row[MODEL], variant(row[PRECISION], row[BACKEND]), row[METRIC])


def swept_series(records: list[list[Any]]) -> set[tuple[str, str, str]]:
    seen: dict[tuple[str, str, str], set[tuple]] = {}
    for r in records:
        seen.setdefault(series_of(r), set()).add(tuple(sorted(r[SHAPE].items())))
    return {series for series, shapes in seen.items() if len(shapes) > 1}


def point(run: dict[str, Any], commit: str, r: list[Any], swept: set[tuple[str, str, str]]) -> Point:
    timed = r[ROUNDS] is not None
    iqr = r[IQR] * (r[VALUE] / r[MEDIAN]) if timed and r[VALUE] is not None else None
    return Point(
        run["run_id"],
        run["started_at"],
        commit,
        run.get("fingerprint") or "-",
        r[MODEL],
        r[PRECISION],
        r[METRIC],
        r[VALUE],
        r[UNIT],
        iqr,
        r[ROUNDS],
        r[SOURCE].get("kind") or "-",
        r[STATUS],
        r[REASON],
        shape_label(r[SHAPE]) if series_of(r) in swept else "",
    )


def history_runs(
    root: Path, only: set[SeriesKey] | None = None, fingerprint: str | None = None
) -> tuple[list[Run], list[str]]:
    """The saved runs as the comparison's drift band reads them: envelope and records without rounds,
    method or most details; when given, only runs of the machine ``fingerprint`` (the band's runs) and
    only records of the ``only`` model x precision x metric."""
    entries = refreshed(Path(root))
    runs = []
    for entry in entries:
        if entry.run is None or (fingerprint is not None and entry.run["fingerprint"] != fingerprint):
            continue
        env = entry.run
        records = [
            as_record(r) for r in entry.records or [] if only is None or (r[MODEL], r[PRECISION], r[METRIC]) in only
        ]
        runs.append(
            Run(
                run_id=env["run_id"],
                started_at=env["started_at"],
                finished_at=env["finished_at"],
                energybench_version=env["energybench_version"],
                machine={"fingerprint": env["fingerprint"]},
                commit=env["commit"],
                options={},
                models={name: {} for name in env["models"]},
                records=records,
                partial=env["partial"],
                partial_reason=env["partial_reason"],
            )
        )
    return runs, [e.error for e in entries if e.error]


def as_record(row: list[Any]) -> Record:
    """An indexed record as a Record without rounds, method or most details."""
    return Record(value=row[VALUE], **dict(zip(FIELDS, row[len(NUMBERS) :], strict=True)))  # shares the table's dicts
