"""The answer table and the recommendation, over saved runs of real Record objects; the CLI driven."""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest

from energybench.cli import main
from energybench.errors import UsageError
from energybench.results import store
from energybench.results.answer import answer_table, shape_note
from energybench.results.recommend import parse_budget, recommend
from energybench.results.schema import Budget, Record, Run
from energybench.results.summary import note
from tests.report_runs import SOURCES, make_run, timed

COMMON = {"source": SOURCES["distilbert"], "device": "cpu"}


def by_model(found):
    return {r.model: r for r in found}


def metered(run: Run) -> Run:
    """The run as a machine with a power meter records it: energy measured, not estimated."""
    run.records = [
        dataclasses.replace(r, basis="measured", method="measured: rapl") if r.metric == "energy" else r
        for r in run.records
    ]
    return run


def test_energy_winner_margin_and_basis():
    found = by_model(recommend(metered(make_run()), "energy"))
    bert = found["distilbert"]
    # int8 0.32 J (loss 0.5 pp within 1.0) beats mixed 0.42 J (no budget recorded) and fp32 0.50 J
    assert (bert.winner.config.precision, bert.runner_up.config.precision) == ("int8", "mixed")
    line = bert.line()
    assert "ship int8 on eager, batch 1: 0.32 J per item (measured energy)" in line
    assert "0.1 J (23.8 %) less than the runner-up mixed on eager" in line
    assert found["gpt2"].winner.config.precision == "int8"  # +2.38 % perplexity within 5 %


def test_budget_override_changes_the_winner():
    found = by_model(recommend(metered(make_run()), "energy", "accuracy:0.4pp"))
    assert found["distilbert"].winner.config.precision == "mixed"  # int8's 0.5 pp is now over
    assert found["gpt2"].winner.config.precision == "int8"  # an accuracy budget leaves perplexity's verdicts
    strict = by_model(recommend(metered(make_run()), "energy", "perplexity:1%"))
    assert (strict["gpt2"].winner.config.precision, strict["gpt2"].runner_up.config.precision) == ("fp32", "fp16")


def test_latency_objective_reads_per_item_at_each_batch():
    run = make_run(models=("distilbert",), layers=False)
    run.records += [
        Record(
            "distilbert",
            "int8",
            "latency",
            0.032,
            "s",
            method="m",
            timing=timed(0.032),
            shape={"batch_size": 8, "seq_len": 128},
            **COMMON,
        )
    ]
    found = recommend(run, "latency")[0]
    assert found.winner.label == "int8 on eager, batch 8"  # 4 ms per item beats 6 ms at batch 1
    assert "4.000 ms per item" in found.line() and "runner-up int8 on eager, batch 1" in found.line()


def test_a_margin_inside_the_rounds_spread_is_called_a_tie():
    run = make_run(models=("distilbert",), layers=False)
    batch8 = {"batch_size": 8, "seq_len": 128}
    for value, spread in ((0.0472, 0.3), (0.048, 0.3)):  # 5.90 vs 6.00 ms per item: 1.7 %, IQR about 19 %
        run.records += [
            Record(
                "distilbert",
                "int8" if value < 0.048 else "fp32",
                "latency",
                value,
                "s",
                method="m",
                timing=timed(value, spread),
                shape=batch8,
                **COMMON,
            )
        ]
    line = recommend(run, "latency")[0].line()
    assert "ship int8 on eager, batch 8" in line and "a tie: the margin is inside the rounds' spread" in line
    clear = recommend(make_run(models=("distilbert",), layers=False), "latency")[0].line()
    assert "a tie" not in clear


def test_nothing_meets_the_budget_names_the_closest():
    records = [
        Record("distilbert", "fp32", "accuracy", 0.80, "fraction", method="eval", **COMMON),
        Record(
            "distilbert",
            "int8",
            "accuracy",
            0.78,
            "fraction",
            method="eval",
            budget=Budget("fp32", 0.80, 2.0, 1.0, "pp", False),
            status="budget-breach",
            **COMMON,
        ),
        Record("distilbert", "int8", "energy", 0.3, "J/sample", method="m", basis="measured", **COMMON),
    ]
    found = recommend(run_of(records))[0]
    assert found.winner is None
    assert found.line() == (
        "distilbert: nothing meets the budget: closest int8 on eager, batch 1 at +2.00 pp accuracy loss, "
        "1.00 pp over its budget"
    )


