"""Every kind of run the harness saves, made by the suite as a user makes it, read by every
command of the CLI with no traceback: list, history, compare (and --fail-on), recommend and the
report; and the report draws only the figures that have data.

The runs are small (fp32 where one precision does, two rounds, one block) and made once per
test session, each in its own project folder: a sweep-only run, a generation-only run, a run of
only a user's own metric (made twice, for a trend), a run with failed and skipped tests, an
interrupted (partial) run, a ``--model-path`` checkpoint run and a run of two models.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pytest

from energybench import cli
from energybench.report import build, tidy
from energybench.results import store
from tests.conftest import BENCHMARKS
from tests.test_bad_input import CTRL_C_AFTER_FIRST_TEST

matplotlib.use("Agg")

FAST = [*("--rounds", "2", "--blocks", "1", "--warmup-rounds", "1", "--max-samples", "40", "--meters", "none")]

OWN_METRIC = """
import pytest
import torch

from energybench import data


@pytest.mark.energybench(models=["distilbert"], precisions=["fp32", "int8"])
def test_share_right(eb_model, eb_record, quality_budget):
    pairs, file = data.sst2("validation")
    sentences, labels = [s for s, _ in pairs[:24]], torch.tensor([label for _, label in pairs[:24]])
    with torch.no_grad():
        inputs = eb_model.tokenizer(sentences, padding=True, truncation=True, max_length=32, return_tensors="pt")
        predicted = eb_model.model(**inputs).logits.argmax(-1)
    value = float((predicted == labels).float().mean())
    eb_record("share-right", value, unit="fraction", higher_is_better=True, description="share right")
    check = quality_budget.check("share-right", value, higher_is_better=True, limit="50pp")
    assert check.passed, check.message
"""

BROKEN_INT8_SIZE = """
def pytest_runtest_call(item):
    if "size" in item.name and "int8" in item.name:
        raise RuntimeError("broken on purpose")
