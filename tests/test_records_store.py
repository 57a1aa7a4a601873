import csv
import json
import os

import pytest

from energybench.results import store
from energybench.results.schema import SCHEMA_VERSION, Budget, Record, Run, SchemaError, TimingStats


def make_run(run_id="20261124T000000Z-abcdef", records=None):
    timing = TimingStats.from_rounds([0.010, 0.011, 0.012, 0.010, 0.013])
    records = records or [
        Record(
            "distilbert",
            "fp32",
            "latency",
            timing.median_s,
            "s",
            method="m",
            timing=timing,
            shape={"batch_size": 1, "seq_len": 128},
            source={"kind": "embedded", "checkpoint": "embedded:x"},
        ),
        Record(
            "distilbert",
            "int8",
            "accuracy",
            0.79,
            "fraction",
            data={"name": "sst2-validation.tsv", "sha256": "ab"},
            budget=Budget("fp32", 0.80, 1.0, 1.0, "pp", True),
        ),
        Record("distilbert", "fp16", "memory", None, "bytes", status="skipped", reason="no fp16 here"),
    ]
    return Run(
        run_id,
        "2026-11-24T00:00:00+00:00",
        "2026-11-24T00:01:00+00:00",
        "0.1.0",
        {"cpu": "x"},
        {"id": None},
        {},
        {"distilbert": {"kind": "embedded"}},
        records,
    )


def test_timing_stats_order_statistics():
    timing = TimingStats.from_rounds([1.0, 2.0, 3.0, 4.0, 100.0])
    assert timing.median_s == 3.0 and timing.rounds == 5 and timing.iqr_s == 2.0
    assert timing.unstable  # IQR/median = 0.67
    assert timing.min_s == 1.0 and timing.max_s == 100.0 and timing.p99_s > timing.p90_s


@pytest.mark.parametrize("rounds", [[], [0.0, 1.0], [float("nan")], [-1.0]])
def test_timing_stats_rejects_impossible_rounds(rounds):
    with pytest.raises(ValueError):
        TimingStats.from_rounds(rounds)


def test_missing_value_needs_a_reason_and_numbers_must_be_finite():
    with pytest.raises(ValueError, match="needs a reason"):
        Record("m", "fp32", "latency", None, "s")
    with pytest.raises(ValueError, match="not finite"):
        Record("m", "fp32", "latency", float("inf"), "s")
    with pytest.raises(ValueError, match="status"):
        Record("m", "fp32", "latency", 1.0, "s", status="great")


def test_run_round_trips_through_disk(tmp_path):
    run = make_run()
    path = store.save_run(run, tmp_path)
    assert path == tmp_path / "runs" / run.run_id
    assert store.load_run(path) == run
    assert store.list_runs(tmp_path) == [path]


def test_csv_export_has_one_row_per_record(tmp_path):
    path = store.save_run(make_run(), tmp_path)
    with (path / store.CSV_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["metric"] for r in rows] == ["latency", "accuracy", "memory"]
    assert rows[0]["rounds"] == "5" and rows[1]["budget_passed"] == "True"
    assert rows[2]["value"] == "" and rows[2]["reason"] == "no fp16 here"


def test_a_failed_save_leaves_nothing_visible(tmp_path, monkeypatch):
    def crash(path, text):
        path.write_text(text[:10])
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_file", crash)
    with pytest.raises(OSError):
        store.save_run(make_run(), tmp_path)
    assert store.list_runs(tmp_path) == []
    assert os.listdir(tmp_path / "runs") == []


def test_two_writers_with_one_run_id_never_merge(tmp_path):
    store.save_run(make_run(), tmp_path)
    with pytest.raises(OSError):
        store.save_run(make_run(), tmp_path)
    assert len(store.list_runs(tmp_path)) == 1
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [make_run().run_id]


def test_run_ids_are_unique():
    assert len({store.new_run_id() for _ in range(200)}) == 200


def test_newer_schema_is_refused_with_its_name(tmp_path):
    path = store.save_run(make_run(), tmp_path)
    raw = json.loads((path / store.RUN_FILE).read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    (path / store.RUN_FILE).write_text(json.dumps(raw))
    with pytest.raises(SchemaError, match="newer than this energybench reads"):
        store.load_run(path)


def test_corrupt_and_foreign_files_are_named(tmp_path):
    bad = tmp_path / "run.json"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match="corrupt run file"):
        store.load_run(bad)
    bad.write_text('{"hello": 1}')
    with pytest.raises(SchemaError, match="not an energybench run"):
        store.load_run(bad)
    with pytest.raises(SchemaError, match="not a run"):
        store.load_run(tmp_path / "nowhere")


