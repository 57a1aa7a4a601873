"""The regression gate as CI uses it: save a baseline, run again with --compare/--fail-on, read the exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from energybench.harness import xdist as scaleout
from energybench.harness.options import SettingsError
from tests.test_plugin import FAST, saved_runs

GATE = ["benchmarks", "--metric", "accuracy,size", "--precision", "fp32,int8", "--max-samples", "100", *FAST]
DEGRADE_INT8 = """
import dataclasses
from energybench.measure import quality as measure
real = measure.quality
def degraded(prepared, metric, settings, *args, **kwargs):
    result = real(prepared, metric, settings, *args, **kwargs)
    if prepared.precision == "int8":
        result = dataclasses.replace(result, value=result.value - 0.02)
    return result
measure.quality = degraded
"""


def test_the_gate_passes_an_unchanged_run_and_fails_a_regression_with_exit_6(suite):
    first = suite.runpytest_subprocess(*GATE, "--save-baseline", "main")
    first.assert_outcomes(passed=4)
    first.stdout.fnmatch_lines(["energybench: baseline main saved to *reports/baselines/main.json"])

    same = suite.runpytest_subprocess(*GATE, "--compare", "main", "--fail-on", "accuracy:-0.5pp,size:+5%")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*energybench comparison with main*", "distilbert*int8*accuracy*SAME*"])

    suite.makeconftest(DEGRADE_INT8)  # a broken quantizer: int8 loses 2 more points
    worse = suite.runpytest_subprocess(
        *GATE, "--compare", "main", "--fail-on", "accuracy:-0.5pp", "--accuracy-budget", "int8=100"
    )
    worse.assert_outcomes(passed=4)  # every test passed on its own...
    assert worse.ret == 6  # ...but the session regressed against the baseline
    worse.stdout.fnmatch_lines(
        [
            "distilbert*int8*accuracy*WORSE -> FAIL accuracy:-0.5pp*",
            "ENERGYBENCH REGRESSION: distilbert int8 accuracy * breaks accuracy:-0.5pp*",
        ]
    )
    latest = sorted((suite.path / "reports" / "runs").iterdir())[-1]
    assert "**WORSE -> FAIL accuracy:-0.5pp**" in (latest / "comparison.md").read_text()
    assert len(saved_runs(suite)) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--compare", "nosuchrun"], "nosuchrun: no run folder, run id, baseline or 'latest'"),
        (["--compare", "latest"], "latest: there are no saved runs"),
        (["--fail-on", "latency:+10%"], "--fail-on needs --compare"),
        (["--compare", "latest", "--fail-on", "latency:10"], "not metric:<sign><number><unit>"),
        (["--save-baseline", "../main"], "no path separators"),
    ],
)
def test_bad_gate_options_stop_the_session_before_it_runs(suite, args, message):
    result = suite.runpytest_subprocess("benchmarks", *args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert not (suite.path / "reports" / "runs").exists()


def test_xdist_workers_merge_into_one_saved_run(suite):
    result = suite.runpytest_subprocess(*GATE, "-n", "2")
    result.assert_outcomes(passed=4)
    [run] = saved_runs(suite)
    # accuracy and size at fp32 and int8, and int8's behaviour against fp32 (flips, recovery)
    assert len(run["records"]) == 6 and set(run["machine"]["workers"]) == {"gw0", "gw1"}
    assert run["models"]["distilbert"]["kind"] == "embedded"


def test_blocks_are_refused_under_xdist_before_anything_runs(suite):
    """Blocks spread over workers would each save a record of their own blocks alone."""
    args = ["benchmarks", "--metric", "latency", "--precision", "fp32", *FAST, "--blocks", "3", "-n", "2"]
    result = suite.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-xdist with --blocks 3: the blocks of a timed test would be split*"])
    scaleout.check_blocks(2, 1, ("latency",))  # one block: allowed
    scaleout.check_blocks(2, 5, ("accuracy", "energy"))  # nothing timed: allowed
    scaleout.check_blocks(0, 5, ("latency",))  # no xdist: allowed


def test_each_worker_gets_its_own_gpu():
    gpus = scaleout.visible_gpus({}, lambda: 4)
    env: dict[str, str] = {}
    pinned = [scaleout.pin_worker(f"gw{i}", 4, gpus, env) for i in range(4)]
    assert pinned == ["0", "1", "2", "3"] and env["CUDA_VISIBLE_DEVICES"] == "3"


def test_an_existing_cuda_visible_devices_is_honoured():
    gpus = scaleout.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}, lambda: 8)
    assert [scaleout.gpu_for_worker(w, 2, gpus) for w in ("gw0", "gw1")] == ["2", "5"]


def test_more_workers_than_gpus_is_refused():
    with pytest.raises(SettingsError, match="3 workers but 2 GPU"):
        scaleout.gpu_for_worker("gw0", 3, ["0", "1"])


def test_cpu_workers_are_not_pinned_and_cpu_energy_in_parallel_is_refused():
    env: dict[str, str] = {}
    assert scaleout.pin_worker("gw1", 2, [], env) is None and env == {}
    with pytest.raises(SettingsError, match="energy on the CPU with 2 workers"):
        scaleout.check_cpu_energy(2, ("latency", "energy"), [], "auto")
    scaleout.check_cpu_energy(2, ("energy",), ["0", "1"], "auto")  # GPUs: one each, allowed


def test_pytest_benchmark_files_and_its_compare_command_keep_working(suite):
    import subprocess
    import sys

    args = ["benchmarks", "--metric", "latency", "--precision", "fp32", *FAST, "--benchmark-autosave"]
    suite.runpytest_subprocess(*args).assert_outcomes(passed=1)
    suite.runpytest_subprocess(*args).assert_outcomes(passed=1)
    saved = sorted((suite.path / ".benchmarks").rglob("*.json"))
    assert len(saved) == 2
    script = Path(sys.executable).parent / "pytest-benchmark"  # the console script next to this python
    compared = subprocess.run(
        [str(script), "compare", *map(str, saved)], capture_output=True, text=True, cwd=suite.path
    )
    assert compared.returncode == 0, compared.stderr
    assert "test_latency[distilbert-fp32]" in compared.stdout


def test_timing_in_blocks_spread_over_the_session_and_paired_budget_statistics(suite):
    args = ["benchmarks", "--metric", "accuracy,latency,throughput", "--precision", "fp32,int8"]
    args += ["--max-samples", "100", *FAST, "--rounds", "4", "--blocks", "2", "-v"]
    result = suite.runpytest_subprocess(*args)
    result.assert_outcomes(passed=10)  # 2 accuracy + 2 x 2 latency + 2 x 2 throughput blocks
    ran = [line.split(" ")[0] for line in result.outlines if "PASSED" in line and "::test_" in line]
    blocks = [int(name.split("-block")[1][0]) for name in ran if "-block" in name]
    assert blocks == sorted(blocks) and blocks.count(1) == 4  # every block 1 before any block 2
    [run] = saved_runs(suite)
    timed = [r for r in run["records"] if r["metric"] in ("latency", "throughput")]
    assert len(timed) == 4 and all([len(b) for b in r["timing"]["blocks_s"]] == [2, 2] for r in timed)
    assert all(r["timing"]["rounds"] == 4 and r["timing"]["between_block_cv"] is not None for r in timed)
    assert "2 blocks of 2 rounds, one per pass over the selection" in timed[0]["method"]
    [int8] = [r for r in run["records"] if (r["metric"], r["precision"]) == ("accuracy", "int8")]
    budget = int8["budget"]
    assert budget["lost"] >= 0 and 0 <= budget["mcnemar_p"] <= 1 and budget["loss_ci95"][0] <= budget["loss"]
    result.stdout.fnmatch_lines(["*distilbert*int8*accuracy*McNemar p=*"])
