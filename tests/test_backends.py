"""The backend axis: probes, ids, records, comparability, ONNX Runtime for real, isolated peak memory."""

from __future__ import annotations

import copy
import importlib.util
import json
import types

import pytest
import torch

from energybench.catalog import BACKENDS, PRECISIONS, variant
from energybench.harness.options import SettingsError, parse
from energybench.harness.session import CaseSpec
from energybench.models import backends
from energybench.models.backends import BackendUnsupported
from energybench.results.compare import record_incomparability
from energybench.results.schema import Record

CPU = torch.device("cpu")


def test_the_default_backend_keeps_the_old_test_ids_and_others_are_named():
    assert CaseSpec("distilbert", "fp32", "latency").id == "distilbert-fp32"
    assert CaseSpec("distilbert", "int8-static", "latency", "onnxruntime").id == "distilbert-onnxruntime-int8-static"
    assert variant("int8", "compile") == "compile-int8"


def test_an_unknown_backend_lists_the_accepted_ones(tmp_path):
    with pytest.raises(SettingsError, match="--backend: unknown value tensorrt; accepted: eager, compile, onnxruntime"):
        parse({"backend": "tensorrt", "no_save": True}, tmp_path)
    assert parse({"backend": "all", "no_save": True}, tmp_path).backends == BACKENDS
    assert parse({"no_save": True}, tmp_path).backends == ("eager",)


def test_without_the_extra_onnxruntime_skips_naming_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    reason = backends.probe("onnxruntime", "fp32", CPU)
    missing = ", ".join(backends.missing_onnx_packages())  # onnxruntime, and whatever else this machine lacks
    assert "onnxruntime" in missing.split(", ")
    assert reason == (
        f"the onnxruntime backend needs {missing}: install energybench[backends] (pip install 'energybench[backends]')"
    )


def test_every_precision_has_a_verdict_on_every_backend():
    for precision in PRECISIONS:
        for name in BACKENDS:
            reason = backends.probe(name, precision, CPU)
            assert reason is None or (reason and "\n" not in reason)
    assert "use --backend onnxruntime" in backends.probe("eager", "int8-static", CPU)
    assert "graph break" in backends.probe("compile", "int8", CPU)
    if not backends.missing_onnx_packages():  # without the extra, its absence is the reason given first
        assert "not wired for onnxruntime" in backends.probe("onnxruntime", "bf16", CPU)


def test_the_calibration_subset_is_seeded_from_the_train_split_with_its_checksum():
    first, again = backends.calibration_set(), backends.calibration_set()
    assert first.sentences == again.sentences and len(first.sentences) == 128
    assert first.details["split"] == "train" and first.details["file"] == "sst2-train.tsv"
    assert len(first.details["sha256"]) == 64 and first.details["seed"] == 0
    assert backends.calibration_set(seed=1).details["sha256"] != first.details["sha256"]


def test_records_of_different_backends_are_never_compared():
    eager = Record("distilbert", "fp32", "latency", 0.01, "s", details={"implementation": "torch float32"})
    ort = Record(
        "distilbert", "fp32", "latency", 0.005, "s", details={"implementation": "torch float32"}, backend="onnxruntime"
    )
    assert record_incomparability(eager, ort) == "different backend: eager vs onnxruntime"
    assert Record.from_dict({k: v for k, v in eager.to_dict().items() if k != "backend"}).backend == "eager"


def test_each_backend_is_its_own_series_in_the_session_and_in_ab(tmp_path):
    """The blocks and records of eager and compiled latency are never pooled or paired together."""
    from energybench.catalog import MetricTable
    from energybench.harness.session import BenchSession
    from energybench.results import ab
    from energybench.results.schema import TimingStats

    timing = TimingStats.from_rounds([0.01, 0.011])
    eager = Record("distilbert", "fp32", "latency", 0.01, "s", timing=timing)
    compiled = Record("distilbert", "fp32", "latency", 0.004, "s", timing=timing, backend="compile")
    assert compiled.series != eager.series
    session = BenchSession(parse({"backend": "eager,compile"}, tmp_path), tmp_path)
    for record in (eager, compiled, compiled):  # a second block rewrites its own series only
        session.add(record)
    assert session.records == [eager, compiled]
    run = types.SimpleNamespace(records=[eager, compiled], metrics=MetricTable())
    assert len(ab.measured(run)) == 2


@pytest.fixture
def loaded(tiny_distilbert, word_tokenizer):
    source = types.SimpleNamespace(task="sequence-classification")
    return types.SimpleNamespace(model=tiny_distilbert, tokenizer=word_tokenizer, source=source)


