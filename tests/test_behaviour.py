"""Behaviour against fp32 from the quality pass: flips, agreement, output KL, recovery, by position."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from energybench import data
from energybench.measure import behaviour, quality
from energybench.measure.behaviour import LMTrace


def perplexity_pass(model, ids, tap=None, context=32, stride=8, batch_size=4):
    """One strided perplexity pass, traced as the quality pass traces it."""
    watching = tap.watching(model, int(ids.numel())) if tap is not None else None
    with watching if watching is not None else torch.inference_mode():
        return quality.perplexity(
            model, ids, context=context, stride=stride, batch_size=batch_size, device=torch.device("cpu"), tap=tap
        )


@pytest.fixture
def tokens():
    return torch.randint(0, 97, (300,), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def reference(tiny_gpt2, tokens):
    trace = LMTrace(keep_reference=True)
    result = perplexity_pass(tiny_gpt2, tokens, trace)
    return trace, result


def perturbed(model, scale=0.05, seed=2):
    """The same model with noise on its attention and MLP weights: a stand-in quantized model."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in other.named_parameters():
            if name.endswith("c_attn.weight") or name.endswith("c_fc.weight"):
                weight.add_(scale * torch.randn(weight.shape, generator=generator))
    return other


# -- causal LMs -----------------------------------------------------------------------------------
def test_fp32_against_itself_agrees_everywhere_with_no_kl_and_full_recovery(tiny_gpt2, tokens, reference):
    trace, _ = reference
    ref = trace.reference()
    assert ref.mode == "exact" and ref.head is not None and ref.kept_bytes > 0
    again = LMTrace(against=ref)
    perplexity_pass(tiny_gpt2, tokens, again)
    found = behaviour.lm_behaviour(again)
    assert found.agreement_pct == 100.0 and found.agreement_ci95_pct == (100.0, 100.0)
    assert abs(found.output_kl) < 1e-6 and found.kl_method == behaviour.EXACT_KL
    assert found.recovery.recovery_pct == pytest.approx(100.0) and found.recovery.ci95_pct == pytest.approx((100, 100))


def independent_kl(reference_model, model, tokens, context=32, stride=8):
    """Mean KL(fp32 || model) per scored token, by scipy's rel_entr over full softmaxes of both models."""
    from scipy.special import rel_entr

    total, count, agree = 0.0, 0, 0
    for begin, end, target_len in quality.strided_windows(int(tokens.numel()), context, stride):
        ids = tokens[begin:end][None]
        with torch.inference_mode():
            p = torch.softmax(reference_model(input_ids=ids).logits.double(), -1)[0, :-1].numpy()
            q = torch.softmax(model(input_ids=ids).logits.double(), -1)[0, :-1].numpy()
        first = max(end - begin - target_len, 1)
        p, q = p[first - 1 :], q[first - 1 :]
        total += float(rel_entr(p, q).sum())
        count += p.shape[0]
        agree += int(np.sum(p.argmax(-1) == q.argmax(-1)))
    return total / count, 100.0 * agree / count, count


def test_output_kl_and_agreement_match_an_independent_computation(tiny_gpt2, tokens, reference):
    trace, _ = reference
    other = perturbed(tiny_gpt2)
    mine = LMTrace(against=trace.reference())
    perplexity_pass(other, tokens, mine)
    found = behaviour.lm_behaviour(mine)
    kl, agreement, count = independent_kl(tiny_gpt2, other, tokens)
    assert found.tokens == count and kl > 1e-3  # the perturbation moves the distribution
    assert found.output_kl == pytest.approx(kl, rel=1e-4)
    assert found.agreement_pct == pytest.approx(agreement)
    low, high = found.output_kl_ci95
    assert low < found.output_kl < high
    torch_kl = independent_kl_div(tiny_gpt2, other, tokens[:32])
    first = mine.windows[0]
    assert first.kl == pytest.approx(torch_kl, abs=2e-6)  # float32 log-probs: about 1e-6 nats a token


def independent_kl_div(reference_model, model, window):
    """Per-token KL of one full window by torch.nn.functional.kl_div (log targets)."""
    with torch.inference_mode():
        lp = torch.log_softmax(reference_model(input_ids=window[None]).logits.double(), -1)[0, :-1]
        lq = torch.log_softmax(model(input_ids=window[None]).logits.double(), -1)[0, :-1]
    return torch.nn.functional.kl_div(lq, lp, reduction="none", log_target=True).sum(-1).numpy()


