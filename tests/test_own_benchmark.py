"""A user's own benchmark: the guide's example run as a user runs it, its saved run, compare and
gate on its custom metric, and every bad input as one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from energybench import cli

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide-your-own-benchmark.md"
FAST_ENERGY = ["--energy-min-s", "0.5", "--energy-min-calls", "2", "--idle-s", "0.2", "-p", "no:cacheprovider"]


def guide_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    return next(block for block in blocks if block.startswith("# test_sentiment.py"))


def saved_runs(pytester) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((pytester.path / "reports" / "runs").glob("*/run.json"))]


@pytest.fixture
def project(pytester, embedded_cache, monkeypatch):
    """A user's folder: the embedded distilbert saved as a checkpoint, offline."""
    monkeypatch.setenv("ENERGYBENCH_CACHE", str(embedded_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CODECARBON_LOG_LEVEL", "error")
    pytester.makeini("[pytest]\n")
    from energybench.models.embedded import load_or_build

    built = load_or_build("distilbert", cache_dir=embedded_cache / "embedded")
    built.model.save_pretrained(pytester.path / "my-checkpoint")
    built.tokenizer.save_pretrained(pytester.path / "my-checkpoint")
    return pytester


def test_the_guide_example_runs_and_its_run_knows_its_own_metric(project, tmp_path):
    (project.path / "test_sentiment.py").write_text(guide_example())
    result = project.runpytest_subprocess("test_sentiment.py", *FAST_ENERGY)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*my-checkpoint <- path*", "*my-checkpoint*int8*f1*budget 2.00*"])
    [run] = saved_runs(project)
    assert run["custom_metrics"]["f1"]["direction"] == "higher" and run["custom_metrics"]["f1"]["unit"] == "fraction"
    records = {(r["precision"], r["metric"]): r for r in run["records"]}
    assert {m for _, m in records} == {"f1", "energy", "power", "co2"}
    f1 = records[("int8", "f1")]
    assert f1["source"]["kind"] == "path" and f1["data"]["name"] == "sst2-validation.tsv"
    assert f1["test_id"] == "test_sentiment.py::test_sentiment[my-checkpoint-int8]"
    assert f1["budget"]["baseline_value"] == records[("fp32", "f1")]["value"]
    energy = records[("fp32", "energy")]
    assert energy["unit"] == "J/sample" and "codecarbon" in energy["method"]

    # the gate reads f1's direction from the saved runs: a lower f1 in B is a regression
    run_dir = next((project.path / "reports" / "runs").iterdir())
    worse = json.loads((run_dir / "run.json").read_text())
    worse["run_id"] = "worse"
    for record in worse["records"]:
        if record["metric"] == "f1":
            record["value"] -= 0.05
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    reports = ["--reports-dir", str(project.path / "reports")]
    code = cli.main(["compare", str(run_dir), str(tmp_path / "worse.json"), *reports, "--fail-on", "f1:-1%"])
    assert code == 6
    assert_history_and_report_know(run_dir, records)


def assert_history_and_report_know(run_dir: Path, records: dict) -> None:
    """History and the report's generic figures read f1 from the saved run like a built-in metric."""
    import matplotlib.pyplot as plt

    from energybench.report import build, figures, tidy
    from energybench.results.history import metric_history
    from energybench.results.store import load_run

    run = load_run(run_dir)
    assert [p.value for p in metric_history([run], "f1", precision="int8")] == [records[("int8", "f1")]["value"]]
    frame = tidy.run_frame(run)
    assert build.custom_metrics(frame) == ["f1"]
    figure = figures.custom_metric_bars(frame, ["f1"])
    try:
        [ax] = figure.axes
        assert ax.get_title() == "f1 (higher is better)"
        heights = sorted(p.get_height() for p in ax.patches if p.get_height())
        expected = sorted(records[(p, "f1")]["value"] * 100 for p in ("fp32", "int8"))
        assert heights == pytest.approx(expected)
    finally:
        plt.close(figure)


def test_a_wrong_sign_for_a_custom_metric_is_one_line(tmp_path, capsys):
    run = {
        "schema_version": 1,
        "run_id": "a",
        "started_at": "",
        "finished_at": "",
        "energybench_version": "",
        "machine": {},
        "commit": {},
        "options": {},
        "models": {},
        "records": [],
        "custom_metrics": {"recall-at-5": {"direction": "higher", "unit": "fraction", "description": ""}},
    }
    (tmp_path / "a.json").write_text(json.dumps(run))
    code = cli.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--fail-on", "recall-at-5:+1%"])
    assert code != 0
    assert "recall-at-5 gets worse in the - direction; write recall-at-5:-1%" in capsys.readouterr().err


BAD_RECORDS = """
import pytest


@pytest.mark.energybench(models=["distilbert"], precisions=["fp32", "int8"])
def test_no_direction(eb_record):
    eb_record("f1", 0.9, unit="fraction")


@pytest.mark.energybench(models=["distilbert"], precisions=["fp32"])
def test_no_unit(eb_record):
    eb_record("f1", 0.9, higher_is_better=True)


@pytest.mark.energybench(models=["distilbert"], precisions=["fp32"])
def test_clash(eb_record):
    eb_record("latency", 0.9, unit="s", higher_is_better=False)


@pytest.mark.energybench(models=["distilbert"], precisions=["fp32", "int8"])
def test_budget(eb_model, quality_budget):
    if eb_model.precision == "fp32":
        raise RuntimeError("the fp32 side broke")
    result = quality_budget.check("f1", 0.9, higher_is_better=True, limit="1pp")
    assert result.passed, result.message


@pytest.mark.energybench(models=["distilbert"], precisions=["int8"])
def test_budget_without_fp32(eb_model, quality_budget):
    quality_budget.check("f1", 0.9, higher_is_better=True, limit="1pp")
"""


def test_bad_custom_metrics_and_missing_baselines_are_one_line_each(project):
    project.makepyfile(test_bad=BAD_RECORDS)
    result = project.runpytest_subprocess("test_bad.py", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(failed=5, skipped=2)
    result.stdout.fnmatch_lines_random(
        [
            "*eb_record('f1', ...): no direction; add higher_is_better=True or False*",
            "*eb_record('f1', ...): no unit; add unit='...'*",
            "*eb_record('latency', ...): 'latency' is a built-in energybench metric; give your metric another name*",
            "*no fp32 baseline for the f1 budget: the fp32 side error (RuntimeError: the fp32 side broke)*",
            "*no fp32 baseline for the f1 budget: fp32 of this test was not measured in this session; "
            "select fp32 (--precision) or pass value as a callable of eb_model*",
        ]
    )


def test_a_budget_without_fp32_computes_it_from_a_callable(project):
    project.makepyfile(
        test_callable="""
import pytest


@pytest.mark.energybench(models=["distilbert"], precisions=["int8"])
def test_params(eb_model, eb_record, quality_budget):
    def weight_sum(m):
        return float(sum(p.float().abs().sum() for p in m.model.parameters()))

    eb_record("weight-sum", weight_sum(eb_model), unit="1", higher_is_better=True)
    result = quality_budget.check("weight-sum", weight_sum, higher_is_better=True, limit="50%")
    assert result.budget.baseline_precision == "fp32" and result.budget.baseline_value > 0
    assert result.passed, result.message


@pytest.mark.energybench(models=["distilbert"], precisions=["int8"])
def test_layers(eb_model, layer_profile):
    batch = eb_model.batch(4)
    table = layer_profile(eb_model.forward(batch), items=4, passes=3)
    types = {row.layer_type for row in table.per_type}
    assert {"attention", "ffn"} <= types, types
    assert sum(row.share for row in table.per_type) == pytest.approx(1.0, abs=0.2)
    assert table.hook_overhead.with_hooks_s > 0 and table.per_layer[0].calls == 3
"""
    )
    result = project.runpytest_subprocess("test_callable.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    [run] = saved_runs(project)
    [record] = run["records"]
    assert record["budget"]["baseline_precision"] == "fp32" and record["precision"] == "int8"


@pytest.mark.parametrize(
    "marker, message",
    [
        ('models=["llama"]', "*test_m.py::test_mine: @pytest.mark.energybench: model 'llama': unknown; accepted:*"),
        ('precisions=["int3"]', "*test_m.py::test_mine: *precision 'int3': unknown; accepted: fp32*"),
        ('models=["./nowhere"]', "*test_m.py::test_mine: *models= *nowhere: no such directory*"),
        ('model=["distilbert"]', "*test_m.py::test_mine: *unknown marker keyword model; accepted: models, precisions*"),
    ],
)
def test_a_bad_marker_is_one_usage_error_naming_the_test(pytester, marker, message):
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_m=f"import pytest\n\n@pytest.mark.energybench({marker})\ndef test_mine(eb_model):\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_a_user_test_takes_the_command_line_where_the_marker_is_silent(pytester, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_m="""
import pytest

@pytest.mark.energybench(precisions=["fp32"])
def test_mine(eb_case):
    pass

@pytest.mark.energybench(models=["distilbert"])
def test_one(eb_case):
    pass
"""
    )
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--model", "distilbert,gpt2", "--precision", "int8")
    result.stdout.fnmatch_lines(
        [
            "test_m.py::test_mine[distilbert-fp32]",
            "test_m.py::test_one[distilbert-int8]",
            "test_m.py::test_mine[gpt2-fp32]",
        ]
    )


BAD_VALUES = """
import math

import pytest


@pytest.mark.energybench(models=["distilbert"], precisions=["fp32"])
@pytest.mark.parametrize("value", [math.nan, math.inf, "0.9", [0.9]])
def test_value(eb_record, value):
    eb_record("f1", value, unit="fraction", higher_is_better=True)


@pytest.mark.energybench(models=["distilbert"], precisions=["fp32"])
def test_first_declaration(eb_record):
    eb_record("speed", 3.0, unit="items/s", higher_is_better=True)


@pytest.mark.energybench(models=["distilbert"], precisions=["fp32"])
def test_second_declaration(eb_record):
    eb_record("speed", 0.3, unit="s", higher_is_better=False)
"""


def test_bad_values_and_a_metric_declared_twice_are_one_line_each(project):
    project.makepyfile(test_values=BAD_VALUES)
    result = project.runpytest_subprocess("test_values.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=5)
    result.stdout.fnmatch_lines_random(
        [
            "*eb_record('f1', nan): the value is not finite; record a finite number, or None with reason=*",
            "*eb_record('f1', inf): the value is not finite*",
            "*eb_record('f1', '0.9'): the value is a str, not a number; record a float, or None with reason=*",
            "*eb_record('f1', ?0.9?): the value is a list, not a number*",
            "*metric 'speed' is already declared as higher is better in 'items/s'; got lower in 's': "
            "keep one declaration per name*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    [run] = [json.loads(p.read_text()) for p in (project.path / "reports" / "runs").glob("*/run.json")]
    assert run["custom_metrics"]["speed"]["unit"] == "items/s"  # the first declaration is kept, nothing lost
