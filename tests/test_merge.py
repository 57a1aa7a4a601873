"""``energybench merge`` (runs of one commit from several runners into one, and its refusals) and the
index beside the runs (what list, history and compare read: always what the run files say)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict

import pytest

from energybench import cli
from energybench.results import index, store
from energybench.results.compare import compare_runs, render
from energybench.results.history import metric_history
from energybench.results.merge import MergeRefused, merge_runs
from tests.report_runs import make_run as two_model_run

OPTIONS = {"rounds": 8, "device": "cpu", "reports_dir": "reports", "metrics": ["latency", "energy"]}


def shard(model, run_id, machine=None, **options):
    """One runner's run of one model (what a CI matrix job of ``--model <model>`` saves)."""
    run = two_model_run(run_id=run_id, models=(model,), layers=False)
    run.records = [r for r in run.records if r.model == model]
    run.options = {**OPTIONS, "models": [model], "reports_dir": f"reports-{model}", **options}
    if machine:
        run.machine = {**run.machine, **machine}
    return run


@pytest.fixture
def shards():
    return shard("distilbert", "20261124T100000Z-aaaaaa"), shard("gpt2", "20261124T100500Z-bbbbbb")


def test_merge_keeps_every_record_and_each_records_machine(shards):
    a, b = dataclasses.replace(shards[0]), shards[1]
    b.machine = {**b.machine, "node": "runner-2"}
    merged = merge_runs([a, b])
    assert len(merged.records) == len(a.records) + len(b.records)
    assert {r.details["merged_from"] for r in merged.records} == {a.run_id, b.run_id}
    assert merged.machine["fingerprint"] == a.machine["fingerprint"]  # one kind of machine: comparable as one
    assert [m["node"] for m in merged.machine["runners"] if "node" in m] == ["runner-2"]
    assert merged.options["models"] == ["distilbert", "gpt2"] and merged.options["merged_from"] == [a.run_id, b.run_id]
    assert merged.commit == a.commit and not merged.partial
    assert merged.started_at == a.started_at and merged.finished_at == b.finished_at


def test_runners_of_different_machines_merge_into_a_mixed_fingerprint_and_each_record_keeps_its_own():
    a = shard("distilbert", "20261124T100000Z-aaaaaa", {"fingerprint": "aaaaaaaaaaaa", "gpu": "NVIDIA H100"})
    b = shard("gpt2", "20261124T100500Z-bbbbbb", {"fingerprint": "bbbbbbbbbbbb", "gpu": "NVIDIA H200"})
    merged = merge_runs([a, b])
    assert merged.machine["fingerprint"].startswith("mixed-")
    assert merge_runs([b, a]).machine["fingerprint"] == merged.machine["fingerprint"]
    machines = {r.model: r.details["machine"] for r in merged.records}
    assert machines == {"distilbert": "aaaaaaaaaaaa", "gpt2": "bbbbbbbbbbbb"}
    records = json.loads(cli_export(merged, "pytorch-oss"))
    gpus = {r["model"]["name"]: r["runners"][0]["gpu_info"] for r in records}
    assert gpus == {"distilbert": "NVIDIA H100", "gpt2": "NVIDIA H200"}


