"""Footprint: peak memory of one forward pass of a fresh copy (in a fresh process where it can be),
and the serialized size of the converted model."""

from __future__ import annotations

from typing import Any

from energybench.catalog import BASELINE_PRECISION, DEFAULT_BACKEND
from energybench.harness.case import Case
from energybench.measure import isolated, workloads
from energybench.measure.workloads import serialized_size
from energybench.models.precision import PrecisionUnsupported, Prepared
from energybench.results.schema import Record

MIB = 2**20
SIZE_METHOD = "len(torch.save(model.state_dict())) in memory"


def record(case: Case) -> list[Record]:
    """The case's memory or size record (its metric says which)."""
    return [peak_memory(case) if case.spec.metric == "memory" else size(case)]


def peak_memory(case: Case) -> Record:
    """Peak memory of one forward pass of a fresh copy: its weights + activations above the baseline.

    A throw-away copy runs first, so one-time costs (loading the source model, kernel and
    thread-pool initialisation) fall before the baseline rather than into the figure.
    """
    device = case.device
    case.release_for_fresh()
    try:
        warm = case.fresh()
        batch = case.input_batch(case.batch_size, warm)
        workloads.forward_call(warm.model, batch, device)()
        del warm
        baseline = workloads.memory_baseline(device)
        fresh = case.fresh()
    except PrecisionUnsupported as error:
        case.skip(f"{case.label} on {device}: {error}")
    peak = workloads.peak_memory(workloads.forward_call(fresh.model, batch, device), device, baseline)
    shape = case.shape(case.batch_size, fresh)
    details = {"model_tensor_bytes": workloads.model_bytes(fresh.model), "baseline_bytes": baseline}
    details["in_process"] = {"peak_bytes": peak.peak_bytes, "method": peak.method}
    isolated = isolated_memory(fresh, batch, case)
    details["isolated"] = isolated
    if "peak_bytes" in isolated:
        details.update(versus_fp32(case, isolated))
        return case.record(float(isolated["peak_bytes"]), "bytes", isolated["method"], shape=shape, details=details)
    if peak.peak_bytes <= 0:
        why = f"memory did not grow above the baseline ({peak.peak_bytes} bytes): not measurable"
        return case.record(None, "bytes", peak.method, status="skipped", shape=shape, reason=why, details=details)
    method = f"{peak.method} (in this process: {isolated['reason']})"
    return case.record(float(peak.peak_bytes), "bytes", method, shape=shape, details=details)


def isolated_memory(prepared: Prepared, batch: dict[str, Any], case: Case) -> dict[str, Any]:
    """Peak RSS of a fresh process that loads only the converted model and runs one
    forward pass, weights and activations apart (CPU); the reason where it cannot be measured."""
    return isolated.measure(prepared.model, batch, case.device)


def versus_fp32(case: Case, isolated: dict[str, Any]) -> dict[str, Any]:
    """Where a quantized peak is not below eager fp32's: why (weights vs activations, apart)."""
    spec = case.spec
    fp32 = next(
        (
            r
            for r in case.session.records
            if (r.model, r.precision, r.backend, r.metric)
            == (spec.model, BASELINE_PRECISION, DEFAULT_BACKEND, "memory")
            and "peak_bytes" in r.details.get("isolated", {})
        ),
        None,
    )
    if fp32 is None or spec.precision == BASELINE_PRECISION or isolated["peak_bytes"] < fp32.value:
        return {}
    base = fp32.details["isolated"]
    return {
        "not_below_fp32": (
            f"peak {isolated['peak_bytes'] / MIB:.1f} MiB >= eager fp32 {fp32.value / MIB:.1f} MiB: weights "
            f"{isolated['weights_bytes'] / MIB:.1f} vs {base['weights_bytes'] / MIB:.1f} MiB, activations "
            f"{isolated['activations_bytes'] / MIB:.1f} vs {base['activations_bytes'] / MIB:.1f} MiB"
        )
    }


def size(case: Case) -> Record:
    model = case.prepared.model
    if hasattr(model, "artifact_bytes"):
        return case.record(float(model.artifact_bytes), "bytes", "size of the .onnx file ONNX Runtime runs")
    return case.record(float(serialized_size(getattr(model, "module", model))), "bytes", SIZE_METHOD)
