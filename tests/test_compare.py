"""Compare and gate: directions, statistical verdicts, the comparability guard, --fail-on parsing."""

import dataclasses
import json

import numpy as np
import pytest

from energybench.catalog import METRICS
from energybench.results import alignment, rendering
from energybench.results.compare import CompareError, compare_runs, parse_fail_on, render
from energybench.results.schema import Record, Run, TimingStats
from energybench.results.verdicts import rounds_verdict

SHAPE = {"batch_size": 1, "seq_len": 128}
SOURCE = {"kind": "embedded", "checkpoint": "embedded:distilbert@abc", "revision": None}
MACHINE = {"cpu": "EPYC", "torch": "2.13.0", "fingerprint": "f00d"}


def lognormal_rounds(rng, scale, n=30, cv=0.03):
    return scale * rng.lognormal(0.0, cv, n)


def timed(metric, rounds, **fields):
    timing = TimingStats.from_rounds(list(rounds))
    value = timing.median_s if metric == "latency" else 32 / timing.median_s
    return Record(
        "distilbert",
        fields.pop("precision", "int8"),
        metric,
        value,
        "s" if metric == "latency" else "samples/s",
        method="m",
        timing=timing,
        shape=SHAPE,
        source=SOURCE,
        details={"implementation": "torch.ao dynamic"},
        **fields,
    )


def single(metric, value, unit, **fields):
    return Record(
        "distilbert",
        "int8",
        metric,
        value,
        unit,
        method=fields.pop("method", "m"),
        shape=SHAPE,
        source=SOURCE,
        details={"implementation": "torch.ao dynamic", **fields.pop("details", {})},
        **fields,
    )


def run(run_id, records, machine=MACHINE):
    return Run(
        run_id,
        "2026-11-24T00:00:00+00:00",
        "2026-11-24T00:01:00+00:00",
        "0.1.0",
        dict(machine),
        {"id": "abc"},
        {},
        {},
        records,
    )


def test_a_a_comparisons_at_3pct_noise_raise_at_most_1pct_false_alarms():
    rng = np.random.default_rng(7)
    verdicts = [
        rounds_verdict(METRICS["latency"], lognormal_rounds(rng, 1.0), lognormal_rounds(rng, 1.0)).verdict
        for _ in range(1000)
    ]
    false_alarms = sum(v in ("worse", "better") for v in verdicts)
    assert false_alarms <= 10, false_alarms
    assert verdicts.count("same") >= 900  # and most say "same" rather than "inconclusive"


@pytest.mark.parametrize("metric, per_round", [("latency", lambda s: s), ("throughput", lambda s: 32 / s)])
def test_a_10pct_regression_at_30_rounds_is_detected_95pct_of_the_time(metric, per_round):
    rng = np.random.default_rng(11)
    detected = 0
    for _ in range(200):
        a = lognormal_rounds(rng, 1.0)
        b = lognormal_rounds(rng, 1.10)  # 10 % slower rounds: worse for latency and throughput alike
        detected += rounds_verdict(METRICS[metric], per_round(a), per_round(b)).verdict == "worse"
    assert detected >= 190, detected


def test_too_few_rounds_is_inconclusive_and_says_how_many_would_decide():
    rng = np.random.default_rng(3)
    found = rounds_verdict(
        METRICS["latency"], lognormal_rounds(rng, 1.0, n=4, cv=0.08), lognormal_rounds(rng, 1.03, n=4, cv=0.08)
    )
    assert found.verdict == "inconclusive"
    assert found.rounds_needed > 4 and f"about {found.rounds_needed} rounds" in found.basis


def test_directions_and_the_gate():
    rng = np.random.default_rng(5)
    a = run(
        "A",
        [
            timed("latency", lognormal_rounds(rng, 0.010)),
            single("accuracy", 0.80, "fraction"),
            single("size", 1000.0, "bytes"),
            single("perplexity", 100.0, "ppl"),
        ],
    )
    b = run(
        "B",
        [
            timed("latency", lognormal_rounds(rng, 0.012)),
            single("accuracy", 0.79, "fraction"),
            single("size", 500.0, "bytes"),
            single("perplexity", 101.0, "ppl"),
        ],
    )
    result = compare_runs(a, b, parse_fail_on("latency:+10%,accuracy:-0.5pp,perplexity:+2%"))
    rows = {row.metric: row for row in result.rows}
    assert rows["latency"].verdict == "worse" and rows["latency"].failed and rows["latency"].change_pct > 10
    assert rows["accuracy"].verdict == "worse" and rows["accuracy"].change_pp == pytest.approx(1.0)
    assert rows["accuracy"].failed  # 1 pp lost > 0.5 pp allowed
    assert rows["size"].verdict == "better" and rows["size"].change_pct == pytest.approx(-50.0)
    assert rows["perplexity"].verdict == "worse" and not rows["perplexity"].failed  # +1 % within +2 %
    assert {r.metric for r in result.regressions} == {"latency", "accuracy"}


