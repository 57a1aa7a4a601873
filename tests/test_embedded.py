"""The embedded default: recipes, deterministic builds, the atomic on-disk cache."""

import dataclasses
import hashlib
import json
import os
import time

import pytest
import torch

from energybench.models import embedded
from energybench.models.embedded import BUILD_INFO, RECIPES, Recipe, load_or_build

TINY = {"layers": 1, "hidden": 16, "heads": 2, "ffn": 32, "vocab_size": 300, "steps": 4, "batch_size": 4}


def test_recipe_hash_is_stable_and_covers_every_field():
    recipe = RECIPES["distilbert"]
    assert recipe.hash() == Recipe(**dataclasses.asdict(recipe)).hash() and len(recipe.hash()) == 12
    int(recipe.hash(), 16)
    for field in dataclasses.fields(Recipe):
        value = getattr(recipe, field.name)
        changed = value + "x" if isinstance(value, str) else 1 if value is None else value * 2 + 1
        assert recipe.scaled(**{field.name: changed}).hash() != recipe.hash(), field.name
    assert len({r.hash() for r in RECIPES.values()}) == len(RECIPES) == 4


def test_an_optional_field_left_at_none_keeps_the_hash_of_recipes_written_before_it():
    """Adding ``kv_heads`` (the Llama recipe's) and ``batching`` must not rebuild the embedded GPT-2's cache."""
    recipe = RECIPES["gpt2"]
    assert recipe.kv_heads is None and recipe.batching is None
    before = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in ("kv_heads", "batching")}
    canonical = json.dumps({"format": embedded.RECIPE_FORMAT, **before}, sort_keys=True)
    assert recipe.hash() == hashlib.sha256(canonical.encode()).hexdigest()[:12]


def test_build_then_load_from_cache(tmp_path):
    recipe = RECIPES["distilbert"].scaled(**TINY)
    messages = []
    built = load_or_build("distilbert", recipe, cache_dir=tmp_path, progress=messages.append)
    assert built.built_now and built.path == tmp_path / f"distilbert-{recipe.hash()}"
    info = json.loads((built.path / BUILD_INFO).read_text())
    assert info["recipe_hash"] == recipe.hash() and info["data_sha256"].startswith("c75796b0")
    assert any("building the embedded model" in m for m in messages)
    assert any(m.startswith("distilbert: step 4/4 loss ") for m in messages)
    assert info["data_file"] == "sst2-train.tsv" and info["train_seconds"] > 0
    again = load_or_build("distilbert", recipe, cache_dir=tmp_path)
    assert not again.built_now and again.train_seconds == info["train_seconds"]
    batch = built.tokenizer(["a gripping , funny film"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(built.model(**batch).logits, again.model(**batch).logits)


def test_builds_are_deterministic_from_the_seed(tmp_path):
    recipe = RECIPES["bert-base"].scaled(**TINY)
    one = load_or_build("bert-base", recipe, cache_dir=tmp_path / "a")
    two = load_or_build("bert-base", recipe, cache_dir=tmp_path / "b")
    for (name, a), (_, b) in zip(one.model.state_dict().items(), two.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_half_built_folder_is_never_loaded_but_rebuilt(tmp_path):
    recipe = RECIPES["distilbert"].scaled(**TINY)
    half = tmp_path / f"distilbert-{recipe.hash()}"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")  # left by something that died before build_info.json
    stale = tmp_path / f".build-{half.name}-dead"  # staging folder of a build killed long ago
    stale.mkdir()
    os.utime(stale, (time.time() - 86400,) * 2)
    live = tmp_path / f".build-{half.name}-live"  # may be another process's build in progress
    live.mkdir()
    built = load_or_build("distilbert", recipe, cache_dir=tmp_path)
    assert built.built_now and (half / BUILD_INFO).is_file()
    assert json.loads((half / "config.json").read_text())["model_type"] == "distilbert"
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))  # the build lock stays
    assert left == sorted([half.name, live.name])


def test_gpt2_tokenizer_round_trips_and_the_model_generates_logits(tmp_path):
    recipe = RECIPES["gpt2"].scaled(**TINY, max_len=32)
    built = load_or_build("gpt2", recipe, cache_dir=tmp_path)
    text = "The game 's battle system is <unk> ."
    ids = built.tokenizer(text)["input_ids"]
    assert built.tokenizer.decode(ids) == text
    assert type(built.tokenizer).__name__ in ("GPT2TokenizerFast", "GPT2Tokenizer")  # one class in v5
    assert built.tokenizer.pad_token_id == built.tokenizer.eos_token_id
    assert embedded.train_tokenizer(recipe).get_vocab() == built.tokenizer.get_vocab()  # deterministic
    with torch.no_grad():
        logits = built.model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(built.tokenizer))


def test_the_embedded_llama_is_smollm2s_architecture_with_gpt2s_tokenizer(tmp_path):
    recipe = RECIPES["smollm2"].scaled(**TINY, max_len=32)
    built = load_or_build("smollm2", recipe, cache_dir=tmp_path)
    config = built.model.config
    assert type(built.model).__name__ == "LlamaForCausalLM" and config.model_type == "llama"
    assert (config.num_attention_heads, config.num_key_value_heads) == (2, RECIPES["smollm2"].kv_heads)
    assert built.model.lm_head.weight is built.model.model.embed_tokens.weight  # tied, as SmolLM2's
    assert config.eos_token_id == config.pad_token_id == built.tokenizer.eos_token_id
    gpt2 = RECIPES["gpt2"]  # the same tokenizer as the embedded GPT-2: their perplexities compare per token
    assert (gpt2.train_data, gpt2.vocab_size) == (RECIPES["smollm2"].train_data, RECIPES["smollm2"].vocab_size)
    assert embedded.train_tokenizer(gpt2.scaled(vocab_size=300)).get_vocab() == built.tokenizer.get_vocab()
    ids = built.tokenizer("The game 's battle system is <unk> .")["input_ids"]
    with torch.no_grad():
        logits = built.model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(built.tokenizer)) and torch.isfinite(logits).all()
    info = json.loads((built.path / BUILD_INFO).read_text())
    assert info["recipe"]["arch"] == "llama" and info["data_file"] == "wikitext2-wiki.valid.tokens"


def test_unknown_name():
    with pytest.raises(KeyError, match="known: distilbert, bert-base, gpt2, smollm2"):
        embedded.load_or_build("llama")


def test_a_second_builder_of_the_same_recipe_waits_and_loads_instead_of_training_again(tmp_path):
    """Two sessions (xdist workers, parallel CI jobs) asking for the same recipe build it once."""
    import subprocess
    import sys

    recipe = RECIPES["distilbert"].scaled(**TINY)
    script = (
        "import sys; from pathlib import Path; from energybench.models.embedded import RECIPES, load_or_build\n"
        f"recipe = RECIPES['distilbert'].scaled(**{TINY!r})\n"
        "built = load_or_build('distilbert', recipe, cache_dir=Path(sys.argv[1]))\n"
        "print('built' if built.built_now else 'loaded')\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)]
    time.sleep(0.5)
    runs.append(subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True))
    outcomes = sorted(run.communicate(timeout=600)[0].strip() for run in runs)
    assert outcomes == ["built", "loaded"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".build-")] == []
    assert (tmp_path / f"distilbert-{recipe.hash()}" / BUILD_INFO).is_file()
