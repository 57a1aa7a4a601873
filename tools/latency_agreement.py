"""Check: the harness's latency (pytest-benchmark fixture) vs torch.utils.benchmark, same process.

    python tools/latency_agreement.py [--model distilbert] [--precision fp32] [--pairs 7]

Alternates, in this one process, `pytest benchmarks --metric latency` (the harness) and
torch.utils.benchmark.Timer.blocked_autorange on the same model, precision and input. On a
shared VM the machine's speed drifts by tens of percent over seconds, so each harness median
is compared with the reference taken right after it, and the median of those paired ratios is
reported (target: within 3 %), with their spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import pytest
import torch
import torch.utils.benchmark as tbench

ROOT = Path(__file__).resolve().parent.parent


class Capture:
    """A pytest plugin object that keeps the session's harness state for reuse after the run."""

    def pytest_sessionfinish(self, session):
        from energybench.harness.fixtures import bench_session

        self.bench = bench_session(session.config)


def harness_median(args: argparse.Namespace) -> tuple[float, object]:
    reports = Path(tempfile.mkdtemp(prefix="energybench-agreement-"))
    capture = Capture()
    code = pytest.main(
        [
            str(ROOT / "benchmarks"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--model",
            args.model,
            "--precision",
            args.precision,
            "--metric",
            "latency",
            "--seq-len",
            args.seq_len,
            "--rounds",
            args.rounds,
            "--warmup-rounds",
            "20",
            "--reports-dir",
            str(reports),
        ],
        plugins=[capture],
    )
    if code != 0:
        raise SystemExit(f"pytest exited with {code}")
    run = json.loads(next(reports.glob("runs/*/run.json")).read_text())
    return run["records"][0]["value"], capture.bench


def reference_median(bench: object) -> float:
    from energybench.harness.case import Case
    from energybench.measure import workloads

    eb = Case(bench, bench.cases("latency")[0], "agreement")
    run_once = workloads.forward_call(eb.prepared.model, eb.input_batch(1), eb.device)  # what time_forward times
    timer = tbench.Timer(stmt="run_once()", globals={"run_once": run_once}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=2.0).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="distilbert")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seq-len", default="128")
    parser.add_argument("--rounds", default="300")
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    ratios = []
    for pair in range(args.pairs):
        harness_s, bench = harness_median(args)
        reference_s = reference_median(bench)
        ratios.append(harness_s / reference_s)
        print(f"pair {pair + 1}: harness {harness_s * 1e3:.3f} ms, torch.utils.benchmark {reference_s * 1e3:.3f} ms")
    diff = (statistics.median(ratios) - 1) * 100
    spread = (max(ratios) - min(ratios)) * 100
    print(f"model {args.model} {args.precision}, batch 1 x {args.seq_len} tokens, {torch.get_num_threads()} threads")
    print(f"median paired difference: {diff:+.2f} % (target within 3 %); spread of pairs {spread:.1f} points")


if __name__ == "__main__":
    main()
