"""The LLM quantization methods: int4 on CPU, HQQ, GPTQ, bitsandbytes (faked) and the quantized KV cache.

The methods whose packages are installed run for real on tiny random Llama configs; bitsandbytes
is CUDA only, so its wiring runs against a fake ``bnb`` module, and its gate against a faked GPU."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from energybench.catalog import PRECISIONS
from energybench.measure import generation, quality
from energybench.models import bnb_quant, gptq_quant, kv_quant
from energybench.models.backends import probe
from energybench.models.precision import CONVERTERS, PrecisionUnsupported, convert

CPU = torch.device("cpu")
LLM_METHODS = ("int4-hqq", "int4-gptq", "nf4-bnb", "int8-bnb", "kv4-quanto", "kv4-hqq")


def tiny_llama(hidden: int = 128, positions: int = 512, vocab: int = 300) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        vocab_size=vocab,
        bos_token_id=0,
        eos_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def relative_error(model: nn.Module, reference: nn.Module, ids: torch.Tensor) -> float:
    with torch.inference_mode():
        expected, got = reference(input_ids=ids).logits.float(), model(input_ids=ids).logits.float()
    return float((got - expected).pow(2).mean() / expected.pow(2).mean())


def test_every_llm_method_is_a_catalog_precision_with_a_converter_and_a_reason_or_a_run():
    for name in LLM_METHODS:
        assert name in PRECISIONS and name in CONVERTERS
        reason = probe("eager", name, CPU)
        assert reason is None or (reason.strip() and len(reason.splitlines()) == 1)
    assert "cuda" in probe("eager", "nf4-bnb", CPU) and "--device cuda" in probe("eager", "int8-bnb", CPU)


@pytest.mark.parametrize("precision", ["int4-wo", "int4-hqq"])
def test_int4_runs_on_cpu_through_torchaos_cpu_layout(precision):
    pytest.importorskip("torchao")
    import copy

    reference = tiny_llama()
    converted = convert(copy.deepcopy(reference), precision, CPU)
    linears = 2 * 7  # q, k, v, o, gate, up, down per layer; the LM head is 300 wide (not a multiple of 16)
    assert converted.details["quantized_linear_modules"] == linears
    assert "Int4OpaqueTensor" in converted.implementation and "bfloat16" in converted.implementation
    assert ("'hqq'" in converted.implementation) == (precision == "int4-hqq")
    ids = torch.randint(0, 300, (2, 48), generator=torch.Generator().manual_seed(1))
    assert 1e-5 < relative_error(converted.model, reference, ids) < 0.05


def test_hqq_and_minmax_int4_quantize_the_same_layers_to_different_weights():
    pytest.importorskip("torchao")
    import copy

    reference = tiny_llama()
    ids = torch.randint(0, 300, (2, 48), generator=torch.Generator().manual_seed(2))
    minmax = convert(copy.deepcopy(reference), "int4-wo", CPU).model
    hqq = convert(copy.deepcopy(reference), "int4-hqq", CPU).model
    with torch.inference_mode():
        assert not torch.equal(minmax(input_ids=ids).logits, hqq(input_ids=ids).logits)


# -- the quantized KV cache --------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["kv4-hqq", "kv4-quanto"])
def test_kv_cache_precisions_decode_and_score_through_a_4_bit_cache(precision):
    if kv_quant.unsupported_reason(precision, CPU):
        pytest.skip(kv_quant.unsupported_reason(precision, CPU))
    import copy

    reference = tiny_llama()
    converted = convert(copy.deepcopy(reference), precision, CPU)
    model = converted.model
    assert model.generation_config.cache_implementation == "quantized"
    assert converted.details["kv_cache"]["nbits"] == 4 and "fp32 weights" in converted.implementation
    prompt = torch.randint(1, 300, (1, 256), generator=torch.Generator().manual_seed(3))
    full = generation.greedy(reference, prompt, 8, CPU, generation.empty_cache(reference))
    quantized = generation.greedy(model, prompt, 8, CPU, generation.empty_cache(model))
    assert type(generation.empty_cache(model)).__name__ == "QuantizedCache"
    # 4-bit keys and values with their group scales: well under half the fp32 cache of the same tokens
    assert 0 < quantized.cache_bytes < 0.5 * full.cache_bytes
    assert generation.decode_only_call(model, prompt, 8, CPU) is None  # a QuantizedCache cannot be rewound
    ids = torch.randint(1, 300, (400,), generator=torch.Generator().manual_seed(4))
    args = {"context": 128, "stride": 64, "batch_size": 2, "device": CPU}
    through = quality.perplexity(model, ids, **args)
    plain = quality.perplexity(reference, ids, **args)
    assert through.kv_cache.startswith(kv_quant.BACKENDS[precision][0]) and plain.kv_cache is None
    assert through.perplexity != plain.perplexity
    assert through.perplexity == pytest.approx(plain.perplexity, rel=0.05)


def test_a_full_precision_cache_scored_in_two_passes_is_the_one_pass_perplexity(monkeypatch):
    """The two-pass scoring of a quantized cache, run with a full-precision DynamicCache, changes nothing:
    the head prefilled into the cache and the rest attending to it is the same forward pass."""
    from transformers import DynamicCache

    model = tiny_llama()
    ids = torch.randint(1, 300, (300,), generator=torch.Generator().manual_seed(5))
    args = {"context": 128, "stride": 32, "batch_size": 3, "device": CPU}
    one_pass = quality.perplexity(model, ids, **args)
    monkeypatch.setattr(quality, "kv_cache_label", lambda m: "dynamic (test)")
    monkeypatch.setattr("transformers.QuantizedCache", lambda backend, config, **options: DynamicCache(config=config))
    model.generation_config.cache_config = {"backend": "quanto"}
    two_pass = quality.perplexity(model, ids, **args)
    assert two_pass.perplexity == pytest.approx(one_pass.perplexity, rel=1e-5)


def test_kv_cache_precisions_need_a_generative_model():
    if kv_quant.unsupported_reason("kv4-hqq", CPU):
        pytest.skip(kv_quant.unsupported_reason("kv4-hqq", CPU))
    plain = nn.Linear(4, 4)
    with pytest.raises(PrecisionUnsupported, match="has no generation_config"):
        convert(plain, "kv4-hqq", CPU)


def test_kv_reason_names_the_missing_backend_package(monkeypatch):
    monkeypatch.setattr(kv_quant, "missing", lambda module: True)
    reason = kv_quant.unsupported_reason("kv4-quanto", CPU)
    assert reason == (
        "kv4-quanto needs optimum-quanto for the quanto backend of the quantized KV cache: install energybench[llm]"
    )


# -- GPTQ ----------------------------------------------------------------------------------------
def test_gptq_calibration_windows_are_seeded_declared_and_from_the_valid_split(word_tokenizer):
    first, declared = gptq_quant.calibration_windows(word_tokenizer, 64, samples=8)
    again, _ = gptq_quant.calibration_windows(word_tokenizer, 64, samples=8)
    other, other_declared = gptq_quant.calibration_windows(word_tokenizer, 64, samples=8, seed=1)
    assert first.shape == (8, 64) and torch.equal(first, again)
    assert declared["split"] == "valid" and declared["file"] == "wikitext2-wiki.valid.tokens"
    assert declared["size"] == 8 and len(declared["sha256"]) == 64
    assert other_declared["sha256"] != declared["sha256"] and not torch.equal(first, other)


def test_gptq_runs_calibrated_and_packs_its_grid_for_the_int4_kernel(word_tokenizer, monkeypatch):
    if gptq_quant.unsupported_reason("int4-gptq", CPU):
        pytest.skip(gptq_quant.unsupported_reason("int4-gptq", CPU))
    import copy

    monkeypatch.setattr(gptq_quant, "CALIBRATION_SAMPLES", 8)
    reference = tiny_llama(vocab=len(word_tokenizer), positions=64)
    loaded = types.SimpleNamespace(tokenizer=word_tokenizer)
    converted = convert(copy.deepcopy(reference), "int4-gptq", CPU, loaded)
    details = converted.details
    assert details["calibration"]["size"] == 8 and details["calibration"]["tokens_per_sample"] == 64
    assert details["calibration_s"] > 0 and details["quantized_linear_modules"] == 2 * 7
    assert "llm-compressor" in converted.implementation
    layer = converted.model.model.layers[0].mlp.up_proj
    assert type(layer) is nn.Linear and type(layer.weight.data).__name__ == "Int4OpaqueTensor"
    ids = torch.randint(0, len(word_tokenizer), (2, 32), generator=torch.Generator().manual_seed(6))
    assert 1e-5 < relative_error(converted.model, reference, ids) < 0.15  # symmetric 4-bit of random weights


def test_a_gptq_grid_packed_for_the_cpu_int4_kernel_computes_the_grids_matmul():
    pytest.importorskip("torchao")
    generator = torch.Generator().manual_seed(7)
    q = torch.randint(-8, 8, (64, 256), generator=generator).float()
    scale = torch.rand(64, 2, generator=generator) * 0.02 + 0.01
    plain = nn.Linear(256, 64).to(torch.bfloat16)
    plain.weight.data = (q * scale.repeat_interleave(128, dim=1)).to(torch.bfloat16)
    x = torch.randn(3, 256, generator=generator).to(torch.bfloat16)
    with torch.inference_mode():
        expected = plain(x).float()
        packed = gptq_quant.pack_cpu(plain, q, scale)
        got = packed(x).float()
    assert type(packed.weight.data).__name__ == "Int4OpaqueTensor"
    assert torch.allclose(got, expected, rtol=0.02, atol=0.02)


def test_gptq_without_a_tokenizer_is_a_skip_with_the_reason(monkeypatch):
    monkeypatch.setattr(gptq_quant, "unsupported_reason", lambda precision, device: None)
    with pytest.raises(PrecisionUnsupported, match="needs the model's tokenizer"):
        convert(tiny_llama(), "int4-gptq", CPU, types.SimpleNamespace(tokenizer=None))


# -- bitsandbytes, faked --------------------------------------------------------------------------
class FakeParams4bit(nn.Parameter):
    def __new__(cls, data, requires_grad=False, quant_type="fp4"):
        made = super().__new__(cls, data, requires_grad)
        made.quant_type = quant_type
        return made


class FakeInt8Params(nn.Parameter):
    def __new__(cls, data, requires_grad=False, has_fp16_weights=True):
        made = super().__new__(cls, data, requires_grad)
        made.has_fp16_weights = has_fp16_weights
        return made


class FakeLinear4bit(nn.Linear):
    def __init__(self, in_features, out_features, bias=True, compute_dtype=None, quant_type="fp4"):
        super().__init__(in_features, out_features, bias=bias)
        self.compute_dtype, self.quant_type = compute_dtype, quant_type


class FakeLinear8bitLt(nn.Linear):
    def __init__(self, in_features, out_features, bias=True, has_fp16_weights=True, threshold=0.0):
        super().__init__(in_features, out_features, bias=bias)
        self.has_fp16_weights, self.threshold = has_fp16_weights, threshold


FAKE_BNB = types.SimpleNamespace(
    nn=types.SimpleNamespace(
        Linear4bit=FakeLinear4bit, Linear8bitLt=FakeLinear8bitLt, Params4bit=FakeParams4bit, Int8Params=FakeInt8Params
    )
)


@pytest.mark.parametrize("precision, cls", [("nf4-bnb", FakeLinear4bit), ("int8-bnb", FakeLinear8bitLt)])
def test_bnb_swaps_every_linear_but_the_lm_head_with_its_weights(precision, cls):
    reference = tiny_llama()
    weights = reference.model.layers[1].self_attn.q_proj.weight.detach().clone()
    import copy

    model, details = bnb_quant.quantize(copy.deepcopy(reference), precision, CPU, bnb=FAKE_BNB)
    swapped = [n for n, m in model.named_modules() if isinstance(m, cls)]
    assert details["quantized_linear_modules"] == len(swapped) == 2 * 7
    assert type(model.lm_head) is nn.Linear and model.lm_head.weight.dtype == torch.bfloat16
    layer = model.model.layers[1].self_attn.q_proj
    assert torch.equal(layer.weight.data, weights)  # the fp32 weights, for bitsandbytes to quantize on .cuda()
    if precision == "nf4-bnb":
        assert layer.weight.quant_type == "nf4" and layer.compute_dtype == torch.bfloat16
    else:
        assert layer.weight.has_fp16_weights is False and layer.threshold == bnb_quant.INT8_THRESHOLD


def test_bnb_gate_cpu_rocm_missing_package_and_a_cuda_gpu(monkeypatch):
    assert bnb_quant.unsupported_reason("nf4-bnb", CPU) == (
        "nf4-bnb (bitsandbytes) is wired for CUDA GPUs only; run it with --device cuda"
    )
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert "ROCm 6.2" in bnb_quant.unsupported_reason("int8-bnb", gpu)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(bnb_quant.importlib.util, "find_spec", lambda name: None)
    assert bnb_quant.unsupported_reason("int8-bnb", gpu) == (
        "int8-bnb needs bitsandbytes: install energybench[bnb] (pip install bitsandbytes)"
    )
    monkeypatch.setattr(bnb_quant.importlib.util, "find_spec", lambda name: object())
    assert bnb_quant.unsupported_reason("int8-bnb", gpu) is None


def test_the_precisions_command_lists_the_llm_methods_with_their_reasons():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "energybench.cli", "precisions"], capture_output=True, text=True, check=True
    ).stdout
    for name in LLM_METHODS:
        assert any(line.startswith(f"{name} ") for line in out.splitlines()), name
    assert "nf4-bnb      eager        skipped: nf4-bnb (bitsandbytes) is wired for CUDA GPUs only" in out


def test_int4_takes_the_largest_group_a_layers_width_allows():
    pytest.importorskip("torchao")
    model = nn.Sequential(nn.Linear(960, 256), nn.Linear(256, 960), nn.Linear(96, 32)).eval()
    model.config = types.SimpleNamespace()
    converted = convert(model, "int4-hqq", CPU)
    # SmolLM2's 960-wide projections take 64 (960 % 128 != 0); 96 takes 32
    assert converted.details["int4_group_sizes"] == {"128": 1, "64": 1, "32": 1}
    assert converted.details["quantized_linear_modules"] == 3