def test_energy_not_measured_says_so_and_never_falls_back():
    reason = "no power meter on this machine (no RAPL, no NVML)"
    records = [
        Record("distilbert", "fp32", "accuracy", 0.80, "fraction", method="eval", **COMMON),
        Record("distilbert", "fp32", "latency", 0.01, "s", method="m", timing=timed(0.01), **COMMON),
        Record("distilbert", "fp32", "energy", None, "", status="skipped", reason=reason, **COMMON),
    ]
    found = recommend(run_of(records), "energy")[0]
    assert found.winner is None
    assert reason in found.line() and "--objective latency" in found.line()
    assert recommend(run_of(records), "latency")[0].winner.config.precision == "fp32"


@pytest.mark.parametrize("spec", ["accuracy", "accuracy:1.0%", "energy:1pp", "perplexity:-1%", "accuracy:x"])
def test_bad_budget_is_one_line(spec):
    with pytest.raises(UsageError, match="accepted: accuracy:<points>pp or perplexity:<percent>%"):
        parse_budget(spec)


def test_answer_table_ratios_and_per_thousand():
    table = answer_table(make_run())
    rows = {r.config.variant: r for r in table["distilbert"]}
    assert list(rows)[0] == "fp32"
    int8 = rows["int8"]
    assert int8.loss.value == pytest.approx(0.5) and int8.loss.passed and int8.loss.limit == 1.0
    assert int8.speedup == pytest.approx(0.0100 / 0.0060)
    assert int8.energy_ratio == pytest.approx(0.32 / 0.50)
    assert int8.size_ratio == pytest.approx(14 / 40)
    assert int8.energy_j_per_1000 == pytest.approx(320.0) and int8.energy_basis == "estimated"
    assert shape_note(make_run().records).startswith("latency at batch 1")


def test_records_csv_has_energy_per_thousand():
    rows = list(csv.DictReader(io.StringIO(store.records_csv(make_run().records))))
    energy = next(r for r in rows if (r["model"], r["precision"], r["metric"]) == ("distilbert", "int8", "energy"))
    assert float(energy["energy_j_per_1000"]) == pytest.approx(320.0)
    assert float(energy["energy_wh_per_1000"]) == pytest.approx(320.0 / 3600)
    latency = next(r for r in rows if r["metric"] == "latency")
    assert latency["energy_j_per_1000"] == ""