def test_a_comparison_across_machines_is_refused_with_its_reason():
    rng = np.random.default_rng(1)
    other = {**MACHINE, "cpu": "Xeon", "fingerprint": "beef"}
    result = compare_runs(
        run("A", [timed("latency", lognormal_rounds(rng, 1.0))]),
        run("B", [timed("latency", lognormal_rounds(rng, 2.0))], machine=other),
        parse_fail_on("latency:+10%"),
    )
    [row] = result.rows
    assert row.verdict == "not comparable" and not row.failed
    assert "different machine fingerprint f00d vs beef" in row.basis and "cpu 'EPYC' vs 'Xeon'" in row.basis
    assert "not comparable: different machine fingerprint" in render(result)


@pytest.mark.parametrize(
    "change, why",
    [
        ({"shape": {"batch_size": 8, "seq_len": 128}}, "different shape"),
        ({"source": {**SOURCE, "revision": "v2"}}, "different model source"),
        ({"details": {"implementation": "torchao"}}, "different precision implementation"),
    ],
)
def test_unlike_records_are_not_compared(change, why):
    a = single("size", 100.0, "bytes")
    b = Record(**{**a.__dict__, **change})
    [row] = compare_runs(run("A", [a]), run("B", [b])).rows
    assert row.verdict == "not comparable" and why in row.basis


def test_estimated_energy_is_shown_but_never_gates():
    a = single("energy", 1.0, "J/sample", method="estimated: codecarbon", basis="estimated")
    b = single("energy", 2.0, "J/sample", method="estimated: codecarbon", basis="estimated")
    [row] = compare_runs(run("A", [a]), run("B", [b]), parse_fail_on("energy:+10%")).rows
    assert row.verdict == "worse" and row.change_pct == pytest.approx(100.0)
    assert not row.failed and not row.gated and "never gated" in row.basis


def test_measured_energy_gates():
    a = single("energy", 1.0, "J/sample", method="measured: nvml", basis="measured")
    b = single("energy", 1.2, "J/sample", method="measured: nvml", basis="measured")
    [row] = compare_runs(run("A", [a]), run("B", [b]), parse_fail_on("energy:+10%")).rows
    assert row.failed and "single value" in row.basis


def test_missing_and_unmeasured_rows_are_shown_not_failed():
    a = run("A", [single("size", 1.0, "bytes"), single("memory", 5.0, "bytes")])
    b = run("B", [single("memory", None, "bytes", status="skipped", reason="no growth")])
    rows = {row.metric: row for row in compare_runs(a, b, parse_fail_on("memory:+1%")).rows}
    assert rows["size"].verdict == "missing" and rows["memory"].verdict == "not measured"
    assert "no growth" in rows["memory"].basis and not any(r.failed for r in rows.values())


