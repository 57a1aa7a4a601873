import pytest

from energybench import cli
from energybench.results import store
from tests.test_records_store import make_run


def test_list_shows_saved_runs_and_names_unreadable_ones(tmp_path, capsys):
    store.save_run(make_run(), tmp_path)
    broken = tmp_path / "runs" / "20250101T000000Z-000000"
    broken.mkdir()
    (broken / "run.json").write_text("{half")
    assert cli.main(["list", "--reports-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "20261124T000000Z-abcdef" in out and "3 records" in out and "models distilbert" in out
    assert "skipped" in err and "20250101T000000Z-000000" in err and "corrupt run file" in err


def test_list_with_no_runs(tmp_path, capsys):
    assert cli.main(["list", "--reports-dir", str(tmp_path)]) == 0
    assert "no runs under" in capsys.readouterr().out


def test_models_lists_the_registry(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "distilbert-base-uncased-finetuned-sst-2-english" in out and "causal-lm" in out


def history_with_two_runs(tmp_path):
    from energybench.results.schema import Record, TimingStats

    def latency(run_id, scale):
        timing = TimingStats.from_rounds([scale * x for x in (0.010, 0.0102, 0.0099, 0.0101, 0.0100, 0.0103)])
        record = Record(
            "distilbert",
            "int8",
            "latency",
            timing.median_s,
            "s",
            method="m",
            timing=timing,
            shape={"batch_size": 1, "seq_len": 128},
            source={"kind": "embedded"},
        )
        return make_run(run_id, [record])

    a = store.save_run(latency("20261124T000000Z-aaaaaa", 1.0), tmp_path)
    b = store.save_run(latency("20261124T000100Z-bbbbbb", 1.5), tmp_path)
    return a, b


def snapshot(root):
    """Every file of the history but the index beside the runs (a cache of them, rebuilt when stale)."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".index.json"}


def test_compare_prints_verdicts_and_exits_6_on_a_regression(tmp_path, capsys):
    a, b = history_with_two_runs(tmp_path)
    code = cli.main(["compare", a.name, "latest", "--reports-dir", str(tmp_path), "--fail-on", "latency:+10%"])
    out = capsys.readouterr().out
    assert code == 6 and "WORSE -> FAIL latency:+10%" in out and "+50.00 % worse" in out
    assert cli.main(["compare", a.name, b.name, "--reports-dir", str(tmp_path), "--format", "markdown"]) == 0
    assert "| distilbert | int8 | latency |" in capsys.readouterr().out


def test_baselines_save_list_delete(tmp_path, capsys):
    a, _ = history_with_two_runs(tmp_path)
    assert cli.main(["baseline", "save", "main", "--run", a.name, "--reports-dir", str(tmp_path)]) == 0
    assert cli.main(["baseline", "list", "--reports-dir", str(tmp_path)]) == 0
    assert "main" in capsys.readouterr().out
    assert cli.main(["compare", "main", "latest", "--reports-dir", str(tmp_path)]) == 0
    assert cli.main(["baseline", "delete", "main", "--reports-dir", str(tmp_path)]) == 0
    assert store.list_baselines(tmp_path) == []


def test_history_of_a_metric_as_table_and_json(tmp_path, capsys):
    import json

    history_with_two_runs(tmp_path)
    args = ["history", "--metric", "latency", "--model", "distilbert", "--precision", "int8", "--reports-dir"]
    assert cli.main([*args, str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "20261124T000000Z-aaaaaa" in out and "20261124T000100Z-bbbbbb" in out and "0.01005 s" in out
    assert cli.main([*args, str(tmp_path), "--format", "json"]) == 0
    points = json.loads(capsys.readouterr().out)
    assert [p["value"] for p in points] == pytest.approx([0.01005, 0.015075])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "nosuch", "latest"], "nosuch: no run folder, run id, baseline or 'latest'"),
        (["compare", "latest", "latest", "--fail-on", "latency:+10"], "not metric:<sign><number><unit>"),
        (["baseline", "save", "a/b"], "no path separators"),
        (["baseline", "delete", "nosuch"], "baseline 'nosuch' does not exist"),
        (["history", "--metric", "energy"], "empty history: no saved run"),
        (["import", "/nonexistent/reports"], "neither a run folder"),
    ],
)
def test_bad_input_is_one_line_with_exit_2_and_the_history_is_untouched(tmp_path, capsys, argv, message):
    history_with_two_runs(tmp_path)
    before = snapshot(tmp_path)
    assert cli.main([*argv, "--reports-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_history_of_an_empty_reports_dir_says_so(tmp_path, capsys):
    assert cli.main(["history", "--metric", "latency", "--reports-dir", str(tmp_path)]) == 2
    assert "empty history" in capsys.readouterr().err


def test_pandas_gets_a_run_or_the_whole_history_in_one_call(tmp_path):
    import energybench

    a, b = history_with_two_runs(tmp_path)
    frame = energybench.run_frame(a.name, reports_dir=tmp_path)
    assert list(frame["metric"]) == ["latency"] and frame["value"].iloc[0] == pytest.approx(0.01005)
    history = energybench.history_frame(tmp_path)
    assert sorted(history["run_id"]) == [a.name, b.name]
