"""``energybench ab``: run two code versions in alternating fresh processes (ABBA) and judge the pairs.

A side is a Python interpreter, a virtual environment or an energybench checkout. Each run is
``<python> -m pytest <pytest args> --reports-dir <temp>`` in a fresh process; its saved run is
read back and paired with the other side's run of the same pair (energybench.results.ab).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from energybench.errors import EnergybenchError, UsageError
from energybench.results.ab import abba_order, selection_difference
from energybench.results.schema import Run


class SideFailed(EnergybenchError):
    """One side could not start or failed its tests: no verdict."""


class NotComparable(EnergybenchError):
    """The two sides ran different selections: no verdict."""


@dataclass(frozen=True)
class Side:
    name: str  # baseline / candidate
    spec: str  # as given
    python: str
    cwd: Path
    pythonpath: Path | None = None  # a checkout: its package goes first on the path

    def describe(self) -> str:
        return f"{self.name} side ({self.spec})"


def venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def resolve_side(name: str, spec: str) -> Side:
    """A Python executable, a virtual environment (its bin/python), or a checkout: run in its folder
    (its benchmarks and pyproject), its package first on the path, with its .venv if it has one."""
    path = Path(spec).expanduser()
    if path.is_dir() and venv_python(path).is_file():
        return Side(name, spec, str(venv_python(path)), Path.cwd())
    if path.is_dir() and (path / "energybench" / "__init__.py").is_file():
        own = venv_python(path / ".venv")
        python = str(own) if own.is_file() else sys.executable
        return Side(name, spec, python, path.resolve(), path.resolve())
    found = str(path) if path.is_file() and os.access(path, os.X_OK) else shutil.which(spec)
    if found:
        return Side(name, spec, found, Path.cwd())
    raise UsageError(
        f"--{name} {spec!r}: not a Python executable, a virtual environment or an energybench checkout; "
        "give e.g. /path/to/venv, /path/to/venv/bin/python or a git worktree of energybench"
    )


def run_side(side: Side, pytest_args: list[str], reports: Path, pair: int) -> Run:
    """One fresh process of one side; its saved run, or SideFailed with one line saying why."""
    from energybench.results.store import load_runs  # deferred: heavy

    env = dict(os.environ)
    if side.pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(side.pythonpath), env.get("PYTHONPATH")) if p)
    command = [side.python, "-m", "pytest", *pytest_args, "--reports-dir", str(reports), "-p", "no:cacheprovider"]
    try:
        done = subprocess.run(command, cwd=side.cwd, env=env, capture_output=True, text=True, check=False)
    except OSError as error:
        raise SideFailed(f"{side.describe()} did not start: {error}") from None
    if done.returncode != 0:
        raise SideFailed(
            f"{side.describe()} failed in pair {pair + 1}: pytest exit {done.returncode}: {last_line(done)}"
        )
    runs, _ = load_runs(reports)
    if len(runs) != 1:
        raise SideFailed(f"{side.describe()} saved {len(runs)} runs in pair {pair + 1}, not 1 (was --no-save given?)")
    return runs[0]


def last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "E ", "FAILED"))]
    return (errors or lines or ["no output"])[-1]


def run_pairs(
    baseline: Side, candidate: Side, pairs: int, pytest_args: list[str], progress=print
) -> tuple[list[Run], list[Run], list[str]]:
    """Both sides in ABBA order, each in a fresh process; the runs of A and of B, pair by pair."""
    sides = {"A": baseline, "B": candidate}
    found: dict[str, list[Run]] = {"A": [], "B": []}
    order = []
    with tempfile.TemporaryDirectory(prefix="energybench-ab-") as temp:
        for step, (pair, label) in enumerate(abba_order(pairs)):
            side = sides[label]
            progress(f"energybench ab: pair {pair + 1}/{pairs}: {side.name}")
            found[label].append(run_side(side, pytest_args, Path(temp) / f"{step:03d}-{label}", pair))
            order.append(f"{pair + 1}{label}")
    why = selection_difference(found["A"], found["B"])
    if why:
        raise NotComparable(f"not comparable: {why}")
    return found["A"], found["B"], order
