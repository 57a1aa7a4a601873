import pytest
import torch
from torch import nn

from energybench import catalog
from energybench.models import precision
from energybench.models.precision import PrecisionUnsupported, convert, count_quantized


def test_the_catalog_and_the_converters_name_the_same_precisions():
    assert tuple(precision.CONVERTERS) == catalog.PRECISIONS  # one converter per catalog precision, in order


def test_int8_quantizes_every_linear_of_distilbert(tiny_distilbert):
    linears = sum(isinstance(m, nn.Linear) for m in tiny_distilbert.modules())
    converted = convert(tiny_distilbert, "int8", torch.device("cpu"))
    # 2 layers x (q, k, v, out, ffn lin1, lin2) + pre_classifier + classifier
    assert linears == 2 * 6 + 2
    assert count_quantized(converted.model) == linears
    assert converted.details["quantized_linear_modules"] == linears
    assert not any(type(m) is nn.Linear for m in converted.model.modules())


def test_int8_gpt2_converts_and_quantizes_the_conv1d_projections(tiny_gpt2):
    from transformers.pytorch_utils import Conv1D

    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = tiny_gpt2(ids).logits
    converted = convert(tiny_gpt2, "int8", torch.device("cpu"))
    # per block: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj; plus the LM head
    assert converted.details["conv1d_converted_to_linear"] == 2 * 4
    assert converted.details["quantized_linear_modules"] == 2 * 4 + 1
    assert not any(isinstance(m, Conv1D) for m in converted.model.modules())
    with torch.no_grad():
        quantized = converted.model(ids).logits
    assert torch.allclose(quantized, reference, atol=0.05), (quantized - reference).abs().max()


def test_conv1d_to_linear_is_exact(tiny_gpt2):
    ids = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = tiny_gpt2(ids).logits
        assert precision.conv1d_to_linear(tiny_gpt2) == 8
        assert torch.allclose(tiny_gpt2(ids).logits, reference, atol=1e-5)


@pytest.mark.parametrize("name, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_casts_set_every_parameter_dtype(tiny_distilbert, name, dtype):
    converted = convert(tiny_distilbert, name, torch.device("cpu"))
    assert {p.dtype for p in converted.model.parameters()} == {dtype}
    assert converted.precision == name


def test_int8_on_cuda_is_unsupported_with_the_fix(tiny_distilbert):
    with pytest.raises(PrecisionUnsupported, match="CPU only; run it with --device cpu"):
        convert(tiny_distilbert, "int8", torch.device("cuda"))


def test_unknown_precision_lists_the_accepted_ones(tiny_distilbert):
    with pytest.raises(ValueError, match="accepted: fp32, fp16, bf16, int8, int8-wo, int8-dyn, int4-wo, fp8-dyn"):
        convert(tiny_distilbert, "int3", torch.device("cpu"))
