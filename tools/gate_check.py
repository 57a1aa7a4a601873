"""Check: false alarms and detections of the regression gate, through both paths, on real runs.

    python tools/gate_check.py [--reruns 10] [--pairs 5] [--slowdowns 1.5,1.15] [--paths compare,ab]
                               [-- pytest args]   (default: benchmarks --metric latency,throughput
                                                   --precision fp32 --rounds 10)

--compare path: one baseline run saved as `main`, then --reruns unchanged reruns, each gated with
`--compare main --fail-on latency:+10%,throughput:-10%` (the default band, the history of the
runs before it included, as in CI), then --reruns runs per injected slowdown (each on a copy of
that history, so the slow runs do not widen the band of the next ones).

ab path: --reruns sessions of `energybench ab --pairs P` with the same interpreter on both sides
(A/A), then --reruns sessions per slowdown with the candidate slowed down.

A slowdown is a plugin (tools/gate_slowdown.py) that wraps the forward pass: after each call it
sleeps (factor - 1) x the call's own duration, so the candidate is factor x slower whatever the
machine's speed at that moment. Prints one line per session and the counts at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAIL_ON = "latency:+10%,throughput:-10%"
DEFAULT_ARGS = ["benchmarks", "--metric", "latency,throughput", "--precision", "fp32", "--rounds", "10"]
ALARMS = ("worse", "better")


def environment(slowdown: float | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "tools"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    if slowdown:
        env["ENERGYBENCH_GATE_SLOWDOWN"] = str(slowdown)
    return env


def pytest_run(args: list[str], reports: Path, slowdown: float | None, extra: list[str]) -> subprocess.CompletedProcess:
    plugin = ["-p", "gate_slowdown"] if slowdown else []
    command = [sys.executable, "-m", "pytest", *args, "--reports-dir", str(reports), "-p", "no:cacheprovider", *plugin]
    return subprocess.run(command + extra, cwd=ROOT, env=environment(slowdown), capture_output=True, text=True)


def verdicts_of(rows: list[dict]) -> dict[str, str]:
    return {f"{r['precision']}/{r['metric']}": r["verdict"] + (" FAIL" if r["failed"] else "") for r in rows}


def changes_of(rows: list[dict]) -> str:
    def one(row: dict) -> str:
        ci = row.get("ci95_pct")
        shown = f" CI [{ci[0]:+.0f}, {ci[1]:+.0f}]" if ci else ""
        return f"{row['metric']} {row['change_pct']:+.1f} %{shown}, band {row['band_pct']:.1f} % ({row['band']})"

    return "; ".join(one(r) for r in rows if r.get("change_pct") is not None)


def compare_path(args: argparse.Namespace, work: Path) -> dict[str, list[dict[str, str]]]:
    history = work / "history"
    first = pytest_run(args.pytest_args, history, None, ["--save-baseline", "main"])
    if first.returncode != 0:
        raise SystemExit(f"baseline run failed: {first.stdout[-2000:]}{first.stderr[-2000:]}")
    results: dict[str, list[dict[str, str]]] = {}
    for factor in factors(args):
        label = "A/A" if factor == 1.0 else f"{factor:g}x"
        for i in range(args.reruns):
            reports = history
            if factor != 1.0:
                reports = work / f"copy-{label}-{i}"
                shutil.copytree(history, reports)
            done = pytest_run(
                args.pytest_args,
                reports,
                factor if factor != 1.0 else None,
                ["--compare", "main", "--fail-on", FAIL_ON],
            )
            latest = sorted((reports / "runs").iterdir())[-1]
            rows = json.loads((latest / "comparison.json").read_text())["rows"]
            found = verdicts_of(rows)
            results.setdefault(label, []).append(found)
            print(f"compare {label} {i + 1}/{args.reruns}: exit {done.returncode} {found}", flush=True)
            print(
                "   bands: " + "; ".join(f"{r['metric']} {r['band_pct']:.1f} % {r['band']}" for r in rows), flush=True
            )
    return results


def slow_python(work: Path, factor: float) -> Path:
    """An executable that runs this interpreter with the slowdown plugin (a candidate side for `ab`)."""
    path = work / f"python-slow-{factor:g}"
    env = environment(factor)
    path.write_text(
        "#!/bin/sh\n"
        f"export ENERGYBENCH_GATE_SLOWDOWN={factor} PYTHONPATH='{env['PYTHONPATH']}'\n"
        f'exec "{sys.executable}" "$@" -p gate_slowdown\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def factors(args: argparse.Namespace) -> list[float]:
    return [*([] if args.skip_aa else [1.0]), *args.slowdowns]


def ab_path(args: argparse.Namespace, work: Path) -> dict[str, list[dict[str, str]]]:
    results: dict[str, list[dict[str, str]]] = {}
    for factor in factors(args):
        label = "A/A" if factor == 1.0 else f"{factor:g}x"
        candidate = sys.executable if factor == 1.0 else str(slow_python(work, factor))
        for i in range(args.reruns):
            reports = work / f"ab-{label}-{i}"
            command = [sys.executable, "-m", "energybench.cli", "ab", "--baseline", sys.executable]
            command += ["--candidate", candidate, "--pairs", str(args.pairs), "--fail-on", FAIL_ON]
            command += ["--reports-dir", str(reports), "--quiet", "--", *args.pytest_args]
            done = subprocess.run(command, cwd=ROOT, env=environment(None), capture_output=True, text=True)
            if done.returncode not in (0, 6):
                raise SystemExit(f"ab failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
            rows = json.loads((reports / "ab.json").read_text())["comparison"]["rows"]
            found = verdicts_of(rows)
            results.setdefault(label, []).append(found)
            print(f"ab {label} {i + 1}/{args.reruns}: exit {done.returncode} {found}", flush=True)
            print(f"   {changes_of(rows)}", flush=True)
    return results


def summarize(path: str, results: dict[str, list[dict[str, str]]]) -> None:
    for label, sessions in results.items():
        alarmed = sum(any(v.split()[0] in ALARMS for v in s.values()) for s in sessions)
        failed = sum(any(v.endswith("FAIL") for v in s.values()) for s in sessions)
        caught = sum(all(v.startswith("worse") for v in s.values()) for s in sessions)
        if label == "A/A":
            print(f"{path} A/A: {alarmed}/{len(sessions)} sessions with a worse/better verdict, {failed} gate failures")
        else:
            total = len(sessions)
            print(f"{path} {label}: caught (every row worse) {caught}/{total}, gate failed {failed}/{total}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reruns", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--slowdowns", type=lambda s: [float(x) for x in s.split(",") if x], default=[1.5, 1.15])
    parser.add_argument("--paths", default="compare,ab")
    parser.add_argument("--skip-aa", action="store_true", help="only the slowdowns (the A/A sessions measured apart)")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    args.pytest_args = args.pytest_args or DEFAULT_ARGS
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="energybench-gate-check-") as temp:
        results = {}
        if "compare" in args.paths:
            results["--compare"] = compare_path(args, Path(temp))
        if "ab" in args.paths:
            results["ab"] = ab_path(args, Path(temp))
    print(f"gate_check: {' '.join(args.pytest_args)}; reruns {args.reruns}, pairs {args.pairs}")
    for path, found in results.items():
        summarize(path, found)
    print(f"gate_check: {time.time() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
