"""The run history on disk: each run is a folder ``<root>/runs/<run_id>/`` written atomically.

A run folder holds ``run.json`` (the source of truth) and ``records.csv`` (an export), plus
``layers.csv`` and ``correlations.csv`` when the run has a layer study. It is
assembled under a hidden temporary name in the same directory and renamed into place, so a
crash or kill never leaves a half-written run visible, and concurrent writers never collide
(run ids carry a random suffix; a rename onto an existing folder fails instead of merging).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from energybench.layer_tables import layer_csvs
from energybench.records import Record, Run, SchemaError

RUN_FILE = "run.json"
CSV_FILE = "records.csv"
CSV_COLUMNS = (
    "model", "precision", "metric", "value", "unit", "status", "reason", "method", "device",
    "batch_size", "seq_len", "source_kind", "checkpoint", "revision", "data_file", "data_sha256",
    "median_s", "iqr_s", "p90_s", "p99_s", "rounds", "unstable",
    "budget_baseline", "budget_loss", "budget_limit", "budget_unit", "budget_passed", "test_id",
)  # fmt: skip


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def runs_dir(root: Path) -> Path:
    return Path(root) / "runs"


def save_run(run: Run, root: Path) -> Path:
    """Write the run folder atomically and return its final path."""
    parent = runs_dir(root)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{run.run_id}-", dir=parent))
    try:
        write_file(staging / RUN_FILE, json.dumps(run.to_dict(), indent=1, sort_keys=True))
        write_file(staging / CSV_FILE, records_csv(run.records))
        for name, text in layer_csvs(run.records).items():  # the layer study's tables, when the run has them
            write_file(staging / name, text)
        final = parent / run.run_id
        os.rename(staging, final)  # atomic; raises if `final` exists, never merges two runs
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def write_file(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def load_run(path: Path) -> Run:
    """Read a run folder (or its run.json); raise SchemaError with the file name if unreadable."""
    path = Path(path)
    file = path / RUN_FILE if path.is_dir() else path
    if not file.is_file():
        raise SchemaError(f"{path}: not a run (no {RUN_FILE}); runs live under <reports>/runs/<run_id>/")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        return Run.from_dict(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SchemaError(f"{file}: corrupt run file ({error})") from error
    except (TypeError, KeyError, ValueError) as error:
        raise SchemaError(f"{file}: not a valid energybench run ({error})") from error


def list_runs(root: Path) -> list[Path]:
    """Run folders, oldest first; temporary folders of saves in progress are never listed."""
    parent = runs_dir(root)
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def flat_row(record: Record) -> dict[str, Any]:
    timing, budget, source, data = record.timing, record.budget, record.source, record.data or {}
    return {
        "model": record.model,
        "precision": record.precision,
        "metric": record.metric,
        "value": record.value,
        "unit": record.unit,
        "status": record.status,
        "reason": record.reason,
        "method": record.method,
        "device": record.device,
        "batch_size": record.shape.get("batch_size"),
        "seq_len": record.shape.get("seq_len"),
        "source_kind": source.get("kind"),
        "checkpoint": source.get("checkpoint"),
        "revision": source.get("revision"),
        "data_file": data.get("name"),
        "data_sha256": data.get("sha256"),
        "median_s": timing.median_s if timing else None,
        "iqr_s": timing.iqr_s if timing else None,
        "p90_s": timing.p90_s if timing else None,
        "p99_s": timing.p99_s if timing else None,
        "rounds": timing.rounds if timing else None,
        "unstable": timing.unstable if timing else None,
        "budget_baseline": budget.baseline_value if budget else None,
        "budget_loss": budget.loss if budget else None,
        "budget_limit": budget.limit if budget else None,
        "budget_unit": budget.unit if budget else None,
        "budget_passed": budget.passed if budget else None,
        "test_id": record.test_id,
    }


def records_csv(records: list[Record]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for record in records:
        writer.writerow(flat_row(record))
    return buffer.getvalue()
