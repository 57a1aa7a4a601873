"""The run history on disk: each run is a folder ``<root>/runs/<run_id>/`` written atomically.

A run folder holds ``run.json`` (the source of truth) and ``records.csv`` (an export), plus
``layers.csv`` and ``correlations.csv`` when the run has a layer study. It is
assembled under a hidden temporary name in the same directory and renamed into place, so a
crash or kill never leaves a half-written run visible, and concurrent writers never collide
(run ids carry a random suffix; a rename onto an existing folder fails instead of merging).

Named baselines are copies of a run's ``run.json`` at ``<root>/baselines/<name>.json``, replaced
atomically, so a baseline outlives the pruning of old runs and travels as one file between CI jobs.
A *run reference* is a run folder or file path, a run id, ``latest``, or a baseline name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from energybench.errors import UsageError
from energybench.results.answer import JOULES_PER_WH, PER_THOUSAND
from energybench.results.schema import Record, Run, SchemaError
from energybench.results.tables import layer_csvs

RUN_FILE = "run.json"
BASELINES = "baselines"
BASELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RUN_ID = BASELINE_NAME  # a run id becomes a folder name: the same safe-name rule (no separators, no leading dot)
STALE_STAGING_S = 3600
CSV_FILE = "records.csv"
CSV_COLUMNS = (
    "model",
    "precision",
    "metric",
    "value",
    "unit",
    "status",
    "reason",
    "method",
    "device",
    "batch_size",
    "seq_len",
    "source_kind",
    "checkpoint",
    "revision",
    "data_file",
    "data_sha256",
    "median_s",
    "iqr_s",
    "p90_s",
    "p99_s",
    "rounds",
    "unstable",
    "budget_baseline",
    "budget_loss",
    "budget_limit",
    "budget_unit",
    "budget_passed",
    "test_id",
    "backend",
    "basis",
    "energy_j_per_1000",  # derived: J/item x 1000, the unit of Luccioni et al. (2023), "Power Hungry Processing"
    "energy_wh_per_1000",
)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def runs_dir(root: Path) -> Path:
    return Path(root) / "runs"


def save_run(run: Run, root: Path) -> Path:
    """Write the run folder atomically and return its final path."""
    check_run_id(run.run_id)
    parent = runs_dir(root)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(parent)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{run.run_id}-", dir=parent))
    try:
        staging.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700: the history is shared (CI runners)
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


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_run_id(run_id: Any) -> str:
    """A run id read from a file or the command line, checked before it becomes a folder name."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise UsageError(
            f"run id {run_id!r}: use letters, digits, '.', '_' or '-' (no path separators), "
            "starting with a letter or digit, e.g. 20250101T120000Z-a1b2c3"
        )
    return run_id


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
        "unstable": True if record.unstable else (False if timing or "unstable" in record.details else None),
        "budget_baseline": budget.baseline_value if budget else None,
        "budget_loss": budget.loss if budget else None,
        "budget_limit": budget.limit if budget else None,
        "budget_unit": budget.unit if budget else None,
        "budget_passed": budget.passed if budget else None,
        "test_id": record.test_id,
        "backend": record.backend,
        "basis": record.basis,
        **per_thousand(record),
    }


def per_thousand(record: Record) -> dict[str, float | None]:
    """Energy per 1,000 inferences (J and Wh), derived from an ``energy`` record's J/item."""
    if record.metric != "energy" or record.value is None:
        return {"energy_j_per_1000": None, "energy_wh_per_1000": None}
    joules = record.value * PER_THOUSAND
    return {"energy_j_per_1000": joules, "energy_wh_per_1000": joules / JOULES_PER_WH}


