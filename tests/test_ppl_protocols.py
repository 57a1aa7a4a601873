"""Perplexity protocols: the HF guide's strided windows and the GPTQ/AWQ papers' non-overlapping ones."""

from __future__ import annotations

import math
import types

import pytest
import torch

from energybench.measure import quality
from energybench.results.compare import record_incomparability
from energybench.results.schema import Record

CPU = torch.device("cpu")


@torch.no_grad()
def gptq_eval_ppl(model, ids, seqlen):
    """GPTQ's ``datautils``/``opt_eval`` loop as written there: ``nsamples = numel // seqlen`` windows,
    each window's mean shifted cross-entropy times ``seqlen``, summed, over ``nsamples * seqlen``."""
    nsamples = ids.numel() // seqlen
    nlls = []
    for i in range(nsamples):
        batch = ids[i * seqlen : (i + 1) * seqlen][None]
        logits = model(batch).logits[0].float()
        loss = torch.nn.functional.cross_entropy(logits[:-1], batch[0, 1:])
        nlls.append(float(loss) * seqlen)
    return math.exp(sum(nlls) / (nsamples * seqlen)), nsamples


@pytest.mark.parametrize("context, batch_size", [(32, 1), (40, 3)])
def test_non_overlapping_matches_the_gptq_loop(tiny_gpt2, context, batch_size):
    ids = torch.randint(0, 97, (150,), generator=torch.Generator().manual_seed(5))
    expected, windows = gptq_eval_ppl(tiny_gpt2, ids, context)
    result = quality.perplexity(
        tiny_gpt2, ids, context=context, stride=7, batch_size=batch_size, device=CPU, protocol="non-overlapping"
    )
    assert (result.windows, result.stride, result.protocol) == (windows, context, "non-overlapping")
    assert result.scored_tokens == windows * (context - 1)  # the tail is dropped, each window's first token too
    assert result.perplexity == pytest.approx(expected, rel=1e-5)


def test_the_two_protocols_differ_on_the_same_text(tiny_gpt2):
    ids = torch.randint(0, 97, (150,), generator=torch.Generator().manual_seed(6))
    args = {"context": 32, "stride": 16, "batch_size": 4, "device": CPU}
    strided = quality.perplexity(tiny_gpt2, ids, **args)
    paper = quality.perplexity(tiny_gpt2, ids, **args, protocol="non-overlapping")
    assert strided.protocol == "strided" and strided.scored_tokens == 149
    assert paper.scored_tokens == 4 * 31 and paper.perplexity != pytest.approx(strided.perplexity, rel=1e-6)


def test_a_text_shorter_than_one_window_and_an_unknown_protocol_are_refused(tiny_gpt2):
    with pytest.raises(ValueError, match="fewer than one non-overlapping window of 64"):
        quality.perplexity(
            tiny_gpt2, torch.arange(10), context=64, stride=64, batch_size=1, device=CPU, protocol="non-overlapping"
        )
    with pytest.raises(ValueError, match="accepted: strided, non-overlapping"):
        quality.perplexity(tiny_gpt2, torch.arange(10), context=8, stride=4, batch_size=1, device=CPU, protocol="x")


@pytest.mark.parametrize(
    "protocol, positions, context, stride, expected",
    [
        ("strided", 1024, None, None, (1024, 512)),
        ("strided", 1024, 256, 64, (256, 64)),
        ("non-overlapping", 4096, None, None, (2048, 2048)),  # the papers' 2048 where the model allows
        ("non-overlapping", 1024, None, None, (1024, 1024)),
        ("non-overlapping", 4096, 512, None, (512, 512)),
    ],
)
def test_protocol_context_defaults(protocol, positions, context, stride, expected):
    settings = types.SimpleNamespace(ppl_context=context, ppl_stride=stride)
    assert quality.protocol_context(positions, settings, protocol) == expected


def ppl_record(**details):
    return Record("gpt2", "fp32", "perplexity", 30.0, "perplexity", details=details)


def test_records_of_different_protocols_never_compare():
    strided = ppl_record(protocol="strided", context=1024, stride=512)
    paper = ppl_record(protocol="non-overlapping", context=1024, stride=1024)
    why = record_incomparability(strided, paper)
    assert why and why.startswith("different perplexity protocol")
    assert "non-overlapping" in why
    assert record_incomparability(strided, ppl_record(protocol="strided", context=1024, stride=512)) is None
    # a record saved before the protocol was recorded is the strided one (the only one there was)
    assert record_incomparability(strided, ppl_record(context=1024, stride=512)) is None
    assert record_incomparability(strided, ppl_record(protocol="strided", context=1024, stride=256))


def test_the_suite_records_the_papers_protocol_and_refuses_a_stride_for_it(suite, word_tokenizer):
    from tests.test_plugin import FAST, saved_runs

    torch.manual_seed(0)
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        vocab_size=len(word_tokenizer),
        bos_token_id=0,
        eos_token_id=0,
    )
    checkpoint = suite.path.parent / f"{suite.path.name}-llama"
    LlamaForCausalLM(config).save_pretrained(checkpoint)
    word_tokenizer.save_pretrained(checkpoint)
    run = ["benchmarks", "--model-path", str(checkpoint), "--precision", "fp32", "--metric", "perplexity"]
    result = suite.runpytest_subprocess(*run, "--ppl-protocol", "non-overlapping", "--max-samples", "5", *FAST)
    result.assert_outcomes(passed=1)
    (record,) = saved_runs(suite)[0]["records"]
    details = record["details"]
    assert (details["protocol"], details["context"], details["stride"], details["windows"]) == (
        "non-overlapping",
        128,  # the model's maximum: smaller than the papers' 2048
        128,
        5,
    )
    assert record["method"].startswith("non-overlapping windows perplexity (GPTQ/AWQ papers), context 128")
    refused = suite.runpytest_subprocess(*run, "--ppl-protocol", "non-overlapping", "--ppl-stride", "64", *FAST)
    assert refused.ret != 0
    refused.stderr.fnmatch_lines(["*--ppl-stride applies to --ppl-protocol strided*"])
    assert "Traceback" not in refused.stderr.str()
