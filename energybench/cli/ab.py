"""``energybench ab``: run two code versions in alternating fresh processes (ABBA) and judge the pairs.

A side is a Python interpreter, a virtual environment or an energybench checkout. Each run is
``<python> -m pytest <pytest args> --reports-dir <temp>`` in a fresh process; its saved run is
read back and paired with the other side's run of the same pair (energybench.results.ab).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from energybench.errors import EnergybenchError, UsageError

if TYPE_CHECKING:
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
    from energybench.results.ab import abba_order, selection_difference  # deferred: heavy

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


def cmd_ab(args: argparse.Namespace) -> int:
    """Baseline and candidate in alternating fresh processes (ABBA), then paired verdicts; exit 6 on a regression."""
    from energybench.results.ab import paired_comparison  # deferred: heavy
    from energybench.results.compare import REGRESSION_EXIT_STATUS, metrics_of, parse_fail_on, render  # deferred: heavy
    from energybench.results.store import write_file  # deferred: heavy

    parse_fail_on(args.fail_on, strict=False)  # a malformed limit stops before any side runs
    if args.pairs < 1:
        raise UsageError(f"--pairs {args.pairs}: give a whole number >= 1 (5 or more for a verdict)")
    if not args.pytest_args:
        raise UsageError(
            "ab: give the pytest arguments after --, e.g. energybench ab ... -- benchmarks --metric latency"
        )
    baseline, candidate = resolve_side("baseline", args.baseline), resolve_side("candidate", args.candidate)
    progress = (lambda line: print(line, file=sys.stderr)) if not args.quiet else (lambda line: None)
    runs_a, runs_b, order = run_pairs(baseline, candidate, args.pairs, args.pytest_args, progress)
    limits = parse_fail_on(args.fail_on, metrics_of(*runs_a, *runs_b))  # the runs' own metrics are known now
    comparison = paired_comparison(runs_a, runs_b, limits)
    comparison.run_a, comparison.run_b = f"baseline {args.baseline}", f"candidate {args.candidate}"
    args.reports_dir.mkdir(parents=True, exist_ok=True)
    summary = {"order": order, "pytest_args": args.pytest_args, "comparison": json.loads(render(comparison, "json"))}
    write_file(args.reports_dir / "ab.json", json.dumps(summary, indent=1) + "\n")
    write_file(args.reports_dir / "ab.md", render(comparison, "markdown") + f"\n\nABBA order: {' '.join(order)}\n")
    print(render(comparison, "table"))
    print(f"energybench ab: {args.pairs} pairs, ABBA order {' '.join(order)}; ab.json and ab.md in {args.reports_dir}")
    return REGRESSION_EXIT_STATUS if comparison.regressions else 0


def add_ab_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ab = sub.add_parser(
        "ab",
        parents=[common],
        help="A/B: baseline and candidate in alternating fresh processes (ABBA), paired verdicts",
    )
    side = "a Python executable, a virtual environment or an energybench checkout"
    ab.add_argument("--baseline", required=True, metavar="SIDE", help=f"side A: {side}")
    ab.add_argument("--candidate", required=True, metavar="SIDE", help=f"side B: {side}")
    ab.add_argument("--pairs", type=int, default=5, metavar="N", help="ABBA pairs (2 N processes) [5]")
    ab.add_argument("--fail-on", metavar="SPEC", help="e.g. latency:+10%%,throughput:-10%% (exit 6 on regression)")
    ab.add_argument("--quiet", action="store_true", help="no progress lines")
    ab.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS", help="what each side runs, after --")
    ab.set_defaults(func=cmd_ab)
