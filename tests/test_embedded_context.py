"""The embedded models reach their targets on the real evaluation sets, on the builds the benchmarks use:
each causal LM scores better with more context, the embedded Llama is no worse than the embedded GPT-2
at the same context, and the embedded DistilBERT reaches 80 % on SST-2 validation."""

import pytest
import torch

from energybench import data
from energybench.measure.quality import accuracy, max_positions, perplexity, tokenize_long_text
from energybench.models.embedded import load_or_build

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def strided(embedded_cache):
    """Perplexity on ``wiki.test.tokens`` at context L and strides L/2 and L/4, per embedded LM (built once)."""
    text, _ = data.wikitext2("test.tokens")
    found: dict[str, dict[int, float]] = {}

    def of(name: str) -> dict[int, float]:
        if name not in found:
            built = load_or_build(name, cache_dir=embedded_cache / "embedded")  # the build the benchmarks use
            ids = tokenize_long_text(built.tokenizer, text)
            context = max_positions(built.model)
            results = {
                stride: perplexity(built.model, ids, context=context, stride=stride, batch_size=32, device=CPU)
                for stride in (context // 2, context // 4)
            }
            found[name] = {stride: result.perplexity for stride, result in results.items()}
        return found[name]

    return of


@pytest.mark.parametrize("name", ["gpt2", "smollm2"])
def test_the_embedded_causal_lms_score_better_with_more_context(strided, name):
    """Perplexity at stride L/4 (each token scored with >= 3L/4 context) is at most that at stride L/2
    (>= L/2 context). Not L/2 against L: stride L never scores a window's first token, so it scores a
    different set of tokens."""
    ppl = strided(name)
    half, quarter = sorted(ppl, reverse=True)
    assert ppl[quarter] <= ppl[half], f"{name} perplexity by stride: {ppl}"


def test_the_embedded_llama_is_no_worse_than_the_embedded_gpt2_at_the_same_context(strided):
    """Same context (128), same tokenizer (byte-level BPE of 4096 trained on the same text), same test text:
    per-token perplexities compare."""
    llama, gpt2 = strided("smollm2"), strided("gpt2")
    assert llama.keys() == gpt2.keys()
    assert all(llama[stride] <= gpt2[stride] for stride in llama), f"smollm2 {llama} vs gpt2 {gpt2}"


def test_the_embedded_distilbert_reaches_80_percent_on_sst2_validation(embedded_cache):
    built = load_or_build("distilbert", cache_dir=embedded_cache / "embedded")
    examples, _ = data.sst2("validation")
    result = accuracy(built.model, built.tokenizer, examples, batch_size=64, device=CPU)
    assert result.total == 872 and result.accuracy >= 0.80, f"{result.correct}/{result.total}"
