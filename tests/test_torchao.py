"""The torchao precisions: capability gates against faked GPUs, and the ones a CPU runs, for real."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from torch import nn

from energybench.models import torchao_quant as tq
from energybench.models.precision import CONVERTERS, PrecisionUnsupported, convert

TORCHAO = ("int8-wo", "int8-dyn", "int4-wo", "fp8-dyn")


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA device of a chosen compute capability, on a machine that has none."""

    def with_capability(major: int, minor: int) -> torch.device:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test GPU")
        monkeypatch.setattr(torch.version, "hip", None)
        return torch.device("cuda", 0)

    return with_capability


@pytest.fixture
def torchao_present(monkeypatch):
    monkeypatch.setattr(tq, "torchao_reason", lambda: None)


@pytest.mark.parametrize(
    "precision, capability, reason",
    [
        (
            "fp8-dyn",
            (8, 0),
            "fp8-dyn needs compute capability >= 8.9 for fp8 e4m3 tensor cores (torch._scaled_mm); "
            "NVIDIA Test GPU has 8.0",
        ),
        ("int4-wo", (7, 5), "int4-wo needs compute capability >= 8.0 for the tinygemm int4 kernel; NVIDIA Test"),
        ("int8-dyn", (7, 0), "int8-dyn needs compute capability >= 8.0 for int8 tensor-core matmul"),
    ],
)
def test_a_gpu_without_the_capability_skips_with_what_it_lacks(gpu, precision, capability, reason):
    assert CONVERTERS[precision].unsupported_reason(gpu(*capability)).startswith(reason)


def test_an_h100_runs_all_four_when_torchao_is_there(gpu, torchao_present):
    device = gpu(9, 0)
    assert [CONVERTERS[p].unsupported_reason(device) for p in TORCHAO] == [None] * 4


def test_the_cpu_runs_the_int8_and_int4_ones_not_fp8(torchao_present):
    cpu = torch.device("cpu")
    assert tq.unsupported_reason("int8-wo", cpu) is None and tq.unsupported_reason("int8-dyn", cpu) is None
    assert tq.unsupported_reason("int4-wo", cpu) is None and tq.unsupported_reason("int4-hqq", cpu) is None
    assert "compute capability >= 8.9" in tq.unsupported_reason("fp8-dyn", cpu)
    assert "CPU and CUDA only, not mps" in tq.unsupported_reason("int8-wo", torch.device("mps"))


def test_without_torchao_the_skip_says_which_extra_to_install(monkeypatch, tiny_distilbert):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    tq.torchao_reason.cache_clear()
    monkeypatch.setattr(importlib.metadata, "version", absent)
    try:
        with pytest.raises(PrecisionUnsupported) as error:
            convert(tiny_distilbert, "int8-wo", torch.device("cpu"))
    finally:
        tq.torchao_reason.cache_clear()
    assert str(error.value) == "install energybench[backends] for torchao (pip install 'torchao>=0.17')"


@pytest.mark.parametrize(
    "found, torch_version, expected",
    [
        ("0.16.0", "2.13.0", "torchao 0.16.0 is too old (needs >= 0.17): install energybench[backends]"),
        ("0.18.0", "2.10.0+cu128", "torchao 0.18.0 needs torch >= 2.11, this is torch 2.10.0+cu128"),
    ],
)
def test_too_old_torchao_or_torch_is_a_skip_reason(monkeypatch, found, torch_version, expected):
    tq.torchao_reason.cache_clear()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: found)
    monkeypatch.setattr(torch, "__version__", torch_version)
    try:
        assert tq.unsupported_reason("int8-wo", torch.device("cpu")).startswith(expected)
    finally:
        tq.torchao_reason.cache_clear()


def test_only_kernel_friendly_linears_are_selected():
    assert tq.kernel_friendly(nn.Linear(768, 3072), "ffn")
    assert not tq.kernel_friendly(nn.Linear(768, 2), "classifier")  # the int8 kernel would fall back to the CPU
    assert not tq.kernel_friendly(nn.Linear(768, 50257), "lm_head")
    assert not tq.kernel_friendly(nn.LayerNorm(768), "norm")


@pytest.mark.parametrize("name", ["int8-wo", "int8-dyn"])
def test_int8_on_cpu_quantizes_every_friendly_linear_gpt2_conv1d_included(name, tiny_gpt2):
    pytest.importorskip("torchao")
    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = tiny_gpt2(ids).logits
    converted = convert(tiny_gpt2, name, torch.device("cpu"))
    details = converted.details
    # 2 blocks x (c_attn, c_proj, c_fc, mlp c_proj) from Conv1D; the 97-way LM head is left in float
    assert details["conv1d_converted_to_linear"] == 8
    assert (details["quantized_linear_modules"], details["linear_modules"]) == (8, 9)
    assert details["compiled"] is False and details["dtype"] == "float32"
    assert converted.implementation.startswith(f"torchao {importlib.metadata.version('torchao')} ")
    assert converted.implementation.endswith("float32, eager")
    with torch.no_grad():
        logits = converted.model(ids).logits
    assert nn.functional.cosine_similarity(logits.flatten(), reference.flatten(), dim=0) > 0.999


def test_fp8_on_cpu_is_refused_before_touching_the_model(tiny_distilbert):
    with pytest.raises(PrecisionUnsupported, match="fp8 tensor cores"):
        convert(tiny_distilbert, "fp8-dyn", torch.device("cpu"))
    assert all(type(m.weight) is nn.Parameter for m in tiny_distilbert.modules() if isinstance(m, nn.Linear))


def test_the_implementation_names_the_config_dtype_and_compile(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.18.0")
    cuda = torch.device("cuda", 0)
    assert tq.implementation("int8-dyn", cuda) == (
        "torchao 0.18.0 Int8DynamicActivationInt8WeightConfig(granularity=PerRow()), bfloat16, "
        "torch.compile(mode=default)"
    )
    assert tq.implementation("int4-wo", cuda).endswith("int4_packing_format='tile_packed_to_4d'), bfloat16, eager")
