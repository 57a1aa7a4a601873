"""The layer study on decoder-only LLMs with no mapping written: tiny random-weight configs of each family
(2 layers, 64 wide, a 256-token vocabulary), built in the test, nothing downloaded."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

from energybench.layers import ablation
from energybench.layers import plan as mixed
from energybench.layers import units as layers
from energybench.models.precision import count_quantized, linears_under

CPU = torch.device("cpu")
VOCAB = 256
SIZES = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "initializer_range": 0.2,  # sharper outputs than the default 0.02, so ablations move them visibly
}
GQA = {"intermediate_size": 128, "num_key_value_heads": 2}
FAMILIES = {  # family: (config class, its own sizes)
    "llama": ("LlamaConfig", GQA),
    "qwen2": ("Qwen2Config", GQA),
    "qwen3": ("Qwen3Config", {**GQA, "head_dim": 16}),
    "mistral": ("MistralConfig", GQA),
    "gemma2": ("Gemma2Config", {**GQA, "head_dim": 16}),
    "gemma3_text": ("Gemma3TextConfig", {**GQA, "head_dim": 16}),
    "phi3": ("Phi3Config", GQA),
    "opt": ("OPTConfig", {"ffn_dim": 128, "word_embed_proj_dim": 64}),
    "gpt_neox": ("GPTNeoXConfig", {"intermediate_size": 128}),
}
ROTARY = set(FAMILIES) - {"opt"}  # OPT learns its positions


def tiny(family: str) -> nn.Module:
    name, own = FAMILIES[family]
    if not hasattr(transformers, name):
        pytest.skip(f"transformers {transformers.__version__} has no {name}")
    torch.manual_seed(0)
    config = getattr(transformers, name)(**SIZES, **own)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(params=list(FAMILIES))
def llm(request) -> tuple[str, nn.Module]:
    return request.param, tiny(request.param)


def evalset() -> ablation.EvalSet:
    ids = torch.randint(3, VOCAB, (800,), generator=torch.Generator().manual_seed(0))
    return ablation.causal_set(ids, context=32, windows=6, batch_size=3)


def test_units_cover_every_leaf_with_the_ablation_of_its_structure(llm):
    family, model = llm
    assert layers.model_type(model) not in layers.MAPPINGS  # no mapping written for it
    found = layers.units(model)
    names = [u.name for u in found]
    for leaf, module in model.named_modules():
        if leaf and not list(module.children()):
            assert any(leaf == n or leaf.startswith(n + ".") for n in names), leaf
    assert all(not any(a.startswith(b + ".") for b in names) for a in names)  # units never nest
    kinds = {u.layer_type for u in found}
    assert {"embeddings", "attention", "ffn", "layernorm", "lm-head"} <= kinds
    assert ("rotary" in kinds) == (family in ROTARY)
    by_type = {(u.layer_type, u.ablation) for u in found}
    assert ("attention", "skip-residual") in by_type and ("ffn", "skip-residual") in by_type
    assert all(u.ablation == "identity" for u in found if u.layer_type in ("layernorm", "dropout"))
    assert all(u.ablation == "no-rotation" for u in found if u.layer_type == "rotary")
    head = next(u for u in found if u.layer_type == "lm-head")
    assert head.module is model.get_output_embeddings() and head.ablation == "zero-output"
    assert sum(u.layer_type == "attention" for u in found) == 2  # one per decoder layer


def test_the_sum_check_holds(llm):
    _, model = llm
    batch = {"input_ids": torch.randint(3, VOCAB, (8, 64))}

    def run():
        with torch.inference_mode():
            model(**batch)

    found = layers.units(model)
    prof = layers.profile(model, run, CPU, passes=3, model_units=found)
    flops, total = layers.flops_per_unit(model, run, found)
    table = layers.table(prof, found, flops, total, items_per_pass=8 * 64, energy_per_item_j=1.0)
    check = table.sum_check
    assert check.ratio == pytest.approx(check.layers_s / check.end_to_end_s)
    # the ±10 % verdict is a measured figure on a real-size model (tools/layer_profile_check.py); at 64 wide
    # the glue outside the units is a visible part of a pass, so a unit test checks the verdict and the bounds
    assert check.within_10pct == (abs(check.ratio - 1.0) <= 0.10) and 0.5 < check.ratio <= 1.05, check
    assert sum(t.share for t in table.per_type) == pytest.approx(1.0)
    assert sum(t.energy_j_per_sample for t in table.per_type) == pytest.approx(1.0)
    assert next(t for t in table.per_type if t.layer_type == "attention").flops_per_sample > 0


def test_each_ablation_changes_the_output_and_identity_of_dropout_does_not(llm):
    family, model = llm
    ev = evalset()
    reference = ablation.outputs(model, ev, CPU)
    found = {u.layer_type: u for u in reversed(layers.units(model))}  # the first unit of each type
    for kind in ("embeddings", "attention", "ffn", "layernorm", "lm-head", *(["rotary"] if family in ROTARY else [])):
        row = ablation.layer_impact(model, found[kind], ev, reference, CPU)
        assert row.kl_mean > 1e-4 and row.quality_delta != 0, (kind, row)
    if "dropout" in found:  # eval dropout is the identity already
        assert ablation.layer_impact(model, found["dropout"], ev, reference, CPU).kl_mean == 0.0
    assert not any(m._forward_hooks for m in model.modules())


def test_the_mixed_plan_builds_on_each_family(llm):
    _, model = llm
    ev = evalset()
    reference = ablation.outputs(model, ev, CPU)
    found = layers.units(model)
    blocks = [u for u in found if u.layer_type in ("attention", "ffn") and linears_under(model, {u.name})][:2]
    for unit in blocks:
        sens = ablation.sensitivity(model, unit, ev, reference, CPU)
        assert isinstance(sens["int8"], float) and isinstance(sens["fp16"], float), unit.name
    planned = [u.name for u in blocks]
    built, details = mixed.build(model, planned)
    assert details["quantized_linear_modules"] == len(linears_under(model, planned)) == count_quantized(built) > 0
    assert count_quantized(model) == 0
    assert layers.units(built)  # the int8 model's units are derived as well
    assert ablation.outputs(built, ev, CPU).quality(ev)[0] > 0


def test_a_module_the_structure_does_not_name_is_one_line_naming_it_and_extend_mapping():
    model = tiny("llama")
    model.model.layers[0].adapter = nn.Conv1d(64, 64, 1)  # a leaf of no known kind
    with pytest.raises(layers.LayerMappingError) as error:
        layers.units(model)
    message = str(error.value)
    assert "\n" not in message
    assert "leaf module 'model.layers.0.adapter' (Conv1d) of llama: its structure" in message
    assert "energybench.layers.extend_mapping('llama', [(pattern, layer_type, ablation)])" in message
    try:
        layers.extend_mapping("llama", [(r"model\.layers\.\d+\.adapter", "ffn", "zero-output")])
        kinds = {u.name: (u.layer_type, u.ablation) for u in layers.units(model)}
        assert kinds["model.layers.0.adapter"] == ("ffn", "zero-output")
        assert kinds["model.layers.0.self_attn"] == ("attention", "skip-residual")  # still derived
        layers.extend_mapping("llama", [(r"model\.layers\.0\.mlp\.down_proj", "ffn", "skip-residual")])
        kinds = {u.name: u.layer_type for u in layers.units(model)}
        assert "model.layers.0.mlp.down_proj" in kinds and "model.layers.0.mlp" not in kinds  # the user's rule wins
        assert kinds["model.layers.0.mlp.gate_proj"] == "ffn"  # the rest of the block keeps its type
    finally:
        layers.MAPPINGS.pop("llama", None)


@pytest.mark.parametrize("name", ["tiny_distilbert", "tiny_gpt2"])
def test_hand_mapped_architectures_keep_their_own_rules(request, name):
    model = request.getfixturevalue(name)
    kind = layers.model_type(model)
    assert kind in layers.HAND_MAPPED and layers.mapping_for(model) == layers.MAPPINGS[kind]
    expected = [(u.name, u.layer_type, u.ablation) for u in layers.units(model, layers.MAPPINGS[kind])]
    assert [(u.name, u.layer_type, u.ablation) for u in layers.units(model)] == expected


def test_the_suite_runs_the_layer_study_and_the_mixed_plan_on_a_local_llama(suite, word_tokenizer):
    """As a user would: a Llama checkpoint saved with save_pretrained, no mapping written."""
    import json

    config = transformers.LlamaConfig(**{**SIZES, **GQA, "vocab_size": len(word_tokenizer)})
    torch.manual_seed(0)
    checkpoint = suite.path.parent / f"{suite.path.name}-tiny-llama"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(checkpoint)
    word_tokenizer.save_pretrained(checkpoint)
    result = suite.runpytest_subprocess(
        "benchmarks",
        *("--model-path", str(checkpoint), "--precision", "fp32,mixed", "--meters", "none"),
        *("--metric", "perplexity,layer-energy,impact", "--impact-samples", "6", "--max-samples", "8"),
        *("--perplexity-budget", "mixed=1000", "--rounds", "3", "--blocks", "1", "--warmup-rounds", "1"),
        *("--seq-len", "32", "--batch-size", "4", "-p", "no:cacheprovider"),
    )
    assert "no layer-type mapping" not in result.stdout.str()
    result.assert_outcomes(passed=6)
    [run] = [json.loads(p.read_text()) for p in (suite.path / "reports" / "runs").glob("*/run.json")]
    records = {(r["precision"], r["metric"]): r for r in run["records"]}
    units = {row["layer"]: row["layer_type"] for row in records["fp32", "layer-energy"]["details"]["per_layer"]}
    assert units["model.rotary_emb"] == "rotary" and units["model.layers.1.self_attn"] == "attention"
    impact = {row["layer"]: row for row in records["fp32", "impact"]["details"]["per_layer"]}
    assert impact["model.layers.0.mlp"]["ablation"] == "skip-residual" and impact["model.layers.0.mlp"]["kl_mean"] > 0
    assert records["mixed", "perplexity"]["details"]["plan"]["quantize"] is not None