SLOW_SAVER = """
import sys, time
from pathlib import Path
from energybench.results import store
from tests.test_records_store import make_run

real = store.write_file
def slow(path, text):
    real(path, text[: len(text) // 2])  # half a file on disk...
    print("writing", flush=True)
    time.sleep(60)  # ...and killed here
store.write_file = slow
store.save_run(make_run("20261124T000001Z-killed"), Path(sys.argv[1]))
"""


def test_kill_9_during_a_save_leaves_the_history_readable(tmp_path):
    import signal
    import subprocess
    import sys

    store.save_run(make_run(), tmp_path)
    saver = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    with saver.stdout:
        assert saver.stdout.readline().strip() == "writing"
        saver.send_signal(signal.SIGKILL)
        saver.wait(timeout=30)
    runs, skipped = store.load_runs(tmp_path)
    assert [r.run_id for r in runs] == [make_run().run_id] and skipped == []
    assert any(p.name.startswith(".tmp-") for p in (tmp_path / "runs").iterdir())  # the half-save, hidden


def save_one(args):
    root, index = args
    return str(store.save_run(make_run(store.new_run_id()), root))


def test_eight_concurrent_writers_give_eight_valid_distinct_runs(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(8) as pool:
        paths = list(pool.map(save_one, [(tmp_path, i) for i in range(8)]))
    runs, skipped = store.load_runs(tmp_path)
    assert len(set(paths)) == 8 and len(runs) == 8 and skipped == []
    assert len({r.run_id for r in runs}) == 8


def test_a_truncated_run_is_skipped_by_name_and_the_rest_still_read(tmp_path):
    good = store.save_run(make_run(), tmp_path)
    bad = store.save_run(make_run("20261124T000002Z-trunc0"), tmp_path)
    text = (bad / store.RUN_FILE).read_text()
    (bad / store.RUN_FILE).write_text(text[: len(text) // 3])
    runs, skipped = store.load_runs(tmp_path)
    assert [r.run_id for r in runs] == [good.name]
    assert len(skipped) == 1 and "20261124T000002Z-trunc0" in skipped[0] and "corrupt run file" in skipped[0]


def test_stale_staging_folders_are_cleaned_on_the_next_save(tmp_path):
    stale = tmp_path / "runs" / ".tmp-old-run"
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))
    fresh = tmp_path / "runs" / ".tmp-in-progress"
    fresh.mkdir()
    store.save_run(make_run(), tmp_path)
    assert not stale.exists() and fresh.exists()


def test_references_resolve_to_runs_and_baselines(tmp_path):
    first = store.save_run(make_run("20261124T000000Z-aaaaaa"), tmp_path)
    second = store.save_run(make_run("20261124T000005Z-bbbbbb"), tmp_path)
    assert store.resolve_ref("latest", tmp_path) == second
    assert store.resolve_ref(first.name, tmp_path) == first
    baseline = store.save_baseline(first, tmp_path, "main")
    assert store.resolve_ref("main", tmp_path) == baseline
    assert store.load_run(baseline).run_id == first.name
    store.save_baseline(second, tmp_path, "main")  # promote: replaced atomically
    assert store.load_run(store.resolve_ref("main", tmp_path)).run_id == second.name
    assert [p.stem for p in store.list_baselines(tmp_path)] == ["main"]
    store.delete_baseline(tmp_path, "main")
    assert store.list_baselines(tmp_path) == []


def test_bad_references_and_names_are_one_clear_line(tmp_path):
    with pytest.raises(store.RunNotFound, match="latest: there are no saved runs"):
        store.resolve_ref("latest", tmp_path)
    with pytest.raises(store.RunNotFound, match="nope: no run folder, run id, baseline"):
        store.resolve_ref("nope", tmp_path)
    with pytest.raises(ValueError, match="no path separators"):
        store.baseline_path(tmp_path, "../main")
    with pytest.raises(store.RunNotFound, match="existing baselines: none"):
        store.delete_baseline(tmp_path, "main")


def test_runs_from_several_runners_merge_into_one_history(tmp_path):
    runner_a, runner_b, history = tmp_path / "a", tmp_path / "b", tmp_path / "history"
    store.save_run(make_run("20261124T000000Z-aaaaaa"), runner_a)
    store.save_run(make_run("20261124T000000Z-bbbbbb"), runner_b)
    imported, notes = store.import_runs([runner_a, runner_b / "runs" / "20261124T000000Z-bbbbbb"], history)
    assert len(imported) == 2 and notes == []
    again, notes = store.import_runs([runner_a], history)
    assert again == [] and "already in" in notes[0]
    assert len(store.load_runs(history)[0]) == 2