def cli_export(run, fmt):
    from energybench.results.export import export_run

    return export_run(run, fmt)[0]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: setattr(b, "commit", {"id": "fedcba9876543210", "dirty": False}), "are of different commits"),
        (lambda b: setattr(b, "options", {**b.options, "rounds": 20}), "different settings (rounds: 8 vs 20)"),
        (lambda b: setattr(b, "commit", {"id": None, "reason": "not a git checkout"}), "has no commit"),
        (lambda b: setattr(b, "partial", True), "is partial"),
        (lambda b: setattr(b, "energybench_version", "0.2.0"), "were saved by energybench 0.1.0 and 0.2.0"),
        (lambda b: setattr(b, "run_id", "20261124T100000Z-aaaaaa"), "is given twice"),
        (lambda b: setattr(b, "records", b.records + [shard("distilbert", "x").records[0]]), "measured by both"),
        (lambda b: setattr(b, "commit", {**b.commit, "dirty": True}), "uncommitted changes"),
    ],
)
def test_merge_refuses_what_is_not_one_result_and_says_why(shards, change, message):
    a, b = shards
    change(b)
    with pytest.raises(MergeRefused) as refused:
        merge_runs([a, b])
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_merge_command_reads_each_runners_reports_folder_then_gate_and_export_work(tmp_path, capsys, shards):
    folders = []
    for run in shards:
        store.save_run(run, tmp_path / run.options["reports_dir"])
        folders.append(str(tmp_path / run.options["reports_dir"]))
    out = tmp_path / "merged"
    assert cli.main(["merge", *folders, "--out", str(out)]) == 0
    assert "2 runs of commit 0123456789" in capsys.readouterr().out
    (merged,) = store.list_runs(out)
    assert cli.main(["baseline", "save", "main", "--reports-dir", str(out)]) == 0
    assert cli.main(["compare", "main", "latest", "--reports-dir", str(out), "--fail-on", "latency:+10%"]) == 0
    assert "not comparable" not in capsys.readouterr().out
    assert cli.main(["export", "latest", "--format", "bencher", "--reports-dir", str(out)]) == 0
    assert "gpt2/fp32/eager/b1x128" in json.loads(capsys.readouterr().out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    a_other = tmp_path / "other"
    store.save_run(dataclasses.replace(shards[1], commit={"id": "fedcba9876543210", "dirty": False}), a_other)
    assert cli.main(["merge", str(merged), str(a_other), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "are of different commits" in err and len(err.splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_reports_folder_with_several_runs_is_refused_by_name(tmp_path, capsys, shards):
    for run in shards:
        store.save_run(run, tmp_path / "both")
    assert cli.main(["merge", str(tmp_path / "both"), "--out", str(tmp_path / "m")]) == 2
    assert "a reports folder with 2 runs" in capsys.readouterr().err


# -- the index -------------------------------------------------------------------------------
def history(tmp_path, count=4):
    """Runs of both models, timed and not, one corrupt folder among them."""
    for n in range(count):
        run = two_model_run(run_id=f"20261124T10{n:02d}00Z-{n:06x}", started_at=f"2026-11-24T10:{n:02d}:00+00:00")
        store.save_run(dataclasses.replace(run, records=scaled(run, n)), tmp_path)
    broken = tmp_path / "runs" / "20261124T090000Z-000000"
    broken.mkdir()
    (broken / "run.json").write_text("{half")
    return tmp_path


def scaled(run, n):
    return [dataclasses.replace(r, value=r.value * (1 + n / 10)) if r.value is not None else r for r in run.records]


def test_history_from_the_index_is_what_reading_every_run_file_gives(tmp_path):
    root = history(tmp_path)
    runs, skipped = store.load_runs(root)
    for metric, model, precision in [("latency", None, None), ("energy", "gpt2", "int8"), ("accuracy", None, "fp32")]:
        points, skipped_index = index.history_points(root, metric, model, precision)
        assert [asdict(p) for p in points] == [asdict(p) for p in metric_history(runs, metric, model, precision)]
        assert points and skipped_index == skipped
    assert index.index_path(root).is_file()


def test_compare_over_the_indexed_history_is_the_comparison_over_the_run_files(tmp_path):
    root = history(tmp_path, count=5)
    runs, _ = store.load_runs(root)
    series = {(r.model, r.precision, r.metric) for r in runs[-1].records}
    slim, _ = index.history_runs(root, series)
    full = render(compare_runs(runs[0], runs[-1], {}, runs), "json")
    assert render(compare_runs(runs[0], runs[-1], {}, slim), "json") == full
    assert "history of" in full  # the drift band was drawn from the history


def test_list_from_the_index_matches_the_runs(tmp_path, capsys):
    root = history(tmp_path, count=2)
    assert cli.main(["list", "--reports-dir", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "20261124T100000Z-000000" in out and "models distilbert,gpt2" in out and "corrupt run file" in err


def test_the_index_is_never_trusted_over_the_run_files(tmp_path):
    root = history(tmp_path, count=2)
    index.history_points(root, "latency")
    first = store.list_runs(root)[1]
    run = store.load_run(first)
    changed = dataclasses.replace(
        run, records=[dataclasses.replace(r, value=42.0) if r.metric == "size" else r for r in run.records]
    )
    (first / "run.json").write_text(json.dumps(changed.to_dict(), indent=1, sort_keys=True))
    os.utime(first / "run.json", ns=(1, 1))  # even an older time: the stamp differs, so it is re-read
    points, _ = index.history_points(root, "size")
    assert 42.0 in {p.value for p in points}
    store.list_runs(root)[-1].joinpath("run.json").unlink()  # a run deleted by hand
    assert len(index.summaries(root)[0]) == 1


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": [0, 0, "0"], "runs": {}}), "[]"])
def test_a_corrupt_or_foreign_index_is_rebuilt_from_the_runs(tmp_path, content):
    root = history(tmp_path, count=2)
    index.index_path(root).write_text(content)
    summaries, skipped = index.summaries(root)
    assert len(summaries) == 2 and len(skipped) == 1
    assert json.loads(index.index_path(root).read_text())["version"][0] == index.INDEX_VERSION


def test_a_history_that_cannot_be_written_is_read_and_not_indexed(tmp_path, monkeypatch):
    root = history(tmp_path, count=2)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(store.runs_dir(root)))

    monkeypatch.setattr(index.tempfile, "NamedTemporaryFile", read_only)
    assert len(index.summaries(root)[0]) == 2 and not index.index_path(root).exists()
