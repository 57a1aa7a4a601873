"""A verdict never claims more than its data, through ``energybench compare`` on runs the suite made.

- ``same`` only when the CI of the change lies inside the limit on both sides; otherwise
  ``inconclusive`` with the smallest change the comparison could detect;
- the A and B columns and the change describe one statistic;
- a record whose value disagrees with its own blocks (an edited file) is named and left out.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from energybench.cli import main
from energybench.results.schema import Run, TimingStats

LATENCY = [
    *("benchmarks", "--metric", "latency", "--precision", "fp32", "--rounds", "20", "--blocks", "5"),
    *("--warmup-rounds", "1", "--seq-len", "32", "-p", "no:cacheprovider"),
]


def two_runs(suite) -> tuple[Path, Path]:
    """Two runs of the same latency tests by the suite, oldest first."""
    for _ in range(2):
        suite.runpytest_subprocess(*LATENCY).assert_outcomes(passed=5)
    first, second = sorted((suite.path / "reports" / "runs").iterdir())
    return first, second


def compare(suite, *argv: str, capsys) -> tuple[int, str]:
    capsys.readouterr()  # what the suite's runs printed
    status = main(["compare", *argv, "--reports-dir", str(suite.path / "reports")])
    return status, capsys.readouterr().out


def latency_row(text: str) -> dict:
    [row] = [row for row in json.loads(text)["rows"] if row["metric"] == "latency"]
    return row


def scaled_copy(run_dir: Path, factor: float, index: int) -> None:
    """The run as if the machine had been ``factor`` times slower that day: every round scaled,
    so each record stays intact (its value the median of its rounds)."""
    run = Run.from_dict(json.loads((run_dir / "run.json").read_text()))
    records = []
    for record in run.records:
        if record.timing is not None and record.unit == "s":
            timing = TimingStats.from_blocks([[x * factor for x in block] for block in record.timing.blocks_s])
            record = dataclasses.replace(record, value=timing.median_s, timing=timing)
        records.append(record)
    copy = dataclasses.replace(
        run, run_id=f"{run.run_id}-h{index}", started_at=f"2000-01-0{index + 1}", records=records
    )
    folder = run_dir.parent / copy.run_id
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(copy.to_dict()))


def test_same_needs_the_ci_inside_the_limit_else_inconclusive_with_what_could_be_detected(suite, capsys):
    """A drifting history widens the noise band past 100 %; a band that wide must not turn a CI
    wider than the user's limit into ``same``."""
    a, b = two_runs(suite)
    for index, factor in enumerate((0.1, 10.0, 6.0)):
        scaled_copy(a, factor, index)
    status, text = compare(suite, a.name, b.name, "--fail-on", "latency:+0.1%", "--format", "json", capsys=capsys)
    row = latency_row(text)
    low, high = row["ci95_pct"]
    assert status == 0 and row["band"].startswith("history of") and row["band_pct"] > 300
    assert -row["band_pct"] <= low and high <= row["band_pct"]  # inside the band: what once read "same"
    assert not (-0.1 <= low and high <= 0.1)  # real timings: the CI is wider than ±0.1 %
    assert row["verdict"] == "inconclusive", row
    assert row["detectable_pct"] == (high - low) / 2 and row["detectable_pct"] > 0.1
    status, table = compare(suite, a.name, b.name, "--fail-on", "latency:+0.1%", capsys=capsys)
    line = next(line for line in table.splitlines() if " latency " in line)
    assert "INCONCLUSIVE" in line and "smallest change this comparison could detect is about" in line
    assert "SAME" not in line


def test_the_a_and_b_columns_are_the_statistic_the_change_is_of(suite, capsys):
    a, b = two_runs(suite)
    status, text = compare(suite, a.name, b.name, "--format", "json", capsys=capsys)
    row = latency_row(text)
    blocks = {}
    for side, folder in (("a", a), ("b", b)):
        [record] = [r for r in json.loads((folder / "run.json").read_text())["records"] if r["metric"] == "latency"]
        medians = [float(np.median(block)) for block in record["timing"]["blocks_s"]]
        blocks[side] = math.exp(float(np.mean(np.log(medians))))  # the geometric mean of the block medians
        assert not math.isclose(blocks[side], record["value"], rel_tol=1e-9)  # not the pooled median
    assert math.isclose(row["value_a"], blocks["a"], rel_tol=1e-9)
    assert math.isclose(row["value_b"], blocks["b"], rel_tol=1e-9)
    assert math.isclose(row["change_pct"], (row["value_b"] / row["value_a"] - 1.0) * 100.0, rel_tol=1e-6)
    assert "A and B: their geometric means" in row["basis"]


def test_a_record_that_disagrees_with_its_own_blocks_is_named_and_left_out(suite, capsys):
    a, b = two_runs(suite)
    saved = json.loads((b / "run.json").read_text())
    for record in saved["records"]:
        if record["metric"] == "latency":
            record["value"] *= 2  # edited by hand: the rounds still say otherwise
    (b / "run.json").write_text(json.dumps(saved))
    status, table = compare(suite, a.name, b.name, "--fail-on", "latency:+10%", capsys=capsys)
    line = next(line for line in table.splitlines() if " latency " in line)
    assert status == 0  # never gated on a damaged record
    assert "NOT COMPARABLE" in line and "SAME" not in line
    assert "run B's latency record disagrees with its own rounds (value" in line and "left out" in line
