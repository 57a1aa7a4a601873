"""Generation: exact greedy decoding with the KV cache (against model.generate), decode metered
apart from prefill, and the `generation` benchmark as users run it."""

from __future__ import annotations

import json

import pytest
import torch

from energybench.measure import generation

FAST = [*("--rounds", "3", "--blocks", "1", "--warmup-rounds", "1", "--meters", "none"), *("-p", "no:cacheprovider")]
CPU = torch.device("cpu")


@pytest.fixture
def gpt2_eos_first():
    """A tiny GPT-2 whose EOS is the token greedy decoding wants first: generate() would stop there."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=97, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    prompt = torch.randint(1, 97, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        first = int(model(input_ids=prompt).logits[0, -1].argmax())
    model.config.eos_token_id = model.generation_config.eos_token_id = first
    model.generation_config.pad_token_id = first
    return model, prompt


def test_greedy_decoding_gives_exactly_the_tokens_of_generate_with_no_early_stop(gpt2_eos_first):
    model, prompt = gpt2_eos_first
    found = generation.greedy(model, prompt, 6, CPU, generation.empty_cache(model))
    with torch.inference_mode():
        row = prompt[:1]
        plain = model.generate(input_ids=row, attention_mask=torch.ones_like(row), max_new_tokens=6)
    assert plain.shape[1] - row.shape[1] == 1  # left alone, generate stops at the EOS it wants first
    eos = model.generation_config.eos_token_id
    assert found.tokens.shape == (2, 6) and eos not in found.tokens.flatten().tolist()
    assert len(found.decode_s) == 5 and found.prefill_s > 0 and all(s > 0 for s in found.decode_s)
    # the cache holds prompt + 5 decoded tokens: layers x (keys, values) x batch x positions x width x 4 bytes
    assert found.cache_bytes == 2 * 2 * 2 * (10 + 5) * 32 * 4
    assert found.decode_tokens_per_s == pytest.approx(2 * 5 / sum(found.decode_s))
    state, _ = generation.prefill(model, prompt, CPU)  # the energy window's prefill picks generate's first token
    assert torch.equal(state.first_token[:, 0], found.tokens[:, 0]) and state.cache.get_seq_length() == 10


def test_decode_is_metered_from_a_rewound_prefilled_cache_with_no_prefill_in_it(gpt2_eos_first, monkeypatch):
    model, prompt = gpt2_eos_first
    reference = generation.greedy(model, prompt, 5, CPU)
    run = generation.decode_only_call(model, prompt, 5, CPU)
    prefills, outputs = [], []
    monkeypatch.setattr(generation, "prefill", lambda *a: prefills.append(a))  # a prefill in a call would show
    original = model.generate

    def generate(**kwargs):
        assert kwargs["cache"].get_seq_length() == 10  # rewound to the prompt: only its KV, no generated token
        outputs.append(original(**kwargs))
        return outputs[-1]

    monkeypatch.setattr(model, "generate", generate)
    run(), run()
    assert prefills == [] and len(outputs) == 2
    for out in outputs:  # each call decodes the same 4 tokens after the first, one token forward per step
        assert torch.equal(out[:, 11:], reference.tokens[:, 1:])


def test_one_new_token_has_no_decode_step_to_meter_alone(gpt2_eos_first):
    model, prompt = gpt2_eos_first
    assert generation.decode_only_call(model, prompt, 1, CPU) is None


def test_a_prompt_and_new_tokens_beyond_the_positions_name_both_numbers_and_the_maximum():
    assert generation.too_long(96, 32, 128) is None
    line = generation.too_long(120, 32, 128)
    assert "--seq-len 120 + --gen-tokens 32 = 152 exceeds the model's maximum of 128 positions" in line
    assert "give --seq-len <= 96" in line


def saved(pytester) -> list[dict]:
    return [json.loads(p.read_text())["records"] for p in sorted((pytester.path / "reports").glob("runs/*/run.json"))]


def test_generation_on_the_embedded_gpt2_fp32_and_int8(suite):
    result = suite.runpytest_subprocess(
        "benchmarks",
        "--model",
        "gpt2",
        "--metric",
        "generation",
        "--gen-tokens",
        "4",
        "--precision",
        "fp32,int8",
        *FAST,
    )
    result.assert_outcomes(passed=2)
    [records] = saved(suite)
    by = {(r["precision"], r["metric"]): r for r in records}
    for precision in ("fp32", "int8"):
        ttft, latency, throughput, memory, energy = (
            by[(precision, m)]
            for m in ("ttft", "decode-latency", "decode-throughput", "generation-memory", "generation-energy")
        )
        shape = {"batch_size": 1, "seq_len": 124, "gen_tokens": 4}  # prompt: 128 positions - 4 new tokens
        assert all(r["shape"] == shape for r in (ttft, latency, throughput, memory, energy))
        assert ttft["value"] > 0 and ttft["timing"]["rounds"] == 3
        steps = latency["timing"]["rounds_s"]
        assert len(steps) == 3 * 3 and latency["value"] == pytest.approx(latency["timing"]["median_s"])
        assert latency["details"]["p99_s"] >= latency["details"]["p90_s"] >= latency["value"] > 0
        assert throughput["value"] == pytest.approx(len(steps) / sum(steps))
        cache = 2 * 2 * (124 + 3) * 128 * 4  # layers x (k, v) x positions x width x fp32 bytes
        assert memory["details"]["kv_cache_bytes"] == cache and memory["value"] > 0
        assert energy["value"] is None and "no power meter" in energy["reason"]


FAKE_METER = """
import energybench.harness.session as session
from energybench.measure.meters.fake import FakeMeter
from energybench.measure.meters.selection import MeterSet

