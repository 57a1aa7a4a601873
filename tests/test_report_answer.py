"""The report's answer: the Pareto front, precision x backend, cost against batch size and
generation figures on hand-built runs of real records, and the page that opens with the answer."""

from __future__ import annotations

import html
import re

import matplotlib
import pytest

from energybench import cli
from energybench.report import answer_figures, build, tidy
from energybench.results import store
from energybench.results.schema import Budget, Record
from tests.report_runs import SOURCES, make_run, timed

matplotlib.use("Agg")
COMMON = {"source": SOURCES["distilbert"], "device": "cpu"}
GPT2 = {"source": SOURCES["gpt2"], "device": "cpu"}


def labels(ax):
    return {t.get_text(): t.get_fontweight() for t in ax.texts}


def sweep_run():
    """distilbert at batch 1, 8 and 32: int8 is faster per item at batch 1, fp32 from batch 32."""
    run = make_run(models=("distilbert",), layers=False)
    per_item = {("fp32", 8): 0.004, ("fp32", 32): 0.002, ("int8", 8): 0.003, ("int8", 32): 0.0025}
    for (precision, batch), seconds in per_item.items():
        shape = {"batch_size": batch, "seq_len": 128}
        run.records.append(
            Record("distilbert", precision, "latency", seconds * batch, "s", method="m", shape=shape, **COMMON)
        )
    run.records += [
        Record(
            "distilbert",
            "int8",
            "accuracy",
            0.79,
            "fraction",
            method="eval",
            backend="onnxruntime",
            budget=Budget("fp32", 0.80, 1.0, 1.0, "pp", True),
            **COMMON,
        ),
        Record(
            "distilbert",
            "int8",
            "energy",
            0.2,
            "J/sample",
            method="m",
            basis="measured",
            backend="onnxruntime",
            **COMMON,
        ),
        Record(
            "distilbert",
            "int8",
            "latency",
            0.004,
            "s",
            method="m",
            timing=timed(0.004),
            backend="onnxruntime",
            **COMMON,
        ),
    ]
    return run


def test_pareto_joins_and_labels_the_non_dominated():
    run = sweep_run()
    figure = answer_figures.pareto(run, tidy.run_frame(run), "distilbert")
    energy_ax = next(ax for ax in figure.axes if ax.get_title() == "quality loss vs energy per item")
    found = labels(energy_ax)
    # onnxruntime int8 (0.2 J, 1.0 pp) and fp32 (0.5 J, 0 pp) are on the front; eager int8 is not
    # (0.32 J at 0.5 pp is on it too: less loss than onnxruntime, less energy than fp32); fp16 (2.4 J, 0 pp) is off it
    assert found["onnxruntime-int8"] == "bold" and found["fp32"] == "bold" and found["int8"] == "bold"
    assert found["fp16"] == "normal"
    front = energy_ax.get_lines()[0]
    assert list(front.get_xdata()) == pytest.approx([0.2, 0.32, 0.5])


def test_batch_scaling_names_the_crossover():
    lines = answer_figures.series(sweep_run().records, "distilbert", "latency")
    assert lines["int8"] == pytest.approx({1: 0.006, 8: 0.003, 32: 0.0025})
    assert answer_figures.crossovers(lines) == ["fp32 below int8 from batch 32"]
    run = sweep_run()
    figure = answer_figures.batch_scaling(run, tidy.run_frame(run), "distilbert")
    texts = [" ".join(t.get_text().split()) for ax in figure.axes for t in ax.texts]
    assert "crossovers: fp32 below int8 from batch 32" in texts
    assert any("two or more batch sizes is not in this run" in t for t in texts)  # energy: one batch only


def test_precision_backend_groups_bars_by_backend():
    run = sweep_run()
    figure = answer_figures.precision_backend(run, tidy.run_frame(run), "distilbert")
    speed = next(ax for ax in figure.axes if ax.get_title() == "speed-up over eager fp32")
    assert [t.get_text() for t in speed.get_legend().get_texts()] == ["eager", "onnxruntime"]
    heights = [round(p.get_height(), 3) for p in speed.patches if p.get_height() == p.get_height()]
    assert 2.5 in heights and round(0.01 / 0.006, 3) in heights  # onnxruntime int8 4 ms, eager int8 6 ms vs 10 ms


