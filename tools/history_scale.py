"""Check: ``energybench list``, ``history`` and ``compare`` over 1,000 saved runs take <= 2 s each.

    python tools/history_scale.py [--source RUN] [--counts 10,100,1000] [--repeat 3] [--keep DIR]

The history is made of COPIES OF ONE REAL SAVED RUN (``--source``, by default the H200 speed run
in docs/gpu-runs/): each copy is loaded and saved through energybench's own schema (so every file
is a valid run of the current schema), with a new run id, a start time one hour after the last, a
new random commit id, and every measured value (and its timed rounds) scaled by one random factor
(log-normal, 3 %) per record; deterministic metrics (accuracy, perplexity, size) keep their value.
The runs are synthetic in their values, real in their shape: the same records, details and size.

Each command runs as a user runs it (a fresh ``python -m energybench.cli`` process), REPEAT times:
the first with the index beside the runs deleted (``cold``: it is rebuilt from every run.json, as
after a fresh download of the history), the median of the others ``warm`` (the index is checked
against every run.json and read). Prints one Markdown table row per count.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from energybench.catalog import METRICS
from energybench.results.index import index_path
from energybench.results.schema import Record, Run, TimingStats
from energybench.results.store import list_runs, load_run, save_run

DEFAULT_SOURCE = Path(__file__).resolve().parent.parent / "docs/gpu-runs/2026-11-26-h200/speed-run.json"
SPREAD = 0.03


def scaled(record: Record, rng: random.Random) -> Record:
    """The record with its value and rounds scaled by one random factor (not deterministic metrics)."""
    known = METRICS.get(record.metric)
    if record.value is None or (known is not None and known.deterministic):
        return record
    factor = math.exp(rng.gauss(0.0, SPREAD))
    timing = record.timing
    if timing is not None:
        timing = TimingStats.from_blocks([[x * factor for x in block] for block in timing.blocks_s])
    value = record.value * (1 / factor if known is not None and known.higher_is_better else factor)
    return dataclasses.replace(record, value=value, timing=timing)


def copy_of(source: Run, index: int, start: datetime, rng: random.Random) -> Run:
    started = start + timedelta(hours=index)
    duration = datetime.fromisoformat(source.finished_at) - datetime.fromisoformat(source.started_at)
    commit = {**source.commit, "id": secrets.token_hex(20), "dirty": False}
    return dataclasses.replace(
        source,
        run_id=started.strftime("%Y%m%dT%H%M%SZ") + f"-copy{index:05d}",
        started_at=started.isoformat(timespec="seconds"),
        finished_at=(started + duration).isoformat(timespec="seconds"),
        commit=commit,
        records=[scaled(r, rng) for r in source.records],
    )


def grow(root: Path, source: Run, total: int, rng: random.Random) -> None:
    """Add copies until ``root`` holds ``total`` runs."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for index in range(len(list_runs(root)), total):
        save_run(copy_of(source, index, start, rng), root)


def timed(command: list[str], code: Path | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    began = time.perf_counter()
    where = {"env": env, "cwd": code} if code else {}  # python -m puts the working folder first on the path
    done = subprocess.run([sys.executable, "-m", "energybench.cli", *command], capture_output=True, text=True, **where)
    seconds = time.perf_counter() - began
    if done.returncode not in (0, 6):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return seconds


def commands(root: Path, source: Run) -> dict[str, list[str]]:
    runs = list_runs(root)
    first = next(r for r in source.records if r.metric == "latency") if source.records else None
    scope = ["--model", first.model, "--precision", first.precision] if first else []
    where = ["--reports-dir", str(root)]
    return {
        "list": ["list", *where],
        "history": ["history", "--metric", "latency", *scope, *where],
        "compare": ["compare", runs[0].name, runs[-1].name, *where],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the real saved run to copy")
    parser.add_argument("--counts", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="make the runs here (and keep them) instead of a temporary folder")
    parser.add_argument("--code", type=Path, help="time the energybench of this checkout (e.g. one without the index)")
    args = parser.parse_args()
    source, rng = load_run(args.source), random.Random(args.seed)
    print(f"copies of one real run: {args.source} ({len(source.records)} records), values varied by {SPREAD:.0%}")
    print("| runs | list cold / warm (s) | history cold / warm (s) | compare cold / warm (s) |")
    print("| ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        for count in (int(n) for n in args.counts.split(",")):
            grow(root, source, count, rng)
            cells = []
            for command in commands(root, source).values():
                index_path(root).unlink(missing_ok=True)  # cold: the index is rebuilt from every run.json
                seconds = [timed(command, args.code) for _ in range(max(args.repeat, 2))]
                cells.append(f"{seconds[0]:.2f} / {statistics.median(seconds[1:]):.2f}")
            print(f"| {count} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