def records_csv(records: list[Record]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for record in records:
        writer.writerow(flat_row(record))
    return buffer.getvalue()


def remove_stale_staging(parent: Path) -> None:
    """Staging folders of saves killed mid-way (kill -9) are invisible; drop them once they are old."""
    now = time.time()
    for path in parent.glob(".tmp-*"):
        try:
            if now - path.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


class RunNotFound(UsageError, LookupError):
    """A run reference that names no run; the message says what exists."""


def load_runs(root: Path) -> tuple[list[Run], list[str]]:
    """Every readable run, oldest first, and one line per file skipped (corrupt, newer schema...)."""
    runs, skipped = [], []
    for path in list_runs(root):
        try:
            runs.append(load_run(path))
        except SchemaError as error:
            skipped.append(f"skipped {error}")
    return runs, skipped


def resolve_ref(ref: str, root: Path) -> Path:
    """The run.json (or run folder) a reference names: a path, a run id, ``latest`` or a baseline name."""
    root = Path(root)
    if ref == "latest":
        return latest_complete_run(root)
    candidates = [Path(ref), runs_dir(root) / ref]
    if BASELINE_NAME.match(ref):
        candidates.append(baseline_path(root, ref))
    for candidate in candidates:
        if (candidate / RUN_FILE).is_file() or candidate.is_file():
            return candidate
    if Path(ref).is_dir():
        raise RunNotFound(f"{ref}: not a run (no {RUN_FILE}); runs live under <reports>/runs/<run_id>/")
    raise RunNotFound(
        f"{ref}: no run folder, run id, baseline or 'latest' by that name under {root}; "
        f"`energybench list` and `energybench baseline list` show what exists"
    )


def latest_complete_run(root: Path) -> Path:
    """The newest readable run that is not partial: an interrupted session never feeds ``latest``."""
    passed = []
    for path in reversed(list_runs(root)):
        try:
            run = load_run(path)
        except SchemaError:
            passed.append(f"{path.name} (unreadable)")
            continue
        if not run.partial:
            return path
        passed.append(f"{path.name} (partial: {run.partial_reason})")
    if not passed:
        raise RunNotFound(f"latest: there are no saved runs under {runs_dir(root)}; run the suite once first")
    raise RunNotFound(
        f"latest: no complete run under {runs_dir(root)}, passed over {', '.join(passed)}; "
        "run the whole suite once (a partial run is never 'latest'), or name a run id"
    )


def check_baseline_name(name: str) -> str:
    if not BASELINE_NAME.match(name):
        raise UsageError(
            f"baseline name {name!r}: use letters, digits, '.', '_' or '-' (no path separators), "
            "starting with a letter or digit, e.g. main or release-1.2"
        )
    return name


def baseline_path(root: Path, name: str) -> Path:
    return Path(root) / BASELINES / f"{check_baseline_name(name)}.json"


def save_baseline(run_path: Path, root: Path, name: str) -> Path:
    """Copy a run's run.json to the named baseline, replacing any previous one atomically."""
    target = baseline_path(root, name)
    run = load_run(run_path)  # refuse to promote something unreadable
    if run.partial:
        raise UsageError(
            f"baseline {name}: run {run.run_id} is partial ({run.partial_reason}); "
            "a baseline must be a complete run: promote another with --run"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=f".tmp-{name}-", delete=False) as handle:
        staging = Path(handle.name)
    try:
        staging.chmod(0o666 & ~current_umask())  # NamedTemporaryFile makes 0600
        write_file(staging, json.dumps(run.to_dict(), indent=1, sort_keys=True))
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return target


def list_baselines(root: Path) -> list[Path]:
    folder = Path(root) / BASELINES
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []


def delete_baseline(root: Path, name: str) -> Path:
    path = baseline_path(root, name)
    if not path.is_file():
        known = ", ".join(p.stem for p in list_baselines(root)) or "none"
        raise RunNotFound(f"baseline {name!r} does not exist under {path.parent}; existing baselines: {known}")
    path.unlink()
    return path


def import_runs(sources: list[Path], root: Path) -> tuple[list[Path], list[str]]:
    """Merge runs from other histories (e.g. CI artifacts of several runners) into this one.

    Each source is a run folder or a reports folder holding ``runs/``. Every run is read and
    checked before it is saved again under its own run id; one already present is skipped.
    """
    imported, notes = [], []
    for source in sources:
        for path in run_folders_in(Path(source)):
            try:
                run = load_run(path)
            except SchemaError as error:
                notes.append(f"skipped {error}")
                continue
            try:
                check_run_id(run.run_id)
            except UsageError as error:
                notes.append(f"skipped {path}: {error}")
                continue
            if (runs_dir(root) / run.run_id).exists():
                notes.append(f"skipped {path}: run {run.run_id} is already in {runs_dir(root)}")
                continue
            imported.append(save_run(run, root))
    return imported, notes


def shard_run(ref: Path, root: Path) -> Path:
    """One runner's run: a run folder or file, a run id or baseline under ``root``, or a reports
    folder (a CI artifact) that holds exactly one run."""
    if runs_dir(ref).is_dir() and not (ref / RUN_FILE).is_file():
        found = list_runs(ref)
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise RunNotFound(f"{ref}: a reports folder with {len(found)} runs ({names}); name the run folder to merge")
        return found[0]
    return resolve_ref(str(ref), root)


def run_folders_in(source: Path) -> list[Path]:
    if (source / RUN_FILE).is_file():
        return [source]
    if runs_dir(source).is_dir():
        return list_runs(source)
    raise RunNotFound(f"{source}: neither a run folder (with {RUN_FILE}) nor a reports folder (with runs/)")
