"""``energybench export``: each format checked against its published schema or example (tests/formats/),
on the real H200 run in docs/gpu-runs/ (NVML energy) and a CPU run with estimated energy."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from energybench import cli
from energybench.results import store
from energybench.results.export import export_run
from energybench.results.schema import Record
from tests.report_runs import make_run as cpu_run

FORMATS = Path(__file__).parent / "formats"
H200 = Path(__file__).parent.parent / "docs/gpu-runs/2026-11-26-h200/speed-run.json"


@pytest.fixture
def h200():
    return store.load_run(H200)


def exported(run, fmt, **kwargs):
    text, notes = export_run(run, fmt, **kwargs)
    return text, notes


# -- Bencher Metric Format -------------------------------------------------------------------
def check_bmf(document, schema):
    """The published schema (object -> object -> measure), and no field the schema does not name:
    the schema itself allows extra fields, so a misspelt ``lower`` would pass it unseen."""
    assert schema["type"] == "object" and isinstance(document, dict)
    benchmark_schema = schema["patternProperties"][".+"]
    measure_schema = benchmark_schema["patternProperties"][".+"]
    allowed, required = set(measure_schema["properties"]), set(measure_schema["required"])
    for name, measures in document.items():
        assert re.fullmatch(".+", name) and isinstance(measures, dict) and measures, name
        for measure, metric in measures.items():
            assert isinstance(metric, dict), (name, measure)
            assert required <= set(metric), f"{name} {measure}: missing {required - set(metric)}"
            assert set(metric) <= allowed, f"{name} {measure}: fields {set(metric) - allowed} are not BMF"
            for key, value in metric.items():
                assert measure_schema["properties"][key]["type"] == "number"
                assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, measure, key)


def test_the_schema_check_accepts_the_published_example_and_rejects_a_wrong_field_name():
    schema = json.loads((FORMATS / "bencher-bmf.schema.json").read_text())
    example = json.loads((FORMATS / "bencher-bmf-example.json").read_text())
    check_bmf(example, schema)
    example["benchmark_name"]["latency"]["lower"] = example["benchmark_name"]["latency"].pop("lower_value")
    with pytest.raises(AssertionError, match="not BMF"):
        check_bmf(example, schema)


def test_bencher_export_of_the_h200_run_is_bmf_named_model_precision_backend_shape(h200):
    text, notes = exported(h200, "bencher")
    document = json.loads(text)
    check_bmf(document, json.loads((FORMATS / "bencher-bmf.schema.json").read_text()))
    latency = next(r for r in h200.records if r.metric == "latency" and r.precision == "fp32")
    measure = document["distilbert/fp32/eager/b1x128"]["latency"]  # Bencher's built-in latency is in ns
    assert measure["value"] == pytest.approx(latency.value * 1e9)
    assert measure["lower_value"] <= measure["value"] <= measure["upper_value"]
    assert measure["upper_value"] > measure["lower_value"]  # the rounds' IQR, not a point
    energy = next(r for r in h200.records if r.metric == "energy" and r.precision == "fp32")
    assert document["distilbert/fp32/eager/b32x128"]["energy (J/sample)"] == {"value": energy.value}
    assert not notes  # NVML energy is measured: nothing left out


def test_bencher_leaves_estimated_energy_out_as_the_gate_does_or_marks_it():
    run = cpu_run(layers=False)
    document = json.loads(exported(run, "bencher")[0])
    _, notes = exported(run, "bencher")
    assert not any("energy" in measure for measures in document.values() for measure in measures)
    assert any("estimated energy is never gated" in line for line in notes)
    marked = json.loads(exported(run, "bencher", estimates="mark")[0])
    names = {measure for measures in marked.values() for measure in measures}
    assert "energy (J/sample, estimated)" in names and "energy (J/sample)" not in names


# -- PyTorch OSS benchmark database, v3 ------------------------------------------------------
def clickhouse_type(text):
    """``Tuple(name String, ...)`` -> ("Tuple", {name: type}); ``Array(T)`` -> ("Array", T); ..."""
    text = text.strip()
    head, _, rest = text.partition("(")
    if not rest:
        return (head, None)
    args, depth, part = [], 0, ""
    for char in rest[:-1]:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            args.append(part)
            part = ""
        else:
            part += char
    args.append(part)
    if head == "Tuple":
        return (
            head,
            {a.strip().split(" ", 1)[0].strip("`"): clickhouse_type(a.strip().split(" ", 1)[1]) for a in args},
        )
    return (head, [clickhouse_type(a) for a in args])


def v3_schema():
    columns = {}
    for line in (FORMATS / "pytorch-oss-benchmark-v3.schema.sql").read_text().splitlines():
        if line.startswith("`"):
            name, _, kind = line[1:].partition("` ")
            columns[name] = clickhouse_type(kind)
    return columns


def check_value(value, kind, where):
    head, args = kind
    if head == "Tuple":
        assert isinstance(value, dict), where
        assert set(value) <= set(args), f"{where}: fields {set(value) - set(args)} are not in the v3 schema"
        for key, item in value.items():
            check_value(item, args[key], f"{where}.{key}")
    elif head == "Array":
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check_value(item, args[0], f"{where}[{i}]")
    elif head == "Map":
        assert isinstance(value, dict), where
        for key, item in value.items():
            check_value(key, args[0], f"{where} key")
            check_value(item, args[1], f"{where}[{key}]")
    elif head == "String":
        assert isinstance(value, str), f"{where}: {value!r} is not a String"
    elif head.startswith(("UInt", "Float")):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert not head.startswith("UInt") or (isinstance(value, int) and value >= 0), where
    else:
        raise AssertionError(f"{where}: type {head} not handled")


def check_v3(records, schema):
    assert isinstance(records, list) and records
    for i, record in enumerate(records):
        assert set(record) <= set(schema), f"record {i}: {set(record) - set(schema)} are not v3 columns"
        for column, value in record.items():
            check_value(value, schema[column], f"record {i} {column}")
        assert record["benchmark"]["name"] and record["model"]["name"] and record["metric"]["name"]
        assert record["metric"]["benchmark_values"], f"record {i}: benchmark_values is required"


def test_the_v3_check_rejects_a_wrong_field_name_and_a_non_string_extra_info(h200):
    schema = v3_schema()
    records = json.loads(exported(h200, "pytorch-oss")[0])
    records[0]["metric"]["values"] = records[0]["metric"].pop("benchmark_values")
    with pytest.raises(AssertionError, match="not in the v3 schema"):
        check_v3(records, schema)
    records = json.loads(exported(h200, "pytorch-oss")[0])
    records[0]["benchmark"]["extra_info"]["rounds"] = 10
    with pytest.raises(AssertionError, match="not a String"):
        check_v3(records, schema)


def test_pytorch_oss_export_of_the_h200_run_fits_the_v3_schema_with_runner_and_dependencies(h200):
    records = json.loads(exported(h200, "pytorch-oss")[0])
    check_v3(records, v3_schema())
    assert len(records) == sum(1 for r in h200.records if r.value is not None)
    latency = next(r for r in records if r["metric"]["name"] == "latency" and r["benchmark"]["dtype"] == "fp32")
    source = next(r for r in h200.records if r.metric == "latency" and r.precision == "fp32")
    assert latency["metric"]["benchmark_values"] == pytest.approx(list(source.timing.rounds_s))
    assert latency["runners"][0]["gpu_info"] == "NVIDIA H200" and latency["runners"][0]["gpu_count"] == 1
    assert latency["dependencies"]["torch"]["version"] == "2.11.0+cu130"
    assert latency["dependencies"]["energybench"]["sha"] == h200.commit["id"]
    assert latency["model"] == {**latency["model"], "name": "distilbert", "backend": "eager"}


def test_pytorch_oss_keeps_estimated_energy_marked_not_gated():
    records = json.loads(exported(cpu_run(layers=False), "pytorch-oss")[0])
    check_v3(records, v3_schema())
    energy = [r for r in records if r["metric"]["name"] == "energy"]
    assert energy and all(r["metric"]["extra_info"]["basis"] == "estimated" for r in energy)
    assert all(r["metric"]["extra_info"]["gated"] == "false" for r in energy)


# -- AI Energy Score style table -------------------------------------------------------------
def score_table(run):
    text, notes = exported(run, "ai-energy-score")
    return list(csv.DictReader(io.StringIO(text))), notes


def test_ai_energy_score_table_has_the_scores_fields_in_wh_per_1000_queries(h200):
    published = json.loads((FORMATS / "ai-energy-score.json").read_text())
    rows, notes = score_table(h200)
    ours = {
        "model name": "model",
        "GPU energy": "gpu_energy_wh_per_1000_queries",
        "task": "task",
        "scoring date": "date",
        "benchmarking hardware": "hardware",
        "prefill": "prefill_wh_per_1000_queries",
        "decode": "decode_wh_per_1000_queries",
    }
    assert set(published["label_fields"] + published["phase_fields"]) == set(ours)
    assert set(ours.values()) <= set(rows[0]) and "energy_basis" in rows[0]
    energy = next(r for r in h200.records if r.metric == "energy" and r.precision == "fp32")
    fp32 = next(r for r in rows if r["precision"] == "fp32")
    assert float(fp32["gpu_energy_wh_per_1000_queries"]) == pytest.approx(energy.value * 1000 / 3600, rel=1e-5)
    assert fp32["hardware"].startswith("NVIDIA H200") and fp32["energy_basis"] == "measured"
    assert fp32["date"] == "2026-11-26" and "batch 32 (the score uses batch 1)" in fp32["note"]
    assert not notes


def test_a_run_without_measured_gpu_energy_says_so_and_gives_no_number():
    rows, notes = score_table(cpu_run(layers=False))
    assert rows and all(r["gpu_energy_wh_per_1000_queries"] == "" for r in rows)
    assert all("no measured GPU energy" in r["note"] for r in rows)
    assert notes and all("no GPU energy number" in line for line in notes)


def generation_records(window="decode only"):
    common = {"device": "cuda", "source": {"kind": "hub", "task": "causal-lm"}, "method": "measured: nvml"}
    prompt = {"batch_size": 1, "seq_len": 64}
    return [
        Record("gpt2", "fp16", "energy", 1.8, "J/sample", basis="measured", shape=prompt, **common),
        Record(
            "gpt2",
            "fp16",
            "generation-energy",
            0.25,
            "J/token",
            basis="measured",
            shape={**prompt, "gen_tokens": 33},
            details={"window": window},
            **common,
        ),
    ]


def test_a_generation_splits_prefill_and_decode_and_sums_them():
    run = cpu_run(layers=False)
    run.records = generation_records()
    rows, _ = score_table(run)
    generation = next(r for r in rows if r["query"].startswith("one prompt"))
    assert float(generation["prefill_wh_per_1000_queries"]) == pytest.approx(1.8 * 1000 / 3600, rel=1e-5)
    assert float(generation["decode_wh_per_1000_queries"]) == pytest.approx(0.25 * 32 * 1000 / 3600, rel=1e-5)
    total = float(generation["gpu_energy_wh_per_1000_queries"])
    assert total == pytest.approx((1.8 + 0.25 * 32) * 1000 / 3600, rel=1e-5)
    run.records = generation_records("whole generation (prefill + decode)")
    whole = next(r for r in score_table(run)[0] if r["query"].startswith("one prompt"))
    assert whole["prefill_wh_per_1000_queries"] == "" and "not split" in whole["note"]
    assert float(whole["gpu_energy_wh_per_1000_queries"]) == pytest.approx(0.25 * 33 * 1000 / 3600, rel=1e-5)


# -- the command -----------------------------------------------------------------------------
def test_export_writes_stdout_or_a_file_and_csv_is_the_runs_records_csv(tmp_path, capsys, h200):
    assert cli.main(["export", str(H200), "--format", "bencher"]) == 0
    assert "distilbert/fp32/eager/b1x128" in json.loads(capsys.readouterr().out)
    out = tmp_path / "out" / "records.csv"
    assert cli.main(["export", str(H200), "--format", "csv", "--out", str(out)]) == 0
    assert out.read_bytes().decode() == store.records_csv(h200.records)
    assert "-> " in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "nosuch", "--format", "bencher"], "nosuch: no run folder"),
        (["export", "RUN", "--format", "ai-energy-score"], "no energy or generation-energy records"),
    ],
)
def test_export_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    run = cpu_run(layers=False)
    run.records = [r for r in run.records if r.metric not in ("energy", "power", "co2")]
    folder = store.save_run(run, tmp_path)
    argv = [str(folder) if a == "RUN" else a for a in argv]
    assert cli.main([*argv, "--reports-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