def test_generation_draws_what_the_run_has_and_names_the_rest():
    run = make_run(models=("gpt2",), layers=False)
    run.records += [
        Record("gpt2", "fp32", "decode-throughput", 50.0, "tokens/s", method="m", **GPT2),
        Record("gpt2", "int8", "decode-throughput", 80.0, "tokens/s", method="m", **GPT2),
        Record(
            "gpt2",
            "int8",
            "generation-energy",
            0.1,
            "J/token",
            method="m",
            basis="estimated",
            details={"window": "decode only"},
            **GPT2,
        ),
    ]
    assert answer_figures.has_generation(run, "gpt2")
    figure = answer_figures.generation(run, tidy.run_frame(run), "gpt2")
    assert "(energy: decode only)" in figure.get_suptitle()
    throughput = next(ax for ax in figure.axes if ax.get_title() == "decode throughput")
    assert [p.get_height() for p in throughput.patches] == [50.0, 80.0]
    texts = [" ".join(t.get_text().split()) for ax in figure.axes for t in ax.texts]
    assert any("ttft and decode-latency: not in this run" in t for t in texts)


def test_prefill_share_with_and_without_the_token_count():
    ttft = Record("gpt2", "fp32", "ttft", 0.05, "s", method="m", **GPT2)
    shape = {"batch_size": 1, "seq_len": 96, "gen_tokens": 46}
    decode = Record("gpt2", "fp32", "decode-latency", 0.01, "s", method="m", shape=shape, **GPT2)
    assert answer_figures.prefill_share(ttft, decode) == "prefill 10% of 46 tokens"
    decode = Record("gpt2", "fp32", "decode-latency", 0.01, "s/token", method="m", **GPT2)
    assert answer_figures.prefill_share(ttft, decode) == "ttft = 5.0 decode steps"


def test_the_page_opens_with_the_answer(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "PNG_DPI", 30)
    monkeypatch.setattr(
        build, "figure_jobs", lambda run, history, baseline: build.answer_jobs(run, tidy.run_frame(run))
    )
    store.save_run(make_run(), tmp_path)
    assert cli.main(["report", "latest", "--reports-dir", str(tmp_path)]) == 0
    page = html.unescape((next((tmp_path / "runs").iterdir()) / "report" / "index.html").read_text())
    order = [page.index(anchor) for anchor in ('id="answer"', 'id="fig-pareto-distilbert"', 'id="summary"')]
    assert order == sorted(order)
    recommendation = re.search(r'<ul id="recommendation">(.*?)</ul>', page, re.S).group(1)
    assert (  # the run's energy is a CodeCarbon estimate: never ranked on, said so, decided by a measured figure
        "distilbert: energy per item is only estimated here (estimated by codecarbon) and an estimate is never "
        "ranked on; decided by the measured latency per item instead: ship int8 on eager, batch 1: 6.000 ms per "
        "item (measured: median of timed rounds / batch size) (its estimated energy: 0.32 J per item at batch 1)"
    ) in recommendation
    assert "gpt2: ship int8 on eager, batch 1: 12.000 ms per item" in recommendation
    table = re.search(r'<table id="answer-distilbert">(.*?)</table>', page, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", table, re.S)
    assert cells[:5] == ["fp32", "eager", "+0.00 pp", "-", "baseline"]
    int8 = cells[cells.index("int8") : cells.index("int8") + 14]
    assert int8 == [
        "int8",
        "eager",
        "+0.50 pp",
        "1.00 pp",
        "pass",
        "-",  # no behaviour records in this run (flips, recovery)
        "-",
        "1.67x",
        "0.64x",
        "320",
        "0.08889",
        "estimated",
        "0.35x",
        "0.35x",
    ]
    assert "Power Hungry Processing" in page and "latency at batch 1; throughput at batch 1" in page
