"""Check: the harness's latency (pytest-benchmark fixture) vs torch.utils.benchmark, same process.

    python tools/latency_agreement.py [--model distilbert] [--precision fp32] [--seq-len 128]

Runs `pytest benchmarks --metric latency` in this process, then times the same model at the
same precision on the same input with torch.utils.benchmark.Timer.blocked_autorange, and
prints both medians and their difference (target: within 3%).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pytest
import torch
import torch.utils.benchmark as tbench

ROOT = Path(__file__).resolve().parent.parent


class Capture:
    """A pytest plugin object that keeps the session's harness state for reuse after the run."""

    def pytest_sessionfinish(self, session):
        from energybench.plugin import bench_session

        self.bench = bench_session(session.config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="distilbert")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seq-len", default="128")
    parser.add_argument("--rounds", default="200")
    args = parser.parse_args()
    reports = Path(tempfile.mkdtemp(prefix="energybench-agreement-"))
    capture = Capture()
    code = pytest.main(
        [str(ROOT / "benchmarks"), "-q", "-p", "no:cacheprovider", "--model", args.model, "--precision",
         args.precision, "--metric", "latency", "--seq-len", args.seq_len, "--rounds", args.rounds,
         "--warmup-rounds", "20", "--reports-dir", str(reports), "--benchmark-disable-gc"],
        plugins=[capture],
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"pytest exited with {code}")
    run = json.loads(next(reports.glob("runs/*/run.json")).read_text())
    harness_s = run["records"][0]["value"]

    from energybench.suite import Bench

    bench = capture.bench
    case = next(iter(bench.cases("latency")))
    eb = Bench(bench, case, "agreement")
    run_once = eb.forward(batch_size=1)
    timer = tbench.Timer(stmt="run_once()", globals={"run_once": run_once}, num_threads=torch.get_num_threads())
    reference_s = timer.blocked_autorange(min_run_time=5.0).median
    diff = (harness_s / reference_s - 1) * 100
    print(f"model {args.model} {args.precision}, batch 1 x {args.seq_len} tokens, {torch.get_num_threads()} threads")
    print(f"harness (pytest-benchmark) median: {harness_s * 1e3:.3f} ms")
    print(f"torch.utils.benchmark median:      {reference_s * 1e3:.3f} ms")
    print(f"difference: {diff:+.2f} % (target within 3 %)")


if __name__ == "__main__":
    main()
