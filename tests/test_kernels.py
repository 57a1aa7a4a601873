"""The kernel path: profiled operators, and a quantized precision that ran none of its own is a fallback."""

from __future__ import annotations

import copy
import importlib.util
import types

import pytest
import torch

from energybench import catalog
from energybench.measure import kernels
from energybench.models import precision


@pytest.fixture
def batch(word_tokenizer):
    sentences = ["a gripping , funny film", "dull and far too long"]
    return dict(word_tokenizer(sentences, padding=True, return_tensors="pt"))


def test_int8_runs_its_quantized_linear_and_is_proven(tiny_distilbert, batch):
    converted = precision.convert(copy.deepcopy(tiny_distilbert), "int8", torch.device("cpu"))
    path = kernels.kernel_path(converted.model, batch, "int8")
    assert path.status == kernels.QUANTIZED and path.reason is None
    assert path.matched == ("quantized::linear_dynamic",) and path.proof_share > 0
    assert path.profiler == "torch.profiler (CPU)" and path.profile_s > 0
    assert sum(o.share for o in path.operators) == pytest.approx(1.0)
    assert [o.self_time_us for o in path.operators] == sorted((o.self_time_us for o in path.operators), reverse=True)


def test_a_precision_that_converted_nothing_is_flagged_fallback_with_the_reason(tiny_distilbert, batch):
    untouched = precision.quantize_dynamic(copy.deepcopy(tiny_distilbert), set())  # converts no module
    assert precision.count_quantized(untouched) == 0
    path = kernels.kernel_path(untouched, batch, "int8")
    assert path.status == kernels.FALLBACK and not path.matched and path.proof_share == 0
    assert path.reason.startswith("int8 ran none of its quantized operators (quantized::linear_dynamic, ")
    assert "aten::addmm" in path.reason or "aten::mm" in path.reason
    assert path.float_matmul_share > 0


def test_an_unquantized_precision_has_nothing_to_prove(tiny_distilbert, batch):
    path = kernels.kernel_path(tiny_distilbert, batch, "fp32")
    assert path.status == kernels.NOT_QUANTIZED and path.proof_operators == () and path.reason is None
    assert path.to_dict()["operators"][0]["name"] == path.operators[0].name


def test_every_quantized_precision_declares_its_proof_operators():
    quantized = set(catalog.INT8 + catalog.INT4 + catalog.FP8) - set(catalog.KV_PRECISIONS)  # KV: fp32 weights
    assert quantized <= set(catalog.PROOF_OPERATORS)
    assert not {"fp32", "fp16", "bf16"} & set(catalog.PROOF_OPERATORS)


def test_onnx_runtime_profile_events_are_summed_per_op_type_for_the_last_run():
    events = [
        {"cat": "Session", "name": "model_run", "ts": 100},
        {"cat": "Node", "name": "/l0/MatMul_kernel_time", "ts": 110, "dur": 50, "args": {"op_name": "MatMul"}},
        {"cat": "Session", "name": "model_run", "ts": 200},
        {"cat": "Node", "name": "/l0/MatMul_kernel_time", "ts": 210, "dur": 40, "args": {"op_name": "MatMulInteger"}},
        {"cat": "Node", "name": "/l1/MatMul_kernel_time", "ts": 260, "dur": 20, "args": {"op_name": "MatMulInteger"}},
        {"cat": "Node", "name": "/l1/Cast_fence_before", "ts": 270, "dur": 5, "args": {"op_name": "Cast"}},
        {"cat": "Node", "name": "/l1/Add_kernel_time", "ts": 280, "dur": 20, "args": {"op_name": "Add"}},
    ]
    timed = kernels.ort_node_times(events, warmup=1)
    assert sorted(timed) == [("Add", 1, 20.0), ("MatMulInteger", 2, 60.0)]
    path = kernels.verdict("int8", kernels.shares(timed), "onnxruntime", 0.01)
    assert path.status == kernels.QUANTIZED and path.proof_share == pytest.approx(0.75)


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
    reason="the onnxruntime backend needs energybench[backends]",
)
def test_onnx_runtime_integer_kernels_are_profiled_through_its_own_profiler(tiny_distilbert, word_tokenizer, batch):
    from energybench.models import backends

    source = types.SimpleNamespace(task="sequence-classification")
    loaded = types.SimpleNamespace(model=tiny_distilbert, tokenizer=word_tokenizer, source=source)
    runner, cpu = backends.backend("onnxruntime"), torch.device("cpu")
    fp32 = runner.prepare(copy.deepcopy(tiny_distilbert), "fp32", cpu, loaded)
    float_path = kernels.kernel_path(fp32.model, batch, "int8")  # float MatMuls only: what a fallback looks like
    assert float_path.status == kernels.FALLBACK and float_path.float_matmul_share > 0, float_path.top()
    for name in ("int8", "int8-static"):
        path = kernels.kernel_path(runner.prepare(copy.deepcopy(tiny_distilbert), name, cpu, loaded).model, batch, name)
        assert path.profiler == "onnxruntime" and path.status == kernels.QUANTIZED, path.top()


def test_on_cuda_an_operator_is_timed_by_the_kernels_it_launched_and_kernel_rows_are_not_counted_twice():
    event = types.SimpleNamespace
    events = [
        event(key="aten::_int_mm", count=4, self_cpu_time_total=30.0, self_device_time_total=600.0, device_type="CPU"),
        event(key="aten::mul", count=8, self_cpu_time_total=40.0, self_device_time_total=200.0, device_type="CPU"),
        event(key="aten::view", count=8, self_cpu_time_total=5.0, self_device_time_total=0.0, device_type="CPU"),
        event(
            key="void int8_gemm_kernel",
            count=4,
            self_cpu_time_total=0,
            self_device_time_total=600.0,
            device_type="DeviceType.CUDA",
        ),
    ]
    timed = kernels.operator_times(events, on_cuda=True)
    path = kernels.verdict("int8-dyn", kernels.shares(timed), "torch.profiler (CPU, CUDA)", 0.1)
    assert [(o.name, o.share) for o in path.operators] == [("aten::_int_mm", 0.75), ("aten::mul", 0.25)]
    assert path.status == kernels.QUANTIZED and path.proof_share == 0.75
    assert [t for _, _, t in kernels.operator_times(events, on_cuda=False)] == [30.0, 40.0, 5.0, 0]
