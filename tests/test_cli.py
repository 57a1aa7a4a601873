from energybench import cli, store
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
