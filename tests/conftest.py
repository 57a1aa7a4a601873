"""Shared fixtures for the harness's own tests: tiny real architectures and a real tokenizer
built offline from the shipped SST-2 text (no hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    # Import, once and before any pytester test, the modules transformers and torch import lazily:
    # pytester restores sys.modules after each test, and a re-import would register torch ops twice.
    import torch.distributed._functional_collectives  # noqa: F401
    import transformers  # noqa: F401
    from transformers import (  # noqa: F401
        BertForSequenceClassification,
        DistilBertForSequenceClassification,
        GPT2LMHeadModel,
    )

    # torchao registers ops at import: a second import (after pytester's restore) would fail.
    from energybench.models.torchao_quant import torchao_reason

    torchao_reason()  # imports torchao once, quietly, where it is installed


# A test that asks for one of these runs pytest (pytester, suite, project: the suite or a user's
# project in a pytester folder) or reads the embedded build: slow, whatever else it does.
SLOW_FIXTURES = {"pytester", "suite", "project", "embedded_cache"}


def pytest_collection_modifyitems(items):
    for item in items:  # warnings are errors in the harness's own tests
        item.add_marker(pytest.mark.filterwarnings("error"), append=False)
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def word_tokenizer():
    """A word-level BERT-style fast tokenizer over the SST-2 validation vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from energybench import data

    words = sorted({w for s, _ in data.sst2("validation")[0] for w in s.lower().split()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_input_names=["input_ids", "attention_mask"],
    )


@pytest.fixture
def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=97)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture
def tiny_distilbert(word_tokenizer):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(
        n_layers=2,
        dim=32,
        n_heads=2,
        hidden_dim=64,
        vocab_size=len(word_tokenizer),
        max_position_embeddings=128,
        num_labels=2,
        pad_token_id=word_tokenizer.pad_token_id,
    )
    return DistilBertForSequenceClassification(config).eval()


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory):
    """One embedded-model cache for the whole test session: the first run builds, later runs load."""
    import os

    shared = os.environ.get("ENERGYBENCH_TEST_CACHE")  # reuse built models across test sessions
    return Path(shared) if shared else tmp_path_factory.mktemp("energybench-cache")


@pytest.fixture
def suite(pytester, embedded_cache, monkeypatch):
    monkeypatch.setenv("ENERGYBENCH_CACHE", str(embedded_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytester.makeini("[pytest]\n")  # the rootdir (and so reports/) is the project folder, as in a real checkout
    target = pytester.path / "benchmarks"
    target.mkdir()
    for file in BENCHMARKS.glob("*.py"):
        (target / file.name).write_text(file.read_text())
    return pytester
