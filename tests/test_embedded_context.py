"""The embedded GPT-2 uses its context: more context per scored token never raises its perplexity."""

import torch

from energybench import data
from energybench.measure.quality import max_positions, perplexity, tokenize_long_text
from energybench.models.embedded import load_or_build


def test_the_embedded_gpt2_scores_better_with_more_context(embedded_cache):
    """Perplexity on ``wiki.test.tokens`` at stride L/4 (each token scored with >= 3L/4 context) is at
    most that at stride L/2 (>= L/2 context). Not L/2 against L: stride L never scores a window's
    first token, so it scores a different set of tokens."""
    built = load_or_build("gpt2", cache_dir=embedded_cache / "embedded")  # the build the benchmarks use
    text, _ = data.wikitext2("test.tokens")
    ids = tokenize_long_text(built.tokenizer, text)
    context = max_positions(built.model)
    ppl = {
        stride: perplexity(
            built.model, ids, context=context, stride=stride, batch_size=32, device=torch.device("cpu")
        ).perplexity
        for stride in (context // 2, context // 4)
    }
    assert ppl[context // 4] <= ppl[context // 2], f"perplexity by stride (context {context}): {ppl}"
