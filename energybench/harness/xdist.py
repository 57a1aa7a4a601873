"""Scale-out over the GPUs of one node with pytest-xdist: one worker per GPU, pinned.

Each worker sees exactly one GPU (``CUDA_VISIBLE_DEVICES`` is set in the worker before torch
touches CUDA), so two energy windows never share a device. More workers than GPUs is refused,
and so is energy on the CPU with several workers (they would share one CPU package and meter).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from energybench.catalog import METERED_METRICS, TIMED_METRICS
from energybench.harness.options import SettingsError


def visible_gpus(env: Mapping[str, str], count_gpus: Callable[[], int]) -> list[str]:
    """The GPU ids this node offers, honouring an existing CUDA_VISIBLE_DEVICES."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    return [str(i) for i in range(count_gpus())]


def worker_index(worker_id: str) -> int:
    if not worker_id.startswith("gw") or not worker_id[2:].isdigit():
        raise SettingsError(f"unexpected pytest-xdist worker id {worker_id!r} (expected gw0, gw1, ...)")
    return int(worker_id[2:])


def gpu_for_worker(worker_id: str, worker_count: int, gpus: list[str]) -> str:
    """The one GPU a worker owns; refuses more workers than GPUs."""
    if worker_count > len(gpus):
        raise SettingsError(
            f"pytest-xdist: {worker_count} workers but {len(gpus)} GPU(s) ({','.join(gpus) or 'none'}); "
            f"two energy windows must never share a device: use -n {max(len(gpus), 1)} (one worker per GPU)"
        )
    return gpus[worker_index(worker_id)]


def pin_worker(worker_id: str, worker_count: int, gpus: list[str], env: dict[str, str] | None = None) -> str | None:
    """Pin this worker process to its GPU; None when the node has no GPU (CPU runs)."""
    env = os.environ if env is None else env
    if not gpus:
        return None
    gpu = gpu_for_worker(worker_id, worker_count, gpus)
    env["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu


def check_cpu_energy(worker_count: int, metrics: tuple[str, ...], gpus: list[str], device: str) -> None:
    metered = set(METERED_METRICS) & set(metrics)
    if worker_count > 1 and metered and (not gpus or device == "cpu"):
        raise SettingsError(
            f"pytest-xdist: energy on the CPU with {worker_count} workers would put several workloads in one "
            "CPU package's energy window; run energy with -n 0, or on GPUs with one worker per GPU"
        )


def check_blocks(worker_count: int, blocks: int, metrics: tuple[str, ...]) -> None:
    """Each block of a timed test is a test of its own; spread over workers, each worker would save
    a record of its own blocks alone. pytest-xdist does not keep them on one worker, so refuse."""
    if worker_count > 1 and blocks > 1 and set(TIMED_METRICS) & set(metrics):
        raise SettingsError(
            f"pytest-xdist with --blocks {blocks}: the blocks of a timed test would be split over workers, "
            "each saving part of its rounds; give --blocks 1 with -n, or time latency/throughput without -n"
        )


def count_gpus_without_cuda_init() -> int:
    """GPU count from NVML, so the controller never initialises CUDA (0 when there is no NVIDIA driver)."""
    try:
        import pynvml  # deferred: optional

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no library: no GPUs to pin
        return 0
