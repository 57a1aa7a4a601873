"""A/B: ABBA order, paired ratio verdicts and CIs, and `energybench ab` driven with fake sides."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from energybench import cli
from energybench.catalog import METRICS
from energybench.results.ab import abba_order, paired_verdict

FAKE_SIDE = """#!{python}
# A fake interpreter: `-m pytest ... --reports-dir DIR` saves one run whose latency is {scale} x 10 ms
import sys
from pathlib import Path

from energybench.results import store
from energybench.results.schema import Record, Run, TimingStats

args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write("{label}")
if {fail}:
    print("FAILED benchmarks/test_speed.py::test_latency[distilbert-fp32] - RuntimeError: boom")
    print("1 failed in 0.10s")
    sys.exit(1)
reports = Path(args[args.index("--reports-dir") + 1])
seed = len(open({log!r}).read())
rng = __import__("numpy").random.default_rng(seed)
level = {scale} * 0.010 * rng.lognormal(0.0, {drift})  # this process's machine speed
timing = TimingStats.from_blocks([level * rng.lognormal(0.0, 0.01, 4) for _ in range(3)])
source = {{"kind": "embedded", "checkpoint": "embedded:distilbert", "revision": None}}
records = [
    Record("distilbert", "{precision}", "latency", timing.median_s, "s", method="m", timing=timing,
           shape={{"batch_size": 1, "seq_len": 32}}, source=source, details={{"implementation": "eager"}}),
    Record("distilbert", "{precision}", "size", 1000.0, "bytes", method="m", shape={{}}, source=source),
]
machine = {{"fingerprint": "f00d"}}
store.save_run(Run(store.new_run_id(), "t0", "t1", "0", machine, {{}}, {{}}, {{}}, records), reports)
print("2 passed in 0.10s")
"""


def fake_side(tmp_path, label, scale=1.0, drift=0.02, fail=False, precision="fp32"):
    path = tmp_path / f"python-{label}"
    log = str(tmp_path / "order.log")
    text = FAKE_SIDE.format(
        python=sys.executable, scale=scale, drift=drift, fail=fail, precision=precision, log=log, label=label
    )
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def ab(tmp_path, baseline, candidate, pairs=5, fail_on="latency:+10%"):
    reports = tmp_path / "reports"
    argv = ["ab", "--baseline", baseline, "--candidate", candidate, "--pairs", str(pairs), "--quiet"]
    argv += ["--reports-dir", str(reports), "--fail-on", fail_on, "--", "benchmarks", "--metric", "latency,size"]
    return cli.main(argv), reports


def test_abba_order_alternates_which_side_runs_first():
    assert abba_order(3) == [(0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B")]


def test_paired_ratios_give_a_ci_of_the_change_that_covers_the_truth():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        drift = rng.lognormal(0.0, 0.2, 8)  # the machine's speed, shared by the two runs of a pair
        a, b = 0.01 * drift * rng.lognormal(0, 0.01, 8), 0.0115 * drift * rng.lognormal(0, 0.01, 8)
        found = paired_verdict(METRICS["latency"], list(a), list(b))
        assert found.verdict == "worse" and found.band == "A/B pairs" and found.p_value < 0.01
        covered += found.ci95_pct[0] < 15 < found.ci95_pct[1]
    assert 180 <= covered <= 200, covered  # a 95 % CI
    throughput = paired_verdict(METRICS["throughput"], list(1 / a), list(1 / b))
    assert throughput.verdict == "worse" and throughput.change_pct == pytest.approx(100 * (1 - 1 / 1.15), abs=2)


def test_a_a_pairs_raise_at_most_1pct_false_alarms():
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(500):
        drift = rng.lognormal(0.0, 0.2, 5)
        a, b = drift * rng.lognormal(0, 0.02, 5), drift * rng.lognormal(0, 0.02, 5)
        alarms += paired_verdict(METRICS["latency"], list(a), list(b)).verdict in ("worse", "better")
    assert alarms <= 5, alarms


def test_one_pair_is_inconclusive_and_says_how_many_would_decide():
    found = paired_verdict(METRICS["latency"], [1.0], [1.3])
    assert found.verdict == "inconclusive" and "at least 2 pairs needed" in found.basis


@pytest.mark.slow  # a model build, a browser or a fresh process
def test_ab_runs_both_sides_in_abba_order_and_gates_a_regression(tmp_path, capsys):
    code, reports = ab(tmp_path, fake_side(tmp_path, "A"), fake_side(tmp_path, "B", scale=1.3), pairs=4)
    out = capsys.readouterr().out
    assert (tmp_path / "order.log").read_text() == "ABBAABBA"
    assert code == 6 and "WORSE -> FAIL latency:+10%" in out and "paired t on 4 ABBA pairs" in out
    saved = json.loads((reports / "ab.json").read_text())
    rows = {r["metric"]: r for r in saved["comparison"]["rows"]}
    assert rows["latency"]["band"] == "A/B pairs" and rows["latency"]["ci95_pct"][0] > 10
    assert rows["size"]["verdict"] == "same" and saved["order"] == ["1A", "1B", "2B", "2A", "3A", "3B", "4B", "4A"]
    assert "ABBA order" in (reports / "ab.md").read_text()


@pytest.mark.slow  # a model build, a browser or a fresh process
def test_ab_of_the_same_code_passes(tmp_path, capsys):
    code, _ = ab(tmp_path, fake_side(tmp_path, "A"), fake_side(tmp_path, "B"))
    assert code == 0 and "WORSE" not in capsys.readouterr().out


def test_a_failing_side_is_one_line_and_no_verdict(tmp_path, capsys):
    code, reports = ab(tmp_path, fake_side(tmp_path, "A"), fake_side(tmp_path, "B", fail=True))
    out, err = capsys.readouterr()
    assert code == 2 and not (reports / "ab.json").exists() and "WORSE" not in out
    [line] = err.strip().splitlines()
    assert line.startswith("energybench ab: error: candidate side (") and "failed in pair 1: pytest exit 1" in line
    assert "FAILED benchmarks/test_speed.py::test_latency" in line


def test_sides_with_different_selections_are_not_comparable(tmp_path, capsys):
    code, _ = ab(tmp_path, fake_side(tmp_path, "A"), fake_side(tmp_path, "B", precision="int8"), pairs=1)
    [line] = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "not comparable: different test selections (baseline only: distilbert/fp32" in line


def test_a_side_that_is_not_python_is_one_clear_error(tmp_path, capsys):
    code, _ = ab(tmp_path, str(tmp_path / "nowhere"), sys.executable)
    err = capsys.readouterr().err
    assert code == 2 and "--baseline" in err and "not a Python executable, a virtual environment" in err
