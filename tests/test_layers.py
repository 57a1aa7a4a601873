"""The layer study on tiny real architectures: hooks, grouping, sum check, apportioning, ablation,
sensitivity, correlations and the mixed plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from energybench.layers import ablation, correlate
from energybench.layers import plan as mixed
from energybench.layers import units as layers
from energybench.layers.rows import Candidate, LayerTable
from energybench.models.precision import count_quantized, linears_under

CPU = torch.device("cpu")


@pytest.fixture
def tiny_bert(word_tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(word_tokenizer),
        max_position_embeddings=128,
        num_labels=2,
    )
    return BertForSequenceClassification(config).eval()


def forward(model, batch):
    def run():
        with torch.inference_mode():
            model(**batch)

    return run


def sst2_set(model, tokenizer, n=24):
    from energybench import data

    return ablation.classification_set(model, tokenizer, data.sst2("validation")[0][:n], batch_size=8)


@pytest.mark.parametrize("name", ["tiny_distilbert", "tiny_gpt2", "tiny_bert"])
def test_grouping_covers_every_leaf_of_each_architecture(request, name):
    model = request.getfixturevalue(name)
    found = layers.units(model)
    names = [u.name for u in found]
    for leaf, module in model.named_modules():
        if leaf and not list(module.children()):
            assert any(leaf == n or leaf.startswith(n + ".") for n in names), leaf
    assert {"embeddings", "attention", "ffn", "layernorm"} <= {u.layer_type for u in found}
    assert all(not any(a.startswith(b + ".") for b in names) for a in names)  # units never nest


def test_uncovered_leaf_and_unknown_type_are_clear_errors(tiny_distilbert):
    with pytest.raises(layers.LayerMappingError, match="leaf module 'distilbert.embeddings.word_embeddings'"):
        layers.units(tiny_distilbert, mapping=[layers.Rule("classifier", "classifier", "zero-output")])
    with pytest.raises(layers.LayerMappingError, match="unknown layer type 'adapter'.*accepted: embeddings"):
        layers.extend_mapping("distilbert", [("my_adapter", "adapter", "identity")])
    assert all(r.layer_type != "adapter" for r in layers.MAPPINGS["distilbert"])


def test_extend_mapping_adds_a_user_rule_first(tiny_distilbert):
    saved = list(layers.MAPPINGS["distilbert"])
    try:
        layers.extend_mapping("distilbert", [(r"pre_classifier", "ffn", "zero-output")])
        kinds = {u.name: u.layer_type for u in layers.units(tiny_distilbert)}
        assert kinds["pre_classifier"] == "ffn" and kinds["classifier"] == "classifier"
    finally:
        layers.MAPPINGS["distilbert"] = saved


def test_hooks_are_removed_after_an_exception(tiny_distilbert):
    found = layers.units(tiny_distilbert)
    with pytest.raises(RuntimeError, match="boom"), layers.hooked(found, CPU):
        assert all(u.module._forward_hooks and u.module._forward_pre_hooks for u in found)
        raise RuntimeError("boom")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny_distilbert.modules())


def test_layer_times_add_up_and_energy_is_apportioned_by_share(tiny_distilbert):
    batch = {"input_ids": torch.randint(4, 100, (16, 64))}
    found = layers.units(tiny_distilbert)
    prof = layers.profile(tiny_distilbert, forward(tiny_distilbert, batch), CPU, passes=5, model_units=found)
    flops, total = layers.flops_per_unit(tiny_distilbert, forward(tiny_distilbert, batch), found)
    table = layers.table(prof, found, flops, total, items_per_pass=16, energy_per_item_j=2.0)
    check = table.sum_check
    assert check.ratio == pytest.approx(check.layers_s / check.end_to_end_s)
    # the ratio itself is a measured figure (tools/layer_profile_check.py prints it); a unit test only
    # checks that the verdict follows it and that the units cover most of the pass
    assert check.within_10pct == (abs(check.ratio - 1.0) <= 0.10) and 0.5 < check.ratio <= 1.05, check
    assert sum(t.share for t in table.per_type) == pytest.approx(1.0)
    assert sum(t.energy_j_per_sample for t in table.per_type) == pytest.approx(2.0)
    assert all(r.energy_j_per_sample == pytest.approx(2.0 * r.share) for r in table.per_layer)
    ffn = next(t for t in table.per_type if t.layer_type == "ffn")
    assert ffn.flops_per_sample == pytest.approx(2 * 2 * (2 * 64 * 32 * 64) / 16 * 16)  # 2 blocks x 2 linears
    assert table.per_type[-1].layer_type == "unattributed"
    no_meter = layers.table(prof, found, flops, total, 16, None)
    assert all(r.energy_j_per_sample is None and r.time_s_per_sample > 0 for r in no_meter.per_layer)
    overhead = layers.hook_overhead(prof, 16)
    assert overhead.overhead_pct == pytest.approx((overhead.with_hooks_s / overhead.without_hooks_s - 1) * 100)
    assert LayerTable.from_dict(table.to_dict()) == table  # what a record saves reads back the same


def test_ablation_changes_outputs_and_uses_skip_where_possible(tiny_distilbert, word_tokenizer):
    ev = sst2_set(tiny_distilbert, word_tokenizer)
    reference = ablation.outputs(tiny_distilbert, ev, CPU)
    assert float(ablation.kl_per_sample(reference, ablation.outputs(tiny_distilbert, ev, CPU)).max()) == 0.0
    found = {u.name: u for u in layers.units(tiny_distilbert)}
    attention = found["distilbert.transformer.layer.0.attention"]
    assert attention.ablation == "skip-residual" and found["distilbert.transformer.layer.0.ffn"].ablation == (
        "skip-residual"
    )
    assert found["distilbert.transformer.layer.0.sa_layer_norm"].ablation == "identity"
    assert found["classifier"].ablation == "zero-output"
    row = ablation.layer_impact(tiny_distilbert, attention, ev, reference, CPU)
    assert row.kl_mean > 0 and row.kl_ci95_lo <= row.kl_mean <= row.kl_ci95_hi
    identity = ablation.layer_impact(tiny_distilbert, found["dropout"], ev, reference, CPU)  # eval dropout = identity
    assert identity.kl_mean == 0.0 and identity.quality_delta == 0.0
    assert not any(m._forward_hooks for m in tiny_distilbert.modules())


def test_ablation_of_gpt2_blocks_and_missing_type(tiny_gpt2):
    ev = ablation.causal_set(torch.randint(0, 97, (400,)), context=32, windows=6, batch_size=4)
    reference = ablation.outputs(tiny_gpt2, ev, CPU)
    found = layers.units(tiny_gpt2)
    mlp = next(u for u in found if u.name == "transformer.h.0.mlp")
    row = ablation.layer_impact(tiny_gpt2, mlp, ev, reference, CPU)
    assert row.ablation == "skip-residual" and row.kl_mean > 0 and row.quality_delta != 0
    assert ev.samples == 6
    with pytest.raises(ValueError, match="no 'classifier' layers; its layer types are embeddings"):
        ablation.require_type(found, "classifier")


def test_sensitivity_converts_only_that_unit(tiny_gpt2):
    ev = ablation.causal_set(torch.randint(0, 97, (400,)), context=32, windows=4, batch_size=4)
    reference = ablation.outputs(tiny_gpt2, ev, CPU)
    found = {u.name: u for u in layers.units(tiny_gpt2)}
    variant = ablation.with_unit_at(tiny_gpt2, "transformer.h.1.mlp", "int8")
    assert count_quantized(variant) == 2 and count_quantized(tiny_gpt2) == 0
    lm_head = ablation.with_unit_at(tiny_gpt2, "lm_head", "fp16")
    assert lm_head.transformer.wte.weight.dtype == torch.float32  # the tied embedding stays fp32
    sens = ablation.sensitivity(tiny_gpt2, found["transformer.h.1.mlp"], ev, reference, CPU)
    assert isinstance(sens["int8"], float) and isinstance(sens["fp16"], float)
    assert ablation.sensitivity(tiny_gpt2, found["transformer.ln_f"], ev, reference, CPU)["int8"] is None


def test_correlations_match_scipy_on_known_data():
    rng = np.random.default_rng(1)
    x = list(np.arange(12.0))
    y = list(np.arange(12.0) * 0.5 + rng.normal(0, 2, 12))
    result = correlate.correlation(x, y)
    assert result.pearson_r == pytest.approx(stats.pearsonr(x, y).statistic)
    assert result.pearson_p == pytest.approx(stats.pearsonr(x, y).pvalue)
    assert result.spearman_rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert result.spearman_p == pytest.approx(stats.spearmanr(x, y).pvalue)
    low, high = result.spearman_ci95_lo, result.spearman_ci95_hi
    assert low < result.spearman_rho < high and -1 <= low and high <= 1
    assert correlate.correlation([1, 2], [3, 4]).reason.startswith("2 pairs")
    assert "constant" in correlate.correlation([1, 1, 1], [1, 2, 3]).reason


def candidates():
    return [  # fp32 energy, int8 energy, int8 accuracy delta (pp)
        Candidate("a", 10.0, 6.0, -0.4),
        Candidate("b", 8.0, 5.0, -0.2),
        Candidate("c", 5.0, 4.0, -0.9),
        Candidate("d", 1.0, 1.5, 0.0),
        Candidate("e", 1.0, None, None),
    ]


@pytest.mark.parametrize("budget", [0.0, 0.3, 0.6, 1.0, 5.0])
def test_plan_respects_its_budget(budget):
    result = mixed.plan(candidates(), budget, "sequence-classification", total_energy_j=25.0)
    losses = {"a": 0.4, "b": 0.2, "c": 0.9}
    assert sum(losses[n] for n in result.quantize) <= budget + 1e-9
    assert "d" not in result.quantize and "e" not in result.quantize  # no saving / not convertible
    assert result.predicted_loss == pytest.approx(sum(losses[n] for n in result.quantize))
    if budget >= 0.6:
        assert {"a", "b"} <= set(result.quantize)
    saved = {"a": 4.0, "b": 3.0, "c": 1.0}
    assert result.predicted_energy_saving_pct == pytest.approx(sum(saved[n] for n in result.quantize) / 25 * 100)


def test_plan_rejects_a_negative_budget():
    with pytest.raises(ValueError, match="budget must be a number >= 0, got -1"):
        mixed.plan(candidates(), -1.0, "sequence-classification", 25.0)


def test_mixed_model_quantizes_only_the_planned_units(tiny_distilbert):
    planned = ["distilbert.transformer.layer.0.ffn", "classifier"]
    model, details = mixed.build(tiny_distilbert, planned)
    assert details["quantized_linear_modules"] == len(linears_under(tiny_distilbert, planned)) == 3
    assert count_quantized(tiny_distilbert) == 0
    assert type(model.distilbert.transformer.layer[1].ffn.lin1).__name__ == "Linear"