def batch_of(word_tokenizer, sentences=("a fine film", "it is not good at all , sadly")):
    return dict(word_tokenizer(list(sentences), padding=True, return_tensors="pt"))


def test_onnxruntime_runs_fp32_like_eager_and_quantizes_with_its_own_tools(loaded, word_tokenizer):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    runner = backends.backend("onnxruntime")
    batch = batch_of(word_tokenizer)
    with torch.inference_mode():
        reference = loaded.model(**batch).logits
    fp32 = runner.prepare(copy.deepcopy(loaded.model), "fp32", CPU, loaded)
    assert torch.allclose(fp32.model(**batch).logits, reference, atol=1e-4)
    assert fp32.details["backend"] == "onnxruntime" and fp32.model.artifact_bytes == fp32.details["onnx_bytes"]
    static = runner.prepare(copy.deepcopy(loaded.model), "int8-static", CPU, loaded)
    assert static.details["calibration"]["size"] == 128
    assert "quantize_static QDQ" in static.implementation
    assert static.model(**batch).logits.shape == reference.shape
    assert (static.model(**batch).logits - reference).abs().max() < 0.5  # int8, not noise
    dynamic = runner.prepare(copy.deepcopy(loaded.model), "int8", CPU, loaded)
    assert dynamic.model.artifact_bytes < fp32.model.artifact_bytes


def test_an_export_that_fails_skips_that_model_with_the_exporters_line(loaded, monkeypatch):
    pytest.importorskip("onnxruntime")

    def refuse(model, path):
        raise RuntimeError("Unsupported operator aten::weird\nlong traceback")

    monkeypatch.setattr(backends, "export_onnx", refuse)
    runner = backends.backend("onnxruntime")
    with pytest.raises(
        BackendUnsupported, match=r"^ONNX export failed: RuntimeError: Unsupported operator aten::weird$"
    ):
        runner.prepare(copy.deepcopy(loaded.model), "fp32", CPU, loaded)
    with pytest.raises(BackendUnsupported, match="ONNX export failed"):  # not retried for the next precision
        runner.prepare(copy.deepcopy(loaded.model), "int8", CPU, loaded)


@pytest.mark.slow  # a model build, a browser or a fresh process
def test_isolated_peak_memory_splits_weights_and_activations(loaded, word_tokenizer):
    from energybench.measure import isolated

    batch = batch_of(word_tokenizer)
    found = isolated.measure(loaded.model, batch, CPU)
    assert found["weights_bytes"] > 0 and found["activations_bytes"] >= 0
    assert found["peak_bytes"] == found["weights_bytes"] + found["activations_bytes"]
    compiled = types.SimpleNamespace(compile_s={})
    assert "cannot be reloaded" in isolated.measure(compiled, batch, CPU)["reason"]


def test_energybench_precisions_lists_every_precision_and_backend(capsys):
    from energybench.cli import main

    assert main(["precisions"]) == 0
    out = capsys.readouterr().out
    for precision in PRECISIONS:
        for name in BACKENDS:
            assert f"{precision:<12} {name:<12} " in out


def test_the_suite_on_onnxruntime_records_the_backend_and_skips_the_layer_study(suite):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    result = suite.runpytest_subprocess(
        "benchmarks",
        "--model",
        "distilbert",
        "--backend",
        "onnxruntime",
        "--precision",
        "fp32,int8-static,fp16",
        "--metric",
        "accuracy,size,layer-energy",
        "--max-samples",
        "120",
        "--meters",
        "none",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=4, skipped=5)
    result.stdout.fnmatch_lines(["*distilbert  onnxruntime-int8-static  accuracy *", "*run saved to*"])
    [path] = sorted((suite.path / "reports" / "runs").glob("*/run.json"))
    records = json.loads(path.read_text())["records"]
    assert {r["backend"] for r in records} == {"onnxruntime"}
    size = next(r for r in records if r["metric"] == "size" and r["precision"] == "fp32")
    assert size["method"] == "size of the .onnx file ONNX Runtime runs"
    layer = next(r for r in records if r["metric"] == "layer-energy" and r["precision"] == "fp32")
    assert "needs forward hooks" in layer["reason"] and "onnxruntime-fp32" in layer["test_id"]
    static = next(r for r in records if r["metric"] == "accuracy" and r["precision"] == "int8-static")
    assert static["details"]["calibration"]["split"] == "train" and static["budget"]["limit"] == 1.0
