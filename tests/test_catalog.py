"""The catalog is the one home of every fact: options, metrics, precisions, meters."""

from __future__ import annotations

from pathlib import Path

import pytest

from energybench import catalog
from energybench.models.registry import REGISTRY

DOCS = Path(__file__).resolve().parents[1] / "docs" / "options.md"


def test_the_options_reference_in_docs_is_generated_from_the_catalog():
    assert DOCS.read_text(encoding="utf-8") == catalog.options_reference(), (
        "docs/options.md is stale: regenerate it with `energybench options > docs/options.md`"
    )


def test_every_energybench_option_of_pytest_is_in_the_catalog(pytester):
    result = pytester.runpytest("--help")
    for option in catalog.OPTIONS:
        result.stdout.fnmatch_lines([f"*--{option.name}*"])
    group = result.stdout.str().split("energybench:", 1)[1].split("\n\n", 1)[0]
    given = {word.split("=")[0].rstrip(",") for word in group.split() if word.startswith("--")}
    assert given == {f"--{o.name}" for o in catalog.OPTIONS}


def test_every_option_has_an_ini_twin(pytester):
    config = pytester.parseconfig()
    for option in catalog.OPTIONS:
        assert config.getini(option.ini) in (None, False)


def test_the_registry_and_the_catalog_name_the_same_models():
    assert tuple(REGISTRY) == catalog.MODELS


def test_each_metric_declares_its_direction_unit_and_task():
    for metric in catalog.METRIC_LIST:
        assert metric.direction in ("lower", "higher") and metric.unit and metric.description
        assert metric.task in (None, *catalog.TASKS)
    assert catalog.QUALITY_METRICS == {"sequence-classification": "accuracy", "causal-lm": "perplexity"}


def test_a_metric_with_no_direction_is_refused_with_the_accepted_ones():
    with pytest.raises(ValueError, match="accepted: lower, higher"):
        catalog.Metric("f1", "up", "fraction", "my F1")


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [(0.8073, "fraction", "80.73 %"), (0.0012345, "s", "1.234 ms"), (2**21, "bytes", "2.00 MiB"), (None, "s", "-")],
)
def test_one_unit_formatter_for_the_terminal_and_the_report(value, unit, shown):
    assert catalog.format_value(value, unit) == shown


def test_a_new_metric_is_one_catalog_entry_and_compare_summary_and_gate_follow(monkeypatch):
    """Adding a metric touches the catalog and the code that measures it, nothing else."""
    from energybench.results import summary
    from energybench.results.compare import compare_runs, parse_fail_on
    from tests.test_compare import run, single

    f1 = catalog.Metric("f1", "higher", "fraction", "macro F1 on the user's rows", deterministic=True)
    monkeypatch.setitem(catalog.METRICS, "f1", f1)

    before = run("a", [single("f1", 0.90, "fraction")])
    after = run("b", [single("f1", 0.85, "fraction")])
    [row] = compare_runs(before, after, parse_fail_on("f1:-1%")).rows
    assert row.verdict == "worse" and row.failed
    assert summary.format_value(after.records[0]) == "85.00 %"


def test_the_loss_rule_is_the_catalog_entry_s():
    """Accuracy loses points, perplexity percent, each in its own direction; one rule, one place."""
    accuracy, perplexity, latency = (catalog.METRICS[m] for m in ("accuracy", "perplexity", "latency"))
    assert accuracy.loss_unit == "pp" and perplexity.loss_unit == "%" and latency.loss_unit == "%"
    assert accuracy.loss(0.80, 0.81) == pytest.approx(1.0) and str(accuracy.loss(0.8, 0.8)) == "0.0"
    assert perplexity.loss(30.6, 30.0) == pytest.approx(2.0)
    assert latency.loss(0.9, 1.0) == pytest.approx(-10.0) and accuracy.loss(0.9, 1.0, "%") == pytest.approx(10.0)
    assert accuracy.change(0.80, 0.81) == pytest.approx(-1.0)


def test_a_run_s_own_metrics_live_in_its_table_not_in_the_catalog():
    table = catalog.MetricTable.of({"f1": {"direction": "higher", "unit": "fraction", "description": ""}})
    assert "f1" in table and "f1" not in catalog.METRICS and table.higher_is_better("f1")
    assert "f1" in table.comparable() and "latency" in table.comparable()
    with pytest.raises(KeyError, match="unknown metric 'recall'; known: accuracy, .*; this run's own: f1"):
        table["recall"]
    with pytest.raises(ValueError, match="already declared as higher is better in 'fraction'"):
        table.declare(catalog.Metric("f1", "lower", "fraction", "", custom=True))
    with pytest.raises(ValueError, match="'latency' is a built-in energybench metric"):
        table.declare(catalog.Metric("latency", "lower", "s", "", custom=True))
