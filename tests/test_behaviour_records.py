"""Energy at equal quality, as a user meets it: the suite records flips, recovery, agreement and
output KL against fp32 from the quality pass, a behaviour budget fails its test, each timed case
names the operators it ran, and a precision that converts nothing is flagged a fallback."""

from __future__ import annotations

import json

from energybench import cli
from energybench.measure.quality import unpack_bits

FAST = ("--rounds", "3", "--blocks", "1", "--warmup-rounds", "1", "-p", "no:cacheprovider")


def saved_records(pytester) -> list[dict]:
    [path] = sorted((pytester.path / "reports" / "runs").glob("*/run.json"))
    return json.loads(path.read_text())["records"]


def test_classifier_flips_and_recovery_come_from_the_accuracy_pass(suite):
    result = suite.runpytest_subprocess(
        "benchmarks", "--model", "distilbert", "--precision", "fp32,int8", "--metric", "accuracy", *FAST
    )
    result.assert_outcomes(passed=2)
    records = saved_records(suite)
    by = {(r["precision"], r["metric"]): r for r in records}
    assert ("fp32", "flips") not in by  # fp32 is the reference: nothing to measure against itself
    fp32, int8, flips = by[("fp32", "accuracy")], by[("int8", "accuracy")], by[("int8", "flips")]
    total = fp32["details"]["total"]
    labels = [unpack_bits(r["details"]["predicted_bits"], total) for r in (fp32, int8)]
    flipped = sum(a != b for a, b in zip(*labels, strict=True))
    assert flips["details"]["flipped"] == flipped and flips["value"] == flipped / total  # counted exactly
    low, high = flips["details"]["ci95"]
    assert low <= flips["value"] <= high and flips["unit"] == "fraction"
    recovery = by[("int8", "recovery")]
    assert abs(recovery["value"] - int8["value"] / fp32["value"]) < 1e-9
    assert "same SST-2 validation sentences" in flips["method"]
    assert cli.main(["report", "latest", "--reports-dir", str(suite.path / "reports")]) == 0
    [page] = (suite.path / "reports" / "runs").glob("*/report/index.html")
    shown = f"flips {100 * flips['value']:.2f} % [{100 * low:.2f}, {100 * high:.2f}]"
    assert shown in page.read_text()  # beside the quality loss in the answer table


def test_a_flips_budget_fails_the_quality_test_with_one_line(suite):
    result = suite.runpytest_subprocess(
        "benchmarks",
        *("--model", "distilbert", "--precision", "fp32,int8", "--metric", "accuracy", *FAST),
        *("--flips-budget", "int8=0"),
    )
    flips = next(r for r in saved_records(suite) if r["metric"] == "flips")
    if flips["details"]["flipped"] == 0:  # the embedded int8 happens to flip no sentence: the budget holds
        result.assert_outcomes(passed=2)
        assert flips["budget"]["passed"] is True
    else:
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*flips int8 * vs fp32 baseline 0.0000: loss * pp exceeds budget 0.00 pp*"])
        assert flips["status"] == "budget-breach"


def test_causal_lm_agreement_and_kl_are_traced_against_fp32(suite):
    result = suite.runpytest_subprocess(
        "benchmarks",
        *("--model", "gpt2", "--precision", "int8,fp32", "--metric", "perplexity", "--max-samples", "40", *FAST),
    )
    result.assert_outcomes(passed=2)
    by = {(r["precision"], r["metric"]): r for r in saved_records(suite)}
    agreement, kl = by[("int8", "agreement")], by[("int8", "output-kl")]
    assert 0.5 < agreement["value"] < 1.0 and kl["value"] > 0 and kl["unit"] == "nats"
    assert "exact" in kl["method"] and kl["details"]["tokens"] == agreement["details"]["tokens"]
    recovery = by[("int8", "recovery")]["value"]
    fp32, int8 = by[("fp32", "perplexity")]["value"], by[("int8", "perplexity")]["value"]
    assert abs(recovery - fp32 / int8) < 1e-6
    buckets = by[("fp32", "perplexity")]["details"]["perplexity_by_position"]
    assert [b["label"] for b in buckets] == ["0-127", "128-511", "512+"]
    assert sum(b["tokens"] for b in buckets) == by[("fp32", "perplexity")]["details"]["scored_tokens"]
    assert cli.main(["report", "latest", "--reports-dir", str(suite.path / "reports")]) == 0
    [folder] = (suite.path / "reports" / "runs").glob("*/report")
    assert (folder / "perplexity-by-position-gpt2.png").is_file()  # one figure in the report


FORCED_FALLBACK = """
import torch
from energybench.models import precision


def identity(model, device):  # "int8" that converts nothing: fp32 weights, float kernels
    return precision.Converted(model.to(device).float(), "int8", "converts nothing (a test's forced fallback)")


precision.CONVERTERS["int8"] = precision.Converter("int8", "forced fallback", precision.int8_reason, identity)
"""


def test_each_timed_case_names_its_kernels_and_a_forced_fallback_is_flagged(suite):
    suite.makeconftest(FORCED_FALLBACK)
    result = suite.runpytest_subprocess(
        "benchmarks", "--model", "distilbert", "--precision", "fp32,int8", "--metric", "latency", *FAST
    )
    result.assert_outcomes(passed=2)
    by = {r["precision"]: r for r in saved_records(suite)}
    fp32, int8 = by["fp32"]["details"], by["int8"]["details"]
    assert fp32["kernel_path"]["status"] == "not-quantized" and "fallback" not in fp32
    assert int8["kernel_path"]["status"] == "fallback" and "quantized::linear_dynamic" in int8["fallback"]
    assert any(o["name"] == "aten::addmm" for o in int8["kernel_path"]["operators"])
    assert cli.main(["report", "latest", "--reports-dir", str(suite.path / "reports")]) == 0
    [page] = (suite.path / "reports" / "runs").glob("*/report/index.html")
    assert "FALLBACK, not a quantized result" in page.read_text()  # never shown as a quantized result