@pytest.mark.parametrize("fmt", rendering.FORMATS)
def test_every_format_holds_the_rows(fmt):
    a, b = run("A", [single("size", 1000.0, "bytes")]), run("B", [single("size", 1500.0, "bytes")])
    text = render(compare_runs(a, b, parse_fail_on("size:+10%")), fmt)
    if fmt == "json":
        [row] = json.loads(text)["rows"]
        assert row["failed"] and row["change_pct"] == pytest.approx(50.0)
    else:
        assert "size" in text and ("50.00 % worse" in text or "50.0" in text)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("speed:+10%", "unknown metric 'speed'"),
        ("latency:10%", "not metric:<sign><number><unit>"),
        ("latency:+10", "not metric:<sign><number><unit>"),
        ("latency:+ten%", "not metric:<sign><number><unit>"),
        ("latency:-10%", "latency gets worse in the + direction; write latency:+10%"),
        ("accuracy:+1pp", "accuracy gets worse in the - direction"),
        ("latency:+1pp", "'pp' (points) applies to accuracy, flips, agreement, recovery only"),
    ],
)
def test_a_malformed_fail_on_is_one_clear_error(spec, message):
    with pytest.raises(CompareError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse_fail_on(spec)


def test_a_well_formed_fail_on():
    limits = parse_fail_on(" latency:+10% , accuracy:-0.5pp,throughput:-5%")
    assert limits["accuracy"].amount == 0.5 and limits["accuracy"].unit == "pp"
    assert str(limits["throughput"]) == "throughput:-5%"


# -- blocks, history bands ------------------------------------------------------------------
def blocked(rng, scale, blocks=5, rounds=6, drift_cv=0.03, cv=0.02, metric="latency", **fields):
    """Rounds in blocks, each block at its own machine speed (drift between the minutes of a run)."""
    levels = scale * rng.lognormal(0.0, drift_cv, blocks)
    timing = TimingStats.from_blocks([level * rng.lognormal(0.0, cv, rounds) for level in levels])
    value = timing.median_s if metric == "latency" else 32 / timing.median_s
    unit = "s" if metric == "latency" else "samples/s"
    return Record(
        "distilbert",
        "fp32",
        metric,
        value,
        unit,
        method="m",
        timing=timing,
        shape=SHAPE,
        source=SOURCE,
        details={"implementation": "eager"},
        **fields,
    )


def test_blocks_keep_their_rounds_and_a_between_block_spread():
    timing = TimingStats.from_blocks([[1.0, 1.1], [2.0, 2.2], [3.0]])
    assert timing.rounds == 5 and timing.blocks_s == ((1.0, 1.1), (2.0, 2.2), (3.0,))
    assert timing.block_medians_s == pytest.approx((1.05, 2.1, 3.0))
    assert timing.between_block_cv == pytest.approx(np.std([1.05, 2.1, 3.0], ddof=1) / np.mean([1.05, 2.1, 3.0]))
    assert TimingStats.from_rounds([1.0, 2.0]).blocks_s == ((1.0, 2.0),)


def test_an_old_run_without_blocks_reads_as_one_block():
    record = timed("latency", [0.01, 0.011, 0.012]).to_dict()
    del record["timing"]["blocks_s"], record["timing"]["between_block_cv"]
    old = {**run("A", []).to_dict(), "schema_version": 1, "records": [record]}
    [loaded] = Run.from_dict(old).records
    assert loaded.timing.blocks_s == ((0.01, 0.011, 0.012),) and loaded.timing.between_block_cv is None
    assert Run.from_dict(old).schema_version == 2


@pytest.mark.parametrize("metric", ["latency", "throughput"])
def test_block_medians_decide_with_a_between_blocks_band(metric):
    rng = np.random.default_rng(2)
    same = compare_runs(run("A", [blocked(rng, 1.0, metric=metric)]), run("B", [blocked(rng, 1.0, metric=metric)]))
    [row] = same.rows
    assert row.verdict in ("same", "inconclusive") and row.band == "between blocks"
    assert "Welch t on 5 vs 5 block medians" in row.basis and row.ci95_pct[0] < 0 < row.ci95_pct[1]
    slow = compare_runs(run("A", [blocked(rng, 1.0, metric=metric)]), run("B", [blocked(rng, 1.3, metric=metric)]))
    [row] = slow.rows
    assert row.verdict == "worse" and row.change_pct > 20 and row.ci95_pct[0] > 10


def test_a_a_with_drift_between_blocks_raises_at_most_1pct_false_alarms():
    rng = np.random.default_rng(9)
    verdicts = [
        compare_runs(run("A", [blocked(rng, 1.0, drift_cv=0.08)]), run("B", [blocked(rng, 1.0, drift_cv=0.08)]))
        .rows[0]
        .verdict
        for _ in range(300)
    ]
    assert sum(v in ("worse", "better") for v in verdicts) <= 3


def test_too_few_blocks_to_decide_says_how_many_would():
    rng = np.random.default_rng(4)
    a, b = blocked(rng, 1.0, blocks=2, drift_cv=0.1), blocked(rng, 1.08, blocks=2, drift_cv=0.1)
    [row] = compare_runs(run("A", [a]), run("B", [b])).rows
    assert row.verdict == "inconclusive" and f"about {row.rounds_needed} blocks per run would decide" in row.basis


def history_runs(rng, values, machine=MACHINE):
    """Saved runs of one latency record each, with the given run-to-run levels."""
    return [
        dataclasses.replace(
            run(f"H{i}", [blocked(rng, v, drift_cv=0.01)], machine=machine), started_at=f"2026-11-{i + 1:02d}"
        )
        for i, v in enumerate(values)
    ]


def test_the_history_of_the_same_machine_widens_the_band_to_its_run_to_run_spread():
    rng = np.random.default_rng(6)
    history = history_runs(rng, [1.0, 1.2, 0.9, 1.1, 1.0])  # runs drift by ~11 % between them
    a, b = run("A", [blocked(rng, 1.0, drift_cv=0.01)]), run("B", [blocked(rng, 1.2, drift_cv=0.01)])
    [without] = compare_runs(a, b).rows
    [with_history] = compare_runs(a, b, history=history).rows
    assert without.verdict == "worse" and without.band == "between blocks"
    assert with_history.verdict == "same" and with_history.band.startswith("history of 5 runs")
    values = [r.records[0].value for r in history]
    assert with_history.band_pct == pytest.approx(alignment.HISTORY_K * 100 * np.std(values, ddof=1) / np.mean(values))
    [real] = compare_runs(a, run("B", [blocked(rng, 1.6, drift_cv=0.01)]), history=history).rows
    assert real.verdict == "worse"  # never "same" when the change is larger than the drift


def test_the_history_band_ignores_other_machines_and_too_short_histories():
    rng = np.random.default_rng(8)
    a, b = run("A", [blocked(rng, 1.0, drift_cv=0.01)]), run("B", [blocked(rng, 1.2, drift_cv=0.01)])
    elsewhere = history_runs(rng, [1.0, 1.5, 0.7, 1.2], machine={**MACHINE, "fingerprint": "beef"})
    short = history_runs(rng, [1.0, 1.5])
    for history in (elsewhere, short):
        [row] = compare_runs(a, b, history=history).rows
        assert row.band == "between blocks" and row.verdict == "worse"
