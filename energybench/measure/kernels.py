"""The kernel path: which operators a prepared model ran, and whether they prove its precision.

A quantized precision can silently run dequantize-then-float kernels (a fallback): it then costs
more and saves nothing. So each case is profiled once, outside every timed window: one untimed
warm-up call, then one call under ``torch.profiler`` (CPU activities; CUDA too where the model runs
there) or, for an ONNX Runtime model, under ONNX Runtime's own profiler (a second session on the
same file with profiling on: node kernels by ``op_name``). The result lists operator names with
their share of self time, and checks them against the operators the catalog declares as proof of
the precision (``catalog.PROOF_OPERATORS``): none of them ran -> ``fallback``, with the reason.
"""

from __future__ import annotations

import fnmatch
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from energybench.catalog import PROOF_OPERATORS

QUANTIZED, FALLBACK, NOT_QUANTIZED = "quantized", "fallback", "not-quantized"
FLOAT_MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "MatMul", "Gemm", "FusedMatMul")


@dataclass(frozen=True)
class OperatorShare:
    name: str
    calls: int
    self_time_us: float  # device self time where the model runs on CUDA, else CPU self time
    share: float  # of the profiled call's summed self time, 0..1


@dataclass(frozen=True)
class KernelPath:
    """The operators of one profiled call and the verdict on the precision's proof operators."""

    precision: str
    profiler: str  # "torch.profiler (CPU)", "torch.profiler (CPU, CUDA)" or "onnxruntime"
    operators: tuple[OperatorShare, ...]  # by self time, largest first
    proof_operators: tuple[str, ...]  # the catalog's patterns for this precision (fnmatch)
    matched: tuple[str, ...]  # operators that ran and match one of them
    proof_share: float  # self-time share of the matched operators
    float_matmul_share: float  # self-time share of float matmuls (attention's included)
    status: str  # quantized | fallback | not-quantized (a precision with nothing to prove)
    reason: str | None
    profile_s: float  # wall time of the profiled call with the profiler's start and stop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def top(self, count: int = 8) -> str:
        return ", ".join(f"{o.name} {100 * o.share:.1f} %" for o in self.operators[:count])


def verdict(precision: str, operators: list[OperatorShare], profiler: str, profile_s: float) -> KernelPath:
    """Check the operators that ran against the precision's proof operators."""
    proof = PROOF_OPERATORS.get(precision, ())
    matched = tuple(o.name for o in operators if any(fnmatch.fnmatchcase(o.name, p) for p in proof))
    proof_share = sum(o.share for o in operators if o.name in matched)
    float_share = sum(o.share for o in operators if o.name in FLOAT_MATMULS)
    if not proof:
        status, reason = NOT_QUANTIZED, None
    elif matched:
        status, reason = QUANTIZED, None
    else:
        heaviest = ", ".join(o.name for o in operators[:3]) or "no operator"
        status = FALLBACK
        reason = (
            f"{precision} ran none of its quantized operators ({', '.join(proof)}); "
            f"its heaviest were {heaviest} (float matmuls {100 * float_share:.0f} % of self time)"
        )
    ordered = tuple(operators)
    return KernelPath(precision, profiler, ordered, proof, matched, proof_share, float_share, status, reason, profile_s)


def kernel_path(model: Any, batch: dict[str, torch.Tensor], precision: str, warmup: int = 1) -> KernelPath:
    """Profile one call of ``model(**batch)`` (after ``warmup`` untimed ones); never inside a timed window."""
    if hasattr(model, "session") and hasattr(model, "path"):  # an energybench OrtModel
        return ort_kernel_path(model, batch, precision, warmup)
    return torch_kernel_path(model, batch, precision, warmup)


def torch_kernel_path(model: Any, batch: dict[str, torch.Tensor], precision: str, warmup: int = 1) -> KernelPath:
    from torch.profiler import ProfilerActivity, profile  # deferred: heavy

    on_cuda = any(t.is_cuda for t in batch.values())
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_cuda else [])]
    with torch.inference_mode():
        for _ in range(warmup):
            model(**batch)
        synchronize(on_cuda)
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            model(**batch)
            synchronize(on_cuda)
        events = prof.key_averages()
        elapsed = time.perf_counter() - start
    timed = operator_times(events, on_cuda)
    profiler = "torch.profiler (CPU, CUDA)" if on_cuda else "torch.profiler (CPU)"
    return verdict(precision, shares(timed), profiler, elapsed)


def operator_times(events: Any, on_cuda: bool) -> list[tuple[str, int, float]]:
    """(name, calls, self time in us) per operator. On CUDA the time is the device time of the kernels
    an operator launched itself (kernel rows are left out: they would count that time twice)."""
    if not on_cuda:
        return [(e.key, e.count, e.self_cpu_time_total) for e in events]
    operators = [e for e in events if str(e.device_type).endswith("CPU")]
    return [(e.key, e.count, e.self_device_time_total) for e in operators]


def synchronize(on_cuda: bool) -> None:
    if on_cuda:
        torch.cuda.synchronize()


def shares(timed: list[tuple[str, int, float]]) -> list[OperatorShare]:
    """(name, calls, self time) -> shares of the summed self time, largest first (zero-time ones dropped)."""
    total = sum(t for _, _, t in timed) or 1.0
    kept = sorted((row for row in timed if row[2] > 0), key=lambda row: -row[2])
    return [OperatorShare(name, int(calls), float(t), float(t / total)) for name, calls, t in kept]


def ort_kernel_path(ort_model: Any, batch: dict[str, torch.Tensor], precision: str, warmup: int = 1) -> KernelPath:
    """ONNX Runtime's profiler on a second session of the model's file (profiling on, same providers)."""
    import onnxruntime as ort  # deferred: optional

    feed = {"input_ids": batch["input_ids"], "attention_mask": batch.get("attention_mask")}
    if feed["attention_mask"] is None:
        feed["attention_mask"] = torch.ones_like(batch["input_ids"])
    inputs = {name: feed[name].cpu().numpy() for name in ort_model.inputs}
    with tempfile.TemporaryDirectory(prefix="energybench-ort-profile-") as folder:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = torch.get_num_threads()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(ort_model.path), options, providers=ort_model.providers)
        for _ in range(warmup):
            session.run(["logits"], inputs)
        begin = time.perf_counter()
        session.run(["logits"], inputs)
        elapsed = time.perf_counter() - begin
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    return verdict(precision, shares(ort_node_times(events, warmup)), "onnxruntime", elapsed)


def ort_node_times(events: list[dict[str, Any]], warmup: int) -> list[tuple[str, int, float]]:
    """Kernel time per ``op_name`` of the last run in an ONNX Runtime profile (the warm-up runs dropped)."""
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    last_start = runs[-1] if len(runs) > warmup else 0.0
    totals: dict[str, list[float]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if event.get("ts", 0) < last_start:
            continue
        op = str(event.get("args", {}).get("op_name", event["name"]))
        calls_time = totals.setdefault(op, [0, 0.0])
        calls_time[0] += 1
        calls_time[1] += float(event.get("dur", 0))
    return [(name, int(calls), t) for name, (calls, t) in totals.items()]
