"""A run saved by energybench before the layout change (schema 1) still loads, renders and compares.

``tests/runs/schema1/run.json`` was written by the ``Record``/``Run``/``EnergyResult``/``Reading``
classes of commit f439904 (the last schema-1 version), with details laid out field by field as
that commit's recorders wrote them; the numbers are hand-set (no model ran). Its energy basis
lives only in the method text, and its layer rows use the old keys (``kl_ci95``,
``sensitivity``, the window's ``method``, the plan's ``basis``, energy's ``gated``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from energybench.layers.rows import ImpactStudy, LayerTable, Plan
from energybench.report import tidy
from energybench.results.compare import compare_runs, parse_fail_on
from energybench.results.schema import SCHEMA_VERSION
from energybench.results.store import load_run, save_run
from energybench.results.tables import LAYERS_CSV, layer_csvs

OLD_RUN = Path(__file__).parent / "runs" / "schema1" / "run.json"


@pytest.fixture
def old_raw():
    return json.loads(OLD_RUN.read_text())


@pytest.fixture
def old():
    return load_run(OLD_RUN)


def by_key(run):
    return {(r.model, r.precision, r.metric): r for r in run.records}


def test_the_fixture_is_a_schema_1_file_with_the_old_keys(old_raw):
    assert old_raw["schema_version"] == 1
    records = {(r["precision"], r["metric"]): r for r in old_raw["records"]}
    assert all("basis" not in r for r in old_raw["records"])
    impact = records["fp32", "impact"]["details"]
    assert "kl_ci95" in impact["per_layer"][0] and "sensitivity" in impact["per_layer"][0]
    assert "method" in records["fp32", "layer-energy"]["details"]["meter"] and "basis" in impact["plan"]


def test_an_old_run_is_upgraded_on_load_with_its_energy_basis(old):
    assert old.schema_version == SCHEMA_VERSION
    records = by_key(old)
    assert records["distilbert", "fp32", "energy"].basis == "estimated"
    assert records["distilbert", "fp32", "co2"].basis == "estimated"
    assert records["distilbert", "fp32", "power"].basis == "estimated"
    assert records["distilbert", "fp32", "layer-energy"].basis == "apportioned"
    assert records["distilbert", "fp32", "latency"].basis is None


def test_old_layer_rows_read_into_the_typed_rows(old, old_raw):
    records = by_key(old)
    table = LayerTable.from_dict(records["distilbert", "fp32", "layer-energy"].details)
    assert table.meter.basis == "estimated" and table.meter.name == "codecarbon"
    assert table.sum_check is not None and table.hook_overhead is not None
    study = ImpactStudy.from_dict(records["distilbert", "fp32", "impact"].details)
    raw_row = next(r for r in old_raw["records"] if r["metric"] == "impact")["details"]["per_layer"][0]
    row = study.per_layer[0]
    assert (row.kl_ci95_lo, row.kl_ci95_hi) == tuple(raw_row["kl_ci95"])
    assert row.int8_quality_delta == raw_row["sensitivity"]["int8"]
    assert study.correlation["per_layer"].x == "energy_j_per_sample"
    assert study.plan is not None and study.plan.energy_proxy.startswith("energy taken proportional")
    assert Plan.from_dict(records["distilbert", "mixed", "accuracy"].details["plan"]) == study.plan


def test_an_old_run_renders_in_the_report_frames_and_the_csv(old):
    layers = tidy.layer_frame(old)
    units = layers[layers.level == "per_layer"]
    assert len(units) > 0 and units["kl_ci95_lo"].notna().all() and units["int8_quality_delta"].notna().any()
    assert set(units["energy_basis"]) == {"apportioned (estimated)"}
    assert units["spearman_rho"].notna().all()
    frame = tidy.run_frame(old)
    assert set(frame[frame.metric == "energy"]["energy_basis"]) == {"estimated"}
    assert not tidy.plan_frame(frame).empty
    rows = list(csv.DictReader(io.StringIO(layer_csvs(old.records)[LAYERS_CSV])))
    assert len(rows) == len(units) and all(r["kl_ci95_lo"] and r["energy_basis"] for r in rows)


def test_an_old_run_compares_with_a_new_one_and_estimates_never_gate(old, tmp_path):
    new = load_run(save_run(old, tmp_path))  # written by this version: schema 2, typed rows
    assert json.loads((tmp_path / "runs" / old.run_id / "run.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert tidy.layer_frame(new).equals(tidy.layer_frame(old))
    worse = dict(by_key(new))
    energy = worse["distilbert", "int8", "energy"]
    new.records = [r if r is not energy else type(r)(**{**r.__dict__, "value": r.value * 2}) for r in new.records]
    comparison = compare_runs(old, new, parse_fail_on("energy:+10%"))
    rows = {(r.model, r.precision, r.metric): r for r in comparison.rows}
    assert rows["distilbert", "int8", "energy"].verdict == "worse"
    assert not rows["distilbert", "int8", "energy"].gated and not rows["distilbert", "int8", "energy"].failed
    assert rows["distilbert", "fp32", "latency"].verdict != "not comparable"


def test_an_old_impact_record_holding_a_rho_loads_as_energy_impact_rho(old, old_raw):
    raw = next(r for r in old_raw["records"] if r["metric"] == "impact")
    records = by_key(old)
    rho = records["distilbert", "fp32", "energy-impact-rho"]
    assert (rho.value, rho.unit) == (raw["value"], "rho") and rho.details["correlation"] == raw["details"][
        "correlation"
    ]
    impact = records["distilbert", "fp32", "impact"]
    best = max(raw["details"]["per_layer"], key=lambda row: row["impact_score"])
    assert (impact.value, impact.unit, impact.details["largest_unit"]) == (best["impact_score"], "nats", best["layer"])
    assert len(old.records) == len(old_raw["records"]) + 1


def test_a_schema_2_run_with_the_old_impact_name_is_split_too(old, tmp_path):
    current = old.to_dict()
    current["records"] = [r for r in current["records"] if r["metric"] != "energy-impact-rho"]
    impact = next(r for r in current["records"] if r["metric"] == "impact")
    impact.update(value=-0.57, unit="rho")  # as saved before the rename, at schema 2
    (tmp_path / "run.json").write_text(json.dumps(current))
    reloaded = load_run(tmp_path)
    assert by_key(reloaded)["distilbert", "fp32", "energy-impact-rho"].value == -0.57
    assert by_key(reloaded)["distilbert", "fp32", "impact"].unit == "nats"