def test_cli_recommend(tmp_path, capsys):
    store.save_run(make_run(), tmp_path)
    assert main(["recommend", "--reports-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    estimated = "energy per item is only estimated here (estimated by codecarbon) and an estimate is never ranked on; "
    assert out[0].startswith(f"distilbert: {estimated}decided by the measured latency per item instead: ship int8 ")
    assert out[1].startswith("gpt2: " + estimated)
    assert main(["recommend", "latest", "--reports-dir", str(tmp_path), "--budget", "accuracy:2"]) == 0
    assert main(["recommend", "--reports-dir", str(tmp_path), "--budget", "speed:2x"]) == 2
    assert "--budget 'speed:2x': not a quality budget" in capsys.readouterr().err


def run_of(records: list[Record]) -> Run:
    return Run("20261124T100000Z-cccccc", "t", "t", "0.1.0", {}, {}, {}, {}, records)


def test_the_terminal_summary_gives_energy_per_thousand():
    energy = next(r for r in make_run().records if (r.precision, r.metric) == ("int8", "energy"))
    assert "320 J = 0.08889 Wh per 1,000 items" in note(energy)


def test_a_configuration_without_a_quality_record_is_named_not_chosen():
    run = metered(make_run(models=("distilbert",), layers=False))
    run.records.append(
        Record(
            "distilbert", "int8", "energy", 0.1, "J/sample", method="m", basis="measured", backend="compile", **COMMON
        )
    )
    found = recommend(run)[0]
    assert found.winner.config.variant == "int8"  # compile-int8 uses less energy, but its loss is unknown
    assert found.line().endswith("; not considered, no quality record: compile-int8")


def test_estimated_energy_is_never_ranked_and_measured_latency_decides():
    found = by_model(recommend(make_run(), "energy"))["distilbert"]
    assert found.winner.config.precision == "int8" and found.winner.unit == "s"  # 6 ms per item beats 10 ms
    line = found.line()
    assert line.startswith(
        "distilbert: energy per item is only estimated here (estimated by codecarbon) and an estimate is never "
        "ranked on; decided by the measured latency per item instead: ship int8 on eager, batch 1: 6.000 ms"
    )
    assert "(its estimated energy: 0.32 J per item at batch 1)" in line
    no_latency = make_run(models=("distilbert",), layers=False)
    no_latency.records = [r for r in no_latency.records if r.metric != "latency"]
    line = recommend(no_latency, "energy")[0].line()
    assert "only estimated here" in line and "latency per item, the measured figure that would decide" in line


def test_measured_energy_is_ranked_and_estimates_beside_it_are_named():
    run = make_run(models=("distilbert",), layers=False)
    run.records = [
        dataclasses.replace(r, basis="measured") if (r.precision, r.metric) == ("int8", "energy") else r
        for r in run.records
    ]
    found = recommend(run, "energy")[0]
    assert found.winner.config.precision == "int8" and found.runner_up is None
    assert found.line().endswith("; not ranked, energy only estimated: fp32, fp16")


def test_a_budget_on_the_runs_own_metric():
    declared = {"f1": {"direction": "higher", "unit": "fraction"}}
    assert parse_budget("f1:2pp", declared).higher_is_better and parse_budget("f1:5%", declared).unit == "%"
    with pytest.raises(UsageError, match="give the unit of the tolerated loss, e.g. f1:1pp or f1:2%"):
        parse_budget("f1:2", declared)
    with pytest.raises(UsageError, match=r"\(built-in\), or f1:<N>pp or <N>% \(this run's own metrics\); 'g'"):
        parse_budget("g:2pp", declared)
    run = metered(make_run(models=("distilbert",), layers=False))
    for precision, value in (("fp32", 0.90), ("int8", 0.85), ("fp16", 0.895)):
        run.records.append(Record("distilbert", precision, "f1", value, "fraction", method="mine", **COMMON))
    run.custom_metrics = declared
    assert recommend(run, "energy")[0].winner.config.precision == "int8"  # its accuracy loss is within budget
    assert recommend(run, "energy", "f1:1pp")[0].winner.config.precision == "fp32"  # int8 lost 5 pp of f1
    assert recommend(run, "energy", "f1:6pp")[0].winner.config.precision == "int8"


def behaviour(run: Run, flips: dict[str, float]) -> Run:
    """The run with flips records against fp32, as the quality pass makes them."""
    run.records += [
        Record("distilbert", p, "flips", value, "fraction", method="flips vs fp32", **COMMON)
        for p, value in flips.items()
    ]
    return run


def test_a_flips_budget_is_behaviour_against_fp32():
    run = behaviour(metered(make_run(models=("distilbert",))), {"int8": 0.012, "mixed": 0.004})
    assert recommend(run, "energy")[0].winner.config.precision == "int8"  # without a flips budget
    strict = recommend(run, "energy", "flips:1pp")[0]  # int8 flips 1.2 pp of the sentences: over
    assert strict.winner.config.precision == "mixed"
    none = recommend(run, "energy", "flips:0.1pp")[0]  # only fp32 itself flips nothing
    assert none.winner.config.precision == "fp32"
    assert parse_budget("output-kl:0.01").unit == "nats"
    with pytest.raises(UsageError, match="flips is judged in pp, e.g. flips:1"):
        parse_budget("flips:1%")


def test_a_fallback_is_never_recommended_and_is_named():
    run = metered(make_run(models=("distilbert",)))
    run.records = [
        dataclasses.replace(r, details={**r.details, "fallback": "ran none of quantized::linear_dynamic"})
        if (r.precision, r.metric) == ("int8", "latency")
        else r
        for r in run.records
    ]
    found = recommend(run, "energy")[0]
    assert found.winner.config.precision != "int8"
    assert "not considered, ran none of their quantized kernels (fallback): int8" in found.line()