def test_the_top_k_reference_brackets_the_exact_kl_and_says_so(tiny_gpt2, tokens, reference, monkeypatch):
    exact_trace, _ = reference
    other = perturbed(tiny_gpt2)
    exact = LMTrace(against=exact_trace.reference())
    perplexity_pass(other, tokens, exact)
    monkeypatch.setattr(behaviour, "REFERENCE_BYTES_CAP", 0)  # too big to keep: top-k
    kept = LMTrace(keep_reference=True)
    perplexity_pass(tiny_gpt2, tokens, kept)
    ref = kept.reference()
    assert ref.mode == "top-k" and "cap" in ref.reason and not ref.hidden and ref.head is None
    bounded = LMTrace(against=ref)
    perplexity_pass(other, tokens, bounded)
    found, truth = behaviour.lm_behaviour(bounded), behaviour.lm_behaviour(exact).output_kl
    assert found.output_kl <= truth <= found.output_kl_upper
    assert found.kl_method.startswith("bounds: top-64")
    asked = LMTrace(keep_reference=True, exact=False)
    perplexity_pass(tiny_gpt2, tokens, asked)
    assert asked.reference().mode == "top-k" and "exact=False" in asked.reference().reason
    for begin, window in bounded.windows.items():  # per token too
        assert np.all(window.kl <= exact.windows[begin].kl + 1e-6)
        assert np.all(exact.windows[begin].kl <= window.kl_upper + 1e-6)


def test_with_the_whole_vocabulary_kept_the_bounds_close_on_the_exact_kl(tiny_gpt2, tokens, reference, monkeypatch):
    exact_trace, _ = reference
    other = perturbed(tiny_gpt2)
    exact = LMTrace(against=exact_trace.reference())
    perplexity_pass(other, tokens, exact)
    monkeypatch.setattr(behaviour, "REFERENCE_BYTES_CAP", 0)
    monkeypatch.setattr(behaviour, "TOP_K", 97)  # the tiny model's vocabulary
    kept = LMTrace(keep_reference=True)
    perplexity_pass(tiny_gpt2, tokens, kept)
    bounded = LMTrace(against=kept.reference())
    perplexity_pass(other, tokens, bounded)
    found, truth = behaviour.lm_behaviour(bounded), behaviour.lm_behaviour(exact).output_kl
    assert found.output_kl == pytest.approx(truth, rel=1e-4) and found.output_kl_upper == pytest.approx(truth, rel=1e-4)


def test_a_head_that_does_not_rebuild_the_logits_falls_back_to_the_top_k_bracket(tiny_gpt2, tokens):
    class Softcapped(torch.nn.Module):  # logits post-processed after the output layer
        def __init__(self, model):
            super().__init__()
            self.model = model

        def get_output_embeddings(self):
            return self.model.get_output_embeddings()

        def forward(self, input_ids):
            out = self.model(input_ids=input_ids)
            out.logits = 5.0 * torch.tanh(out.logits / 5.0)
            return out

    kept = LMTrace(keep_reference=True)
    perplexity_pass(Softcapped(tiny_gpt2), tokens, kept)
    ref = kept.reference()
    assert ref.mode == "top-k" and "rebuilt its log-probs only within" in ref.reason


def test_the_tap_leaves_the_perplexity_unchanged_and_its_tokens_add_up(tiny_gpt2, tokens, reference):
    trace, traced = reference
    plain = perplexity_pass(tiny_gpt2, tokens)
    assert traced == plain
    nll = sum(w.nll.sum() for w in trace.windows.values())
    assert nll == pytest.approx(plain.nll_per_token * plain.scored_tokens, rel=1e-7)  # float32 row sums there
    assert sum(w.nll.size for w in trace.windows.values()) == plain.scored_tokens


def test_position_buckets_sum_back_to_the_total_nll(tiny_gpt2, tokens, reference):
    trace, result = reference
    buckets = behaviour.position_buckets(trace.windows, edges=(0, 8, 24))
    assert [b.label for b in buckets] == ["0-7", "8-23", "24+"]
    assert sum(b.tokens for b in buckets) == result.scored_tokens
    assert sum(b.nll_sum for b in buckets) == pytest.approx(result.nll_per_token * result.scored_tokens, rel=1e-7)
    assert all(b.tokens > 0 and b.perplexity > 1 for b in buckets)
    # stride 8 of context 32: after the first window only positions 24..31 are scored
    assert buckets[0].tokens == 7 and buckets[1].tokens == 16
    empty = behaviour.position_buckets(trace.windows)  # 0-127, 128-511, 512+: a 32-token window fills one
    assert [b.tokens for b in empty[1:]] == [0, 0] and empty[1].perplexity is None


def test_a_pass_over_other_windows_is_refused_with_the_options_to_align(tiny_gpt2, tokens, reference):
    trace, _ = reference
    shorter = LMTrace(against=trace.reference())
    perplexity_pass(tiny_gpt2, tokens[:200], shorter)
    with pytest.raises(ValueError, match="same --ppl-context, --ppl-stride and --max-samples"):
        behaviour.lm_behaviour(shorter)
    with pytest.raises(ValueError, match="either keeps the fp32 reference or compares"):
        LMTrace(against=trace.reference(), keep_reference=True)


