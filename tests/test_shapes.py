"""Shape sweeps: --batch-size and --seq-len lists, a test and a record per shape, compare by shape."""

from __future__ import annotations

import dataclasses
import json

import pytest

from energybench.harness.options import SettingsError, parse
from energybench.harness.session import BenchSession
from energybench.results import ab
from energybench.results.compare import compare_runs, render
from tests.test_compare import SHAPE, run, single

FAST = [*("--rounds", "2", "--blocks", "1", "--warmup-rounds", "1", "--max-samples", "40"), *("-p", "no:cacheprovider")]


@pytest.mark.parametrize("given", ["0", "8,0", "8,,16", "x", "1.5", "-8", "8;16"])
@pytest.mark.parametrize("option", ["batch_size", "seq_len"])
def test_a_bad_shape_list_is_one_line_with_what_is_accepted(tmp_path, option, given):
    with pytest.raises(SettingsError) as error:
        parse({option: given}, tmp_path)
    name = "--" + option.replace("_", "-")
    assert str(error.value) == (
        f"{name}: {given!r} is not a list of positive integers; give whole numbers >= 1, comma-separated, e.g. 1,8,32"
    )


def test_shape_lists_keep_their_order_and_drop_repeats(tmp_path):
    settings = parse({"batch_size": "8, 1,8", "seq_len": "128,32"}, tmp_path)
    assert settings.batch_sizes == (8, 1) and settings.seq_lens == (128, 32)
    assert (settings.batch_size, settings.seq_len) == (8, 128)  # evaluation and the layer study: the first shape
    assert parse({}, tmp_path).batch_sizes == () and parse({}, tmp_path).batch_size == 32
    assert parse({"batch_size": "1,32,8"}, tmp_path).batch_size == 32  # quality and the layer study: the largest


def case_ids(tmp_path, metric, **raw):
    return [case.id for case in BenchSession(parse({"precision": "fp32", **raw}, tmp_path), tmp_path).cases(metric)]


def test_default_ids_are_unchanged_and_a_sweep_adds_the_shape(tmp_path):
    assert case_ids(tmp_path, "latency") == [f"distilbert-fp32-block{k}of5" for k in range(1, 6)]
    assert case_ids(tmp_path, "throughput", blocks="1", rounds="1") == ["distilbert-fp32"]
    assert case_ids(tmp_path, "memory", batch_size="1,8", seq_len="32") == [
        "distilbert-fp32-b1x32",
        "distilbert-fp32-b8x32",
    ]
    assert case_ids(tmp_path, "size", batch_size="1,8", seq_len="32") == ["distilbert-fp32"]  # not shaped


def test_defaults_per_metric_and_an_explicit_batch_applies_to_latency(tmp_path):
    def shapes(metric, **raw):
        return BenchSession(parse(raw, tmp_path), tmp_path).shapes(metric)

    assert shapes("latency") == [(1, 128)] and shapes("throughput") == [(32, 128)] and shapes("energy") == [(32, 128)]
    assert shapes("generation") == [(1, None)]  # the prompt comes from the model's positions and --gen-tokens
    assert shapes("latency", batch_size="8") == [(8, 128)]
    assert shapes("generation", batch_size="1,4", seq_len="64") == [(1, 64), (4, 64)]
    assert shapes("accuracy", batch_size="1,4") == [(None, None)]


def test_a_two_by_two_sweep_gives_four_records_and_quality_once_and_compares_shape_by_shape(suite):
    args = ["--model", "distilbert", "--precision", "fp32", "--metric", "latency,accuracy", *FAST]
    args += ["--batch-size", "1,2", "--seq-len", "8,16", "--meters", "none", "-v"]
    first = suite.runpytest_subprocess("benchmarks", *args)
    first.assert_outcomes(passed=5)
    first.stdout.fnmatch_lines(
        ["*test_latency?distilbert-fp32-b1x8? PASSED*", "*test_latency?distilbert-fp32-b2x16? PASSED*"]
    )
    first.stdout.fnmatch_lines(["*test_accuracy?distilbert-fp32? PASSED*", "distilbert  fp32       latency b2x16 *"])
    second = suite.runpytest_subprocess("benchmarks", *args, "--compare", "latest", "--fail-on", "latency:+1000%")
    assert second.ret == 0
    runs = sorted((suite.path / "reports" / "runs").glob("*/run.json"))
    records = json.loads(runs[0].read_text())["records"]
    latency = [r for r in records if r["metric"] == "latency"]
    shapes = {(r["shape"]["batch_size"], r["shape"]["seq_len"]) for r in latency}
    assert len(latency) == 4 and shapes == {(1, 8), (1, 16), (2, 8), (2, 16)}
    assert len({r["test_id"] for r in latency}) == 4
    assert [r["metric"] for r in records].count("accuracy") == 1  # quality once per model x precision
    rows = json.loads((runs[1].parent / "comparison.json").read_text())["rows"]
    latency_rows = [row for row in rows if row["metric"] == "latency"]
    assert sorted(row["shape"] for row in latency_rows) == ["b1x16", "b1x8", "b2x16", "b2x8"]
    assert all(row["verdict"] not in ("missing", "not comparable") for row in latency_rows)


def shaped(metric, value, batch, seq):
    return dataclasses.replace(single(metric, value, "s"), shape={"batch_size": batch, "seq_len": seq})


def test_compare_aligns_a_sweep_by_shape_and_still_refuses_unlike_single_shapes():
    sweep_a = run("a", [shaped("latency", 0.010, 1, 32), shaped("latency", 0.040, 8, 32)])
    sweep_b = run("b", [shaped("latency", 0.040, 8, 32), shaped("latency", 0.020, 1, 32)])
    rows = {row.shape: row for row in compare_runs(sweep_a, sweep_b).rows}
    assert set(rows) == {"b1x32", "b8x32"}
    assert rows["b8x32"].change_pct == pytest.approx(0.0) and rows["b1x32"].change_pct == pytest.approx(100.0)
    assert "latency b1x32" in render(compare_runs(sweep_a, sweep_b), "table")
    one = run("c", [single("latency", 0.010, "s")])
    other = run("d", [dataclasses.replace(single("latency", 0.010, "s"), shape={**SHAPE, "batch_size": 8})])
    [row] = compare_runs(one, other).rows
    assert row.verdict == "not comparable" and "different shape" in row.basis and row.shape == ""


def test_ab_pairs_a_sweep_shape_by_shape():
    side = [run("a", [shaped("latency", 0.010, 1, 32), shaped("latency", 0.040, 8, 32)])]
    assert ab.selection_difference(side, side) is None
    assert sorted(row.shape for row in ab.paired_comparison(side, side).rows) == ["b1x32", "b8x32"]


def test_the_history_of_a_swept_metric_shows_each_shape():
    from energybench.results.history import metric_history, render_history

    sweep = run("a", [shaped("latency", 0.010, 1, 32), shaped("latency", 0.040, 8, 32)])
    points = metric_history([sweep, run("b", [single("latency", 0.010, "s")])], "latency")
    assert [p.shape for p in points] == ["b1x32", "b8x32", ""]
    assert "int8 b8x32" in render_history(points)
