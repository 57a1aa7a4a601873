import math

import pytest
import torch

from energybench.measure import quality as metrics
from energybench.measure.quality import strided_windows


@pytest.mark.parametrize("total, context, stride", [(100, 32, 16), (100, 32, 32), (33, 32, 8), (10, 32, 16)])
def test_strided_windows_score_every_token_once(total, context, stride):
    windows = strided_windows(total, context, stride)
    scored = [t for begin, end, n in windows for t in range(end - n, end)]
    assert scored == list(range(total))
    assert all(end - begin <= context for begin, end, _ in windows)


@torch.no_grad()
def hand_perplexity(model, ids, context, stride):
    """The Hugging Face guide's loop, token by token: each token's NLL given at most `context` tokens of
    the window it is scored in (the first token of the text has no prediction)."""
    nll, count = 0.0, 0
    for begin, end, target_len in strided_windows(len(ids), context, stride):
        window = ids[begin:end]
        logprobs = torch.log_softmax(model(window[None]).logits[0].float(), -1)
        for j in range(max(len(window) - target_len, 1), len(window)):
            nll -= float(logprobs[j - 1, window[j]])
            count += 1
    return math.exp(nll / count), count


@pytest.mark.parametrize("context, stride, batch_size", [(64, 64, 1), (32, 16, 4), (32, 8, 3)])
def test_perplexity_equals_hand_computation(tiny_gpt2, context, stride, batch_size):
    ids = torch.randint(0, 97, (150,), generator=torch.Generator().manual_seed(3))
    expected, count = hand_perplexity(tiny_gpt2, ids, context, stride)
    result = metrics.perplexity(
        tiny_gpt2, ids, context=context, stride=stride, batch_size=batch_size, device=torch.device("cpu")
    )
    assert result.scored_tokens == count
    # overlapping windows score every token but the first; non-overlapping ones also lose each window's first
    assert count == (149 if stride < context else 150 - len(strided_windows(150, context, stride)))
    assert result.perplexity == pytest.approx(expected, rel=1e-5)


def test_single_window_perplexity_is_exp_of_mean_token_nll(tiny_gpt2):
    ids = torch.randint(0, 97, (40,), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = tiny_gpt2(ids[None]).logits[0]
    nll = torch.nn.functional.cross_entropy(logits[:-1], ids[1:])
    result = metrics.perplexity(tiny_gpt2, ids, context=64, stride=32, batch_size=1, device=torch.device("cpu"))
    assert result.perplexity == pytest.approx(math.exp(float(nll)), rel=1e-5)


def test_perplexity_rejects_a_stride_longer_than_the_context(tiny_gpt2):
    with pytest.raises(ValueError, match="stride must be in 1..context"):
        metrics.perplexity(tiny_gpt2, torch.arange(10), context=8, stride=9, batch_size=1, device=torch.device("cpu"))


def test_dynamic_padding_predicts_like_fixed_padding(tiny_distilbert, word_tokenizer):
    from energybench import data

    examples = data.sst2("validation")[0][:64]
    dynamic = metrics.accuracy(tiny_distilbert, word_tokenizer, examples, batch_size=8, device=torch.device("cpu"))
    fixed = metrics.accuracy(
        tiny_distilbert, word_tokenizer, examples, batch_size=8, device=torch.device("cpu"), pad_to=128
    )
    assert dynamic.correct == fixed.correct
    assert dynamic.total == 64 and dynamic.padding == "length-sorted dynamic"


def test_label_order_follows_id2label(tiny_distilbert):
    tiny_distilbert.config.id2label = {0: "POSITIVE", 1: "NEGATIVE"}
    assert metrics.label_order(tiny_distilbert) == [1, 0]
    tiny_distilbert.config.id2label = {0: "LABEL_0", 1: "LABEL_1"}
    assert metrics.label_order(tiny_distilbert) == [0, 1]