session.open_meters = lambda *args, **kwargs: MeterSet([FakeMeter(power_w=40.0, update_period_s=0.01)])
"""
METERED = ["--energy-min-s", "0.3", "--energy-min-calls", "2", "--idle-s", "0.1", "--meters", "auto"]


@pytest.mark.parametrize(
    ("gen_tokens", "window", "tokens"),
    [("4", "decode only", 3), ("1", "whole generation (prefill + decode)", 1)],
)
def test_energy_per_generated_token_is_metered_on_decode_only_or_labelled_whole(suite, gen_tokens, window, tokens):
    suite.makeconftest(FAKE_METER)
    args = ["--model", "gpt2", "--metric", "generation", "--gen-tokens", gen_tokens, "--precision", "fp32"]
    result = suite.runpytest_subprocess("benchmarks", *args, *FAST, *METERED)
    result.assert_outcomes(passed=1)
    [records] = saved(suite)
    energy = next(r for r in records if r["metric"] == "generation-energy")
    details = energy["details"]
    assert energy["basis"] == "measured" and details["window"] == window and window in energy["method"]
    assert details["items"] == details["calls"] * tokens  # generated tokens of batch 1 in the window
    assert energy["value"] == pytest.approx(details["energy_j"] / details["items"])
    assert details["energy_j"] == pytest.approx(40.0 * details["window_s"])
    if gen_tokens == "1":
        latency = next(r for r in records if r["metric"] == "decode-latency")
        assert latency["value"] is None and "there is no decode step" in latency["reason"]


def test_generation_of_a_classifier_is_a_skip_with_the_reason(suite):
    result = suite.runpytest_subprocess("benchmarks", "--model", "distilbert", "--metric", "generation", *FAST, "-rs")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["*generation needs a causal-lm model; distilbert is a sequence-classification model*"])
    [records] = saved(suite)
    assert {(r["metric"], r["status"]) for r in records} == {("generation", "skipped")}


def test_the_main_job_of_a_classifier_does_not_gain_generation_tests(suite):
    result = suite.runpytest_subprocess("benchmarks", "--model", "distilbert", "--collect-only", "-q", *FAST)
    assert "test_generation" not in result.stdout.str()


def test_a_prompt_and_new_tokens_beyond_the_model_are_one_usage_line(suite):
    args = ["--model", "gpt2", "--metric", "generation,size", "--seq-len", "120", "--precision", "fp32"]
    result = suite.runpytest_subprocess("benchmarks", *args, *FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --metric generation on gpt2: --seq-len 120 + --gen-tokens 32 = 152 exceeds the model's maximum "
            "of 128 positions; give --seq-len <= 96 or fewer --gen-tokens"
        ]
    )
    assert not (suite.path / "reports").exists()