# -- classifiers ----------------------------------------------------------------------------------
class FlipWhere(torch.nn.Module):
    """A doctored classifier: the model's logits, swapped for inputs that hold ``token_id``."""

    def __init__(self, model, token_id):
        super().__init__()
        self.model, self.token_id, self.config = model, token_id, model.config

    def forward(self, **batch):
        out = self.model(**batch)
        hit = (batch["input_ids"] == self.token_id).any(-1)
        out.logits = torch.where(hit[:, None], out.logits.flip(-1), out.logits)
        return out


def test_a_doctored_model_that_flips_known_sentences_is_counted_exactly(tiny_distilbert, word_tokenizer):
    examples = data.sst2("validation")[0][:200]
    token_id = word_tokenizer.convert_tokens_to_ids("film")
    known = sum("film" in sentence.lower().split() for sentence, _ in examples)
    assert known > 5
    kwargs = dict(batch_size=16, device=torch.device("cpu"))
    ref = quality.accuracy(tiny_distilbert, word_tokenizer, examples, **kwargs)
    doctored = quality.accuracy(FlipWhere(tiny_distilbert, token_id), word_tokenizer, examples, **kwargs)
    labels = [quality.unpack_bits(r.predicted_bits, r.total) for r in (ref, doctored)]
    hits = [quality.unpack_bits(r.correct_bits, r.total) for r in (ref, doctored)]
    found = behaviour.flips(labels[0], labels[1], hits[0], hits[1])
    assert found.flipped == known and found.total == 200 and found.flips_pp == pytest.approx(100 * known / 200)
    assert found.lost + found.gained == known  # two labels: every flip changes correctness
    assert found.lost - found.gained == ref.correct - doctored.correct
    low, high = found.ci95_pp
    assert low < found.flips_pp < high


def test_fp32_against_itself_flips_nothing_and_the_ci_still_bounds_it(tiny_distilbert, word_tokenizer):
    examples = data.sst2("validation")[0][:100]
    ref = quality.accuracy(tiny_distilbert, word_tokenizer, examples, batch_size=16, device=torch.device("cpu"))
    labels = quality.unpack_bits(ref.predicted_bits, ref.total)
    hits = quality.unpack_bits(ref.correct_bits, ref.total)
    found = behaviour.flips(labels, labels, hits, hits)
    assert (found.flipped, found.lost, found.gained, found.flips_pp) == (0, 0, 0, 0.0)
    assert found.ci95_pp[0] == 0.0 and 3.0 < found.ci95_pp[1] < 4.0  # exact: 1 - 0.025 ** (1 / 100) = 3.6 %
    same = behaviour.accuracy_recovery(hits, hits)
    assert same.recovery_pct == pytest.approx(100.0) and same.ci95_pct == pytest.approx((100.0, 100.0))


def test_accuracy_recovery_is_the_ratio_with_a_paired_ci():
    ref = [True] * 80 + [False] * 20
    mine = [True] * 60 + [False] * 20 + [True] * 2 + [False] * 18  # 20 lost, 2 gained: 62 / 80
    found = behaviour.accuracy_recovery(ref, mine)
    assert found.recovery_pct == pytest.approx(100 * 62 / 80)
    assert (found.reference_value, found.value) == (0.8, 0.62)
    low, high = found.ci95_pct
    assert low < found.recovery_pct < high < 100.0  # paired: 20 lost / 2 gained is clear of no loss
    few = behaviour.accuracy_recovery(ref, [True] * 72 + [False] * 8 + [True] * 2 + [False] * 18)
    assert few.ci95_pct[1] >= 99.9  # 8 lost / 2 gained (McNemar p = 0.11): no loss is inside the CI
    with pytest.raises(ValueError, match="same sentences"):
        behaviour.accuracy_recovery(ref, mine[:10])


def test_perplexity_recovery_is_fp32_perplexity_over_this_one():
    counts = np.full(50, 10)
    ref = np.random.default_rng(0).normal(40.0, 2.0, 50)
    found = behaviour.perplexity_recovery(ref, ref + 1.0, counts)  # +0.1 nats per token
    assert found.recovery_pct == pytest.approx(100 * np.exp(-0.1))
    assert found.value / found.reference_value == pytest.approx(np.exp(0.1))
    assert found.ci95_pct == pytest.approx((found.recovery_pct, found.recovery_pct), abs=1e-6)  # a constant shift


def test_to_dict_is_json_ready(tiny_gpt2, tokens, reference):
    import json

    trace, _ = reference
    mine = LMTrace(against=trace.reference())
    perplexity_pass(perturbed(tiny_gpt2), tokens, mine)
    text = json.dumps(behaviour.lm_behaviour(mine).to_dict())
    assert '"agreement_pct"' in text and '"by_position"' in text


def test_a_few_losses_and_no_gain_keep_no_change_inside_the_ci_as_mcnemar_does():
    ref = [True] * 700 + [False] * 172
    mine = [False] * 3 + [True] * 697 + [False] * 172  # 3 lost, 0 gained: McNemar p = 0.25
    found = behaviour.accuracy_recovery(ref, mine)
    assert found.ci95_pct[0] < found.recovery_pct < 100.0 <= found.ci95_pct[1] + 1e-9
