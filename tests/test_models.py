"""Model sources, offline: the hub path through a real (fake-populated) HF cache, local paths, fallbacks."""

import json
import os
import subprocess
import sys

import pytest
import torch

from energybench.models import registry as models
from energybench.models.registry import REGISTRY, ModelSourceError, resolve, resolve_path

HUB_SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


@pytest.fixture
def gpt2_checkpoint(tmp_path, word_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=1, n_embd=16, n_head=2, n_positions=32, vocab_size=len(word_tokenizer), bos_token_id=0, eos_token_id=0
    )
    folder = tmp_path / "my-gpt2"
    GPT2LMHeadModel(config).save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    return folder


def populate_hub_cache(cache, hub_id, checkpoint):
    """Lay a checkpoint out the way huggingface_hub caches a download."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / HUB_SHA
    snapshot.mkdir(parents=True)
    for file in checkpoint.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_SHA)


def test_auto_falls_back_to_embedded_offline_and_says_it_is_not_the_published_model(offline):
    source = resolve(REGISTRY["distilbert"], "auto")
    assert source.kind == "embedded" and source.checkpoint == "embedded:distilbert"
    assert len(source.revision) == 12  # recipe hash
    assert "NOT the published distilbert-base-uncased-finetuned-sst-2-english" in source.describe()


def test_hub_requested_without_hub_is_one_clear_error(offline):
    with pytest.raises(ModelSourceError) as error:
        resolve(REGISTRY["gpt2"], "hub")
    message = str(error.value)
    assert "openai-community/gpt2 is not in the local HF cache and HF_HUB_OFFLINE is set" in message
    assert "use --model-source auto or embedded" in message


@pytest.mark.slow  # a model build, a browser or a fresh process
def test_hub_source_from_the_local_cache_loads_offline(offline, gpt2_checkpoint):
    populate_hub_cache(offline, "openai-community/gpt2", gpt2_checkpoint)
    # huggingface_hub reads HF_HUB_CACHE at import: check in a fresh interpreter, as a user's session would
    script = (
        "from energybench.models import registry as models\n"
        "source = models.resolve(models.REGISTRY['gpt2'], 'auto')\n"
        "loaded = models.load(source)\n"
        "print(source.kind, source.revision, loaded.model.config.n_layer, loaded.tokenizer.pad_token_id is not None)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.split() == ["hub", HUB_SHA, "1", "True"], done.stderr


def test_shape_only_has_the_published_sizes_and_random_weights():
    source = resolve(REGISTRY["bert-base"], "shape-only")
    loaded = models.load(source)
    config = loaded.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (12, 768, 30522)
    assert loaded.tokenizer is None and "random weights" in source.note


def test_local_checkpoint_task_from_config(gpt2_checkpoint):
    source = resolve_path("custom", gpt2_checkpoint, None)
    assert (source.kind, source.task) == ("path", "causal-lm")
    assert models.load(source).model.config.n_layer == 1


def test_missing_path(tmp_path):
    with pytest.raises(ModelSourceError, match=r"--model-path .*nowhere: no such directory; give a folder"):
        resolve_path("custom", tmp_path / "nowhere", None)


def test_path_without_tokenizer(gpt2_checkpoint):
    for file in gpt2_checkpoint.glob("*token*"):
        file.unlink()
    with pytest.raises(ModelSourceError, match="no usable tokenizer .* tokenizer.save_pretrained"):
        resolve_path("custom", gpt2_checkpoint, None)


def test_path_with_unsupported_task(gpt2_checkpoint):
    config = json.loads((gpt2_checkpoint / "config.json").read_text())
    config["architectures"] = ["GPT2ForTokenClassification"]
    (gpt2_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelSourceError, match="supported: sequence-classification, causal-lm; pass --task"):
        resolve_path("custom", gpt2_checkpoint, None)


def test_path_task_mismatch(gpt2_checkpoint):
    with pytest.raises(ModelSourceError, match="is a causal-lm model, not sequence-classification"):
        resolve_path("custom", gpt2_checkpoint, "sequence-classification")


@pytest.fixture
def llama_checkpoint(tmp_path, word_tokenizer):
    """A tiny Llama saved as SmolLM2 is published: tied head, grouped-query attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(word_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
    )
    folder = tmp_path / "tiny-smollm2"
    LlamaForCausalLM(config).save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    return folder


def test_smollm2_from_the_hub_cache_loads_offline_by_the_real_loading_code(offline, llama_checkpoint):
    populate_hub_cache(offline, "HuggingFaceTB/SmolLM2-135M", llama_checkpoint)
    script = (
        "import torch\n"
        "from energybench.models import registry as models\n"
        "source = models.resolve(models.REGISTRY['smollm2'], 'auto')\n"
        "loaded = models.load(source)\n"
        "ids = loaded.tokenizer('a gripping , funny film', return_tensors='pt')['input_ids']\n"
        "tied = loaded.model.lm_head.weight is loaded.model.model.embed_tokens.weight\n"
        "print(source.kind, source.checkpoint, source.revision, type(loaded.model).__name__, tied,\n"
        "      tuple(loaded.model(input_ids=ids).logits.shape[1:]) == (ids.shape[1], loaded.model.config.vocab_size))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.split() == ["hub", "HuggingFaceTB/SmolLM2-135M", HUB_SHA, "LlamaForCausalLM", "True", "True"], (
        done.stderr
    )


def test_smollm2_offline_falls_back_to_its_embedded_llama_and_says_so(offline):
    for name in ("smollm2", "smollm2-360m"):
        source = resolve(REGISTRY[name], "auto")
        assert (source.kind, source.checkpoint, source.model) == ("embedded", "embedded:smollm2", name)
        note = f"llama trained by energybench on wikitext2-wiki.valid.tokens; NOT the published {REGISTRY[name].hub_id}"
        assert note in source.note


@pytest.mark.parametrize(
    ("name", "sizes", "millions"),
    [("smollm2", (30, 576, 9, 3, 1536), 134.5), ("smollm2-360m", (32, 960, 15, 5, 2560), 361.8)],
)
def test_smollm2_shape_only_has_the_published_llama_sizes(name, sizes, millions):
    spec = REGISTRY[name]
    config = models.published_config(spec)
    got = (
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.intermediate_size,
    )
    assert got == sizes and config.vocab_size == 49152 and config.tie_word_embeddings
    assert config.rope_parameters["rope_theta"] == 100000.0 and config.model_type == "llama"
    with torch.device("meta"):  # the parameter count without allocating the weights
        model = models.model_class(spec.task).from_config(config)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)
    if name == "smollm2":  # the shape-only source itself, once (135 M weights)
        loaded = models.load(resolve(spec, "shape-only"))
        assert type(loaded.model).__name__ == "LlamaForCausalLM" and loaded.tokenizer is None