"""


@dataclass(frozen=True)
class Made:
    """A project folder the suite ran in, its reports folder and what pytest printed."""

    project: Path
    output: str

    @property
    def reports(self) -> Path:
        return self.project / "reports"

    @property
    def runs(self) -> list[Path]:
        return store.list_runs(self.reports)


def make(root: Path, cache: Path, args: list[str], conftest: str = "", files: dict[str, str] | None = None) -> Made:
    """Run pytest in ``root`` as a user does (a subprocess, the suite copied in) and return the folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "benchmarks").mkdir(exist_ok=True)
    for file in BENCHMARKS.glob("*.py"):
        (root / "benchmarks" / file.name).write_text(file.read_text())
    for name, text in {**(files or {}), **({"conftest.py": conftest} if conftest else {})}.items():
        (root / name).write_text(text)
    env = {**os.environ, "ENERGYBENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "CODECARBON_LOG_LEVEL": "error"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert "INTERNALERROR" not in output and "Traceback" not in output, output[-3000:]
    assert (root / "reports" / "runs").is_dir(), output[-3000:]
    return Made(root, output)


@pytest.fixture(scope="session")
def made(tmp_path_factory, embedded_cache, word_tokenizer):
    """Each kind of run, made on first use and shared by the tests of the session."""
    root = tmp_path_factory.mktemp("every-run")
    found: dict[str, Made] = {}

    def get(kind: str) -> Made:
        if kind not in found:
            found[kind] = KINDS[kind](root / kind, embedded_cache, word_tokenizer)
        return found[kind]

    return get


def sweep(root, cache, tokenizer) -> Made:
    args = ["benchmarks", "--model", "distilbert", "--precision", "fp32", "--metric", "latency", *FAST]
    return make(root, cache, [*args, "--batch-size", "1,2", "--seq-len", "8,16"])


def generation(root, cache, tokenizer) -> Made:
    args = ["benchmarks", "--model", "gpt2", "--precision", "fp32", "--metric", "generation", "--gen-tokens", "2"]
    return make(root, cache, [*args, *FAST])


def own_metric(root, cache, tokenizer) -> Made:
    make(root, cache, ["test_own.py"], files={"test_own.py": OWN_METRIC})
    return make(root, cache, ["test_own.py"])  # a second run: the report draws the trend


def failed_and_skipped(root, cache, tokenizer) -> Made:
    args = ["benchmarks", "--model", "distilbert", "--precision", "fp32,int8", "--metric", "size,energy", *FAST]
    return make(root, cache, args, conftest=BROKEN_INT8_SIZE)


def partial(root, cache, tokenizer) -> Made:
    args = ["benchmarks", "--model", "distilbert", "--precision", "fp32,int8", "--metric", "size", *FAST]
    return make(root, cache, args, conftest=CTRL_C_AFTER_FIRST_TEST)


def checkpoint(root, cache, tokenizer) -> Made:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(
        n_layers=1, dim=16, n_heads=2, hidden_dim=32, vocab_size=len(tokenizer), num_labels=2, pad_token_id=0
    )
    folder = root.parent / "my-classifier"
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    args = ["benchmarks", "--model-path", str(folder), "--precision", "fp32,int8", "--metric", "accuracy,size,latency"]
    return make(root, cache, [*args, *FAST])


def two_models(root, cache, tokenizer) -> Made:
    args = ["benchmarks", "--model", "distilbert,gpt2", "--precision", "fp32", "--metric", "size,latency", *FAST]
    return make(root, cache, args)


KINDS = {
    "sweep": sweep,
    "generation": generation,
    "own-metric": own_metric,
    "failed-and-skipped": failed_and_skipped,
    "partial": partial,
    "checkpoint": checkpoint,
    "two-models": two_models,
}
# a metric of each kind of run, for history and --fail-on
METRIC = {
    "sweep": "latency",
    "generation": "ttft",
    "own-metric": "share-right",
    "failed-and-skipped": "size",
    "partial": "size",
    "checkpoint": "accuracy",
    "two-models": "latency",
}


@pytest.fixture
def low_dpi(monkeypatch):
    monkeypatch.setattr(build, "PNG_DPI", 40)  # the same files, drawn faster


def eb(*args: str) -> int:
    return cli.main([str(a) for a in args])


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_command_reads_every_kind_of_run(kind, made, low_dpi, capsys, tmp_path):
    run = made(kind)
    folder = run.runs[-1]
    reports = ("--reports-dir", run.reports)
    metric = METRIC[kind]
    assert eb("list", *reports) == 0
    assert folder.name in capsys.readouterr().out
    assert eb("history", "--metric", metric, *reports) == 0
    assert folder.name in capsys.readouterr().out
    for objective in ("energy", "latency"):
        assert eb("recommend", folder, "--objective", objective, *reports) == 0
        assert capsys.readouterr().out.strip()
    assert eb("compare", folder, folder, *reports) == 0
    worse = "-" if metric in ("accuracy", "share-right") else "+"
    assert eb("compare", folder, folder, "--fail-on", f"{metric}:{worse}50%", *reports) == 0
    capsys.readouterr()
    assert eb("report", folder, *reports, "--out", tmp_path / "report") == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert capsys.readouterr().err == "" and 'id="answer"' in page and 'id="not-measured"' in page
    assert page.count("<img ") == len(list((tmp_path / "report").glob("*.png")))


def test_what_each_kind_of_run_holds(made):
    """The runs are what their names say, so the test above reaches each path."""
    loaded = {kind: store.load_run(made(kind).runs[-1]) for kind in KINDS}
    sweep_shapes = {tuple(sorted(r.shape.items())) for r in loaded["sweep"].records}
    assert len(sweep_shapes) == 4 and {r.metric for r in loaded["sweep"].records} == {"latency"}
    assert {r.metric for r in loaded["generation"].records} >= {"ttft", "decode-latency", "generation-energy"}
    assert {r.metric for r in loaded["own-metric"].records} == {"share-right"}
    assert loaded["own-metric"].custom_metrics["share-right"]["direction"] == "higher"
    statuses = {(r.precision, r.metric): r.status for r in loaded["failed-and-skipped"].records}
    assert statuses[("int8", "size")] == "error" and statuses[("fp32", "energy")] == "skipped"
    assert loaded["partial"].partial and len(loaded["partial"].records) == 1
    assert {r.source.get("kind") for r in loaded["checkpoint"].records} == {"path"}
    assert set(loaded["two-models"].models) == {"distilbert", "gpt2"}


def test_a_one_metric_run_writes_exactly_the_figures_that_have_data(made, low_dpi, tmp_path):
    """A sweep of latency alone: every figure written holds data; every other figure is named in
    "Not measured" with its reason, and its panels all say why."""
    folder = made("sweep").runs[-1]
    report = build.build_report(folder, out=tmp_path / "report")
    written = sorted(p.stem for p in report.glob("*.png"))
    assert written == ["batch-scaling-distilbert", "metric-bars", "overview-distilbert", "precision-backend-distilbert"]
    run = store.load_run(folder)
    jobs = build.figure_jobs(run, tidy.history_frame([run]), None)
    with_data = []
    for job in jobs:
        figure = job.draw()
        panels = [ax for ax in figure.axes if ax.axison]
        if any(ax.patches or ax.lines or ax.collections for ax in panels):
            with_data.append(job.name)
    assert sorted(with_data) == written
    page = (report / "index.html").read_text()
    assert page.count("<img ") == len(written)
    missing = re.search(r'<section id="not-measured">(.*?)</section>', page, re.S).group(1)
    for job in jobs:
        if job.name not in written:
            assert f"figure &#x27;{job.title}&#x27; not drawn, no data: " in missing, job.name
    assert "only one saved run" in missing and "no accuracy record" in missing
    answer = page.index('id="answer"')
    assert answer < page.index('id="fig-batch-scaling-distilbert"') < page.index('id="fig-overview-distilbert"')


def test_custom_metrics_go_wherever_built_in_ones_go(made, low_dpi, capsys, tmp_path):
    run = made("own-metric")
    first, second = run.runs
    reports = ("--reports-dir", run.reports)
    assert eb("history", "--metric", "share-right", "--precision", "int8", *reports) == 0
    assert capsys.readouterr().out.count("int8") == 2  # both runs
    assert eb("history", "--metric", "nope", *reports) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "built-in: accuracy, perplexity, latency" in err
    assert "custom, declared by the saved runs: share-right" in err
    assert eb("compare", first, second, "--fail-on", "share-right:-1%", *reports) == 0
    assert "share-right" in capsys.readouterr().out
    assert eb("compare", first, second, "--fail-on", "share-right:+1%", *reports) == 2
    assert "share-right gets worse in the - direction" in capsys.readouterr().err
    assert eb("compare", first, second, "--fail-on", "nope:+1%", *reports) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown metric 'nope'" in err and "share-right" in err
    assert eb("recommend", second, "--objective", "latency", "--budget", "share-right:5pp", *reports) == 0
    capsys.readouterr()
    assert eb("recommend", second, "--budget", "nope:5pp", *reports) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "accuracy:<points>pp or perplexity:<percent>%" in err and "(built-in)" in err
    assert "share-right:<N>pp or <N>% (this run's own metrics)" in err
    rows = list(csv.DictReader(io.StringIO((second / store.CSV_FILE).read_text())))
    assert {r["metric"] for r in rows} == {"share-right"} and all(r["value"] for r in rows)
    report = build.build_report(second, out=tmp_path / "report", reports_dir=run.reports)
    assert {"custom-metrics", "history-share-right"} <= {p.stem for p in report.glob("*.png")}
