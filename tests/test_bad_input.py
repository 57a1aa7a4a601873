"""Issue 15: bad input is one clear line before anything is measured; an interrupted session is
saved as partial and never becomes a baseline or ``latest``; nothing saved is lost or hidden."""

from __future__ import annotations

import json
import os

import pytest

from energybench import cli
from energybench.harness.options import SettingsError, parse
from energybench.models.registry import ModelSourceError, resolve_path
from energybench.results import store
from tests.test_cli import snapshot
from tests.test_plugin import FAST, saved_runs
from tests.test_records_store import make_run


# -- 4. non-finite and out-of-range numbers, on the command line and in pyproject ----------------
@pytest.mark.parametrize(
    "raw, message",
    [
        ({"accuracy_budget": "int8=nan"}, "--accuracy-budget: bad entry int8=nan"),
        ({"perplexity_budget": "int8=inf"}, "--perplexity-budget: bad entry int8=inf"),
        ({"energy_budget": "int8=-inf"}, "--energy-budget: bad entry int8=-inf"),
        ({"idle_s": "inf"}, "--idle-s: 'inf' is not a positive number of seconds; give a finite number"),
        ({"energy_min_s": "inf"}, "--energy-min-s: 'inf' is not a positive number of seconds"),
        ({"energy_min_s": "nan"}, "--energy-min-s: 'nan' is not a positive number of seconds"),
        ({"rounds": "inf"}, "--rounds: 'inf' is not a positive integer"),
        ({"batch_size": "nan"}, "--batch-size: 'nan' is not a list of positive integers"),
    ],
)
def test_non_finite_numbers_are_refused_on_the_command_line(tmp_path, raw, message):
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(")):
        parse(raw, tmp_path)


@pytest.mark.parametrize(
    "toml, message",
    [
        ("accuracy_budget_pp = { int8 = nan }", "accuracy_budget_pp: bad entry int8=nan"),
        ("perplexity_budget_pct = { fp16 = inf }", "perplexity_budget_pct: bad entry fp16=inf"),
        ("accuracy_budget_pp = 1.0", "accuracy_budget_pp: 1.0 is a float, not a table"),
        ("energy_budget_ratio = { int8 = true }", "energy_budget_ratio: bad entry int8=True"),
        ('accuracy_budget_pp = { "llama/int8" = 1.0 }', "unknown model 'llama'; accepted: distilbert, gpt2"),
        ("accuracy_budget = { int8 = 1.0 }", "unknown key(s) in [tool.energybench]: accuracy_budget; accepted: "),
        ("idle_s = 5", "unknown key(s) in [tool.energybench]: idle_s; accepted: accuracy_budget_pp"),
    ],
)
def test_bad_pyproject_tables_are_one_usage_error(tmp_path, toml, message):
    (tmp_path / "pyproject.toml").write_text(f"[tool.energybench]\n{toml}\n")
    with pytest.raises(SettingsError) as error:
        parse({}, tmp_path)
    assert message in str(error.value)


def test_ini_values_get_the_same_checks(suite):
    suite.makeini("[pytest]\nenergybench_idle_s = inf\n")
    result = suite.runpytest_subprocess("benchmarks", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --idle-s: 'inf' is not a positive number of seconds*"])


# -- 6. settings that silently did nothing -----------------------------------------------------
@pytest.mark.parametrize(
    "raw, message",
    [
        ({"no_save": True, "save_baseline": "main"}, "--save-baseline main with --no-save"),
        ({"compare": "x", "fail_on": ","}, "--fail-on ',' names no limit"),
        ({"compare": "x", "fail_on": " , "}, "--fail-on ' , ' names no limit"),
    ],
)
def test_settings_that_would_do_nothing_are_usage_errors(tmp_path, raw, message):
    with pytest.raises(SettingsError) as error:
        parse(raw, tmp_path)
    assert message in str(error.value)


def test_an_unknown_country_is_refused_when_codecarbon_knows_the_countries(tmp_path):
    pytest.importorskip("codecarbon")
    with pytest.raises(SettingsError, match="--country: 'XXX' is not a country CodeCarbon has a grid carbon"):
        parse({"country": "XXX"}, tmp_path)
    assert parse({"country": "deu"}, tmp_path).country == "DEU"


def test_compare_fail_on_with_no_limit_is_one_line(tmp_path, capsys):
    store.save_run(make_run(), tmp_path)
    assert cli.main(["compare", "latest", "latest", "--reports-dir", str(tmp_path), "--fail-on", ","]) == 2
    assert "--fail-on ',' names no limit" in capsys.readouterr().err


# -- 3. what can be checked before measuring is checked before measuring -------------------------
def test_reports_dir_that_cannot_be_written_is_refused_at_start_up(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SettingsError, match="--reports-dir .*a-file.* is not a directory"):
        parse({"reports_dir": str(tmp_path / "a-file")}, tmp_path)
    with pytest.raises(SettingsError, match="--reports-dir .*a-file/sub.* is not a directory"):
        parse({"reports_dir": str(tmp_path / "a-file" / "sub")}, tmp_path)
    with pytest.raises(SettingsError, match="--reports-dir /proc/energybench: cannot write in /proc"):
        parse({"reports_dir": "/proc/energybench"}, tmp_path)  # unwritable even for root
    assert parse({"reports_dir": "/proc/energybench", "no_save": True}, tmp_path).save is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # the probe leaves nothing behind


@pytest.mark.parametrize("content", ["[1, 2]", "{half", '{"schema_version": 1}', '"a string"'])
def test_a_corrupt_or_foreign_compare_reference_is_refused_at_start_up(tmp_path, content):
    (tmp_path / "other.json").write_text(content)
    with pytest.raises(SettingsError, match=r"--compare .*other.json: .*other.json: (corrupt|not a valid)"):
        parse({"compare": str(tmp_path / "other.json")}, tmp_path)


def test_bad_reference_or_reports_dir_stops_the_suite_before_it_measures(suite):
    (suite.path / "notes.json").write_text('{"hello": "world"}')
    (suite.path / "a-file").write_text("x")
    for args, message in [
        (["--compare", "notes.json"], "ERROR: --compare notes.json: *notes.json: not a valid energybench run*"),
        (["--reports-dir", "a-file"], "ERROR: --reports-dir *a-file: *a-file is not a directory*"),
        (["--country", "XXX"], "ERROR: --country: 'XXX' is not a country CodeCarbon has*"),
    ]:
        result = suite.runpytest_subprocess("benchmarks", "--metric", "size", *args, "-p", "no:cacheprovider")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
        result.stderr.fnmatch_lines([message])
        assert "Traceback" not in result.stderr.str() and "passed" not in result.stdout.str()
    assert not (suite.path / "reports").exists()


# -- 1. a checkpoint folder that cannot be evaluated ---------------------------------------------
@pytest.fixture
def classifier_checkpoint(tmp_path, word_tokenizer):
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(
        n_layers=1, dim=16, n_heads=2, hidden_dim=32, vocab_size=len(word_tokenizer), num_labels=2, pad_token_id=0
    )
    folder = tmp_path / "my-classifier"
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    return folder


def test_a_checkpoint_with_its_tokenizer_resolves(classifier_checkpoint):
    assert resolve_path("custom", classifier_checkpoint, None).task == "sequence-classification"


def test_a_checkpoint_without_tokenizer_files_is_refused(classifier_checkpoint):
    for file in classifier_checkpoint.glob("*token*"):
        file.unlink()  # transformers 5 then builds a five-token tokenizer: every word is [UNK]
    with pytest.raises(ModelSourceError, match=r"no usable tokenizer \(it maps 100% of a sentence .* '\[UNK\]'"):
        resolve_path("custom", classifier_checkpoint, None)


def test_a_checkpoint_without_weights_is_refused(classifier_checkpoint):
    (classifier_checkpoint / "model.safetensors").unlink()
    with pytest.raises(ModelSourceError, match=r"no weights \(\*.safetensors, pytorch_model\*.bin"):
        resolve_path("custom", classifier_checkpoint, None)


@pytest.mark.parametrize(
    "content, message", [("[1, 2]", "holds a JSON list, not an object"), ("{", "is not valid JSON")]
)
def test_a_config_that_is_not_a_json_object_is_refused(classifier_checkpoint, content, message):
    (classifier_checkpoint / "config.json").write_text(content)
    with pytest.raises(ModelSourceError, match=f"config.json {message}"):
        resolve_path("custom", classifier_checkpoint, None)


def test_unusable_checkpoints_are_one_usage_error_in_the_suite(suite, classifier_checkpoint):
    tokenizer_files = [f for f in classifier_checkpoint.iterdir() if "token" in f.name]
    checks = [
        (lambda: [f.unlink() for f in tokenizer_files], "*no usable tokenizer (it maps 100% of a sentence*"),
        (lambda: (classifier_checkpoint / "model.safetensors").unlink(), "*no weights*"),
        (lambda: (classifier_checkpoint / "config.json").write_text("[1, 2]"), "*config.json holds a JSON list*"),
    ]
    for damage, message in checks:
        damage()
        result = suite.runpytest_subprocess(
            "benchmarks", "--model-path", str(classifier_checkpoint), "--metric", "accuracy", *FAST
        )
        assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
        result.stderr.fnmatch_lines([f"ERROR: --model-path *{message}"])
        assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
        assert not (suite.path / "reports").exists()


# -- 2. interrupted sessions ----------------------------------------------------------------------
CTRL_C_AFTER_FIRST_TEST = """
import os, signal
signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the launcher ignores SIGINT (a job run with &)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # or blocks it
def pytest_runtest_logfinish(nodeid):
    os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C after the first benchmark
"""


def test_an_interrupted_session_is_partial_and_never_replaces_the_baseline(suite, classifier_checkpoint):
    run = ["benchmarks", "--model-path", str(classifier_checkpoint), "--metric", "size", "--precision", "fp32,int8"]
    complete = suite.runpytest_subprocess(*run, *FAST, "--save-baseline", "main")
    complete.assert_outcomes(passed=2)
    baseline = suite.path / "reports" / "baselines" / "main.json"
    before = baseline.read_bytes()

    suite.makeconftest(CTRL_C_AFTER_FIRST_TEST)
    interrupted = suite.runpytest_subprocess(*run, *FAST, "--save-baseline", "main")
    assert interrupted.ret == pytest.ExitCode.INTERRUPTED
    interrupted.stdout.fnmatch_lines(["energybench: baseline main NOT replaced: this run is partial (interrupted*"])
    assert baseline.read_bytes() == before
    first, partial = saved_runs(suite)
    assert first["partial"] is False and len(first["records"]) == 2
    assert partial["partial"] is True and partial["partial_reason"].startswith("interrupted")
    assert len(partial["records"]) == 1

    latest = store.resolve_ref("latest", suite.path / "reports")
    assert latest.name == first["run_id"]  # a partial run never feeds `latest`
    assert cli.main(["list", "--reports-dir", str(suite.path / "reports")]) == 0


def test_a_run_stopped_by_maxfail_is_partial(suite, classifier_checkpoint):
    suite.makeconftest("def pytest_runtest_call(item):\n    raise RuntimeError('broken')\n")
    result = suite.runpytest_subprocess(
        "benchmarks", "--model-path", str(classifier_checkpoint), "--metric", "size", "-x", *FAST
    )
    result.assert_outcomes(failed=1)
    [run] = saved_runs(suite)
    assert run["partial"] is True and run["partial_reason"].startswith("stopped early")


def test_partial_runs_are_marked_skipped_by_latest_and_refused_as_baselines(tmp_path, capsys):
    complete = store.save_run(make_run("20261124T000000Z-aaaaaa"), tmp_path)
    partial = make_run("20261124T000100Z-bbbbbb")
    partial.partial, partial.partial_reason = True, "interrupted"
    partial_path = store.save_run(partial, tmp_path)
    assert store.resolve_ref("latest", tmp_path) == complete
    with pytest.raises(store.UsageError, match="run 20261124T000100Z-bbbbbb is partial \\(interrupted\\)"):
        store.save_baseline(partial_path, tmp_path, "main")
    assert cli.main(["baseline", "save", "main", "--run", partial_path.name, "--reports-dir", str(tmp_path)]) == 2
    assert cli.main(["list", "--reports-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "20261124T000100Z-bbbbbb" in out and "PARTIAL (interrupted)" in out
    assert out.count("PARTIAL") == 1 and not (tmp_path / "baselines" / "main.json").exists()


def test_runs_saved_before_the_partial_field_load_as_complete(tmp_path):
    path = store.save_run(make_run(), tmp_path)
    raw = json.loads((path / store.RUN_FILE).read_text())
    del raw["partial"], raw["partial_reason"]
    (path / store.RUN_FILE).write_text(json.dumps(raw))
    run = store.load_run(path)
    assert run.partial is False and run.partial_reason is None


# -- 5. a run file that is JSON but not an object -------------------------------------------------
@pytest.mark.parametrize("content", ["[1, 2]", "42", "null", '"run"'])
def test_a_run_file_that_is_not_an_object_is_skipped_by_every_reader(tmp_path, capsys, content):
    good = store.save_run(make_run(), tmp_path)
    odd = tmp_path / "runs" / "20250101T000000Z-000000"
    odd.mkdir()
    (odd / "run.json").write_text(content)
    before = snapshot(tmp_path)
    assert cli.main(["list", "--reports-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert good.name in out and err.count("\n") == 1 and "20250101T000000Z-000000" in err and "not an object" in err
    assert cli.main(["history", "--metric", "latency", "--reports-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert good.name in out and "20250101T000000Z-000000" in err and "not an object" in err
    runs, skipped = store.load_runs(tmp_path)
    assert [r.run_id for r in runs] == [good.name] and len(skipped) == 1
    assert snapshot(tmp_path) == before


# -- 7. identifiers read from files ---------------------------------------------------------------
@pytest.mark.parametrize("bad_id", ["../../escaped", "/tmp/abs", ".hidden", "a/b", "", 42, None])
def test_import_skips_a_run_whose_id_is_not_a_safe_name_and_goes_on(tmp_path, capsys, bad_id):
    source = tmp_path / "ci-artifact"
    store.save_run(make_run("20261124T000000Z-aaaaaa"), source)
    crafted = store.save_run(make_run("20261124T000001Z-cccccc"), source)
    raw = json.loads((crafted / store.RUN_FILE).read_text())
    raw["run_id"] = bad_id
    (crafted / store.RUN_FILE).write_text(json.dumps(raw))
    store.save_run(make_run("20261124T000002Z-bbbbbb"), source)
    history = tmp_path / "history"
    assert cli.main(["import", str(source), "--reports-dir", str(history)]) == 0
    out, err = capsys.readouterr()
    assert out.count("imported") == 2 and err.count("\n") == 1 and f"run id {bad_id!r}" in err
    assert sorted(p.name for p in store.list_runs(history)) == ["20261124T000000Z-aaaaaa", "20261124T000002Z-bbbbbb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ci-artifact", "history"]  # nothing escaped


# -- 8. permissions follow the umask --------------------------------------------------------------
def test_saved_runs_and_baselines_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run = store.save_run(make_run(), tmp_path)
        baseline = store.save_baseline(run, tmp_path, "main")
    finally:
        os.umask(old)
    assert run.stat().st_mode & 0o777 == 0o755
    assert (run / store.RUN_FILE).stat().st_mode & 0o777 == 0o644
    assert baseline.stat().st_mode & 0o777 == 0o644
