"""Speed: single-request latency and batched throughput, timed by the pytest-benchmark fixture in
``--blocks`` blocks whose rounds the session pools per case."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from energybench.harness.case import Case
from energybench.measure import workloads
from energybench.models.precision import Prepared
from energybench.results.schema import Record, TimingStats


def record(case: Case, benchmark: Any) -> list[Record]:
    """The case's latency or throughput record (its metric says which)."""
    return [latency(case, benchmark) if case.spec.metric == "latency" else throughput(case, benchmark)]


def latency(case: Case, benchmark: Any) -> Record:
    batch_size = case.batch_size
    timing, events = time_forward(case, benchmark, batch_size)
    method = timing_method(case, batch_size)
    details = {**timing_details(case.prepared, events), **kernel_details(case, batch_size)}
    return case.record(timing.median_s, "s", method, timing=timing, shape=case.shape(batch_size), details=details)


def throughput(case: Case, benchmark: Any) -> Record:
    batch_size = case.batch_size
    timing, events = time_forward(case, benchmark, batch_size)
    shape = case.shape(batch_size)
    items, unit = case.items(shape), "tokens/s" if case.is_causal_lm else "samples/s"
    method = f"{items} {unit[:-2]} / median batch time; " + timing_method(case, batch_size)
    details = {**timing_details(case.prepared, events), **kernel_details(case, batch_size)}
    return case.record(items / timing.median_s, unit, method, timing=timing, shape=shape, details=details)


KEPT_OPERATORS = 12  # the record keeps the operators of most self time (and how many there were)


def kernel_details(case: Case, batch_size: int) -> dict[str, Any]:
    """The kernel path of this case (``measure.kernels``): the operators one profiled call ran, taken
    once per model x precision x backend x shape, after the timed rounds (never inside them). A
    precision that ran none of its proof operators is a ``fallback``, with the reason."""
    from energybench.measure.kernels import FALLBACK, kernel_path  # deferred: heavy

    spec = case.spec
    key = (spec.model, spec.precision, spec.backend, batch_size, case.seq_len)
    found = case.session.kernel_paths.get(key)
    if found is None:
        found = kernel_path(case.prepared.model, case.input_batch(batch_size), spec.precision)
        case.session.kernel_paths[key] = found
    path = found.to_dict()
    path["operators_total"], path["operators"] = len(path["operators"]), path["operators"][:KEPT_OPERATORS]
    details: dict[str, Any] = {"kernel_path": path}
    if found.status == FALLBACK:
        details["fallback"] = found.reason
    return details


def rounds_per_block(case: Case) -> int:
    return -(-case.settings.rounds // case.spec.blocks)  # --rounds split evenly, rounded up


def timing_method(case: Case, batch_size: int) -> str:
    clock = (
        "wall clock synchronized at both ends (CUDA-event times in details)"
        if case.device.type == "cuda"
        else "wall clock (perf_counter)"
    )
    shape = case.shape(batch_size)
    blocks, warmup = case.spec.blocks, case.settings.warmup_rounds
    layout = (
        f"{blocks} blocks of {rounds_per_block(case)} rounds, one per pass over the selection, "
        f"each after {warmup} warm-up"
        if blocks > 1
        else f"{case.settings.rounds} rounds after {warmup} warm-up"
    )
    return f"pytest-benchmark pedantic: {layout}, batch {shape['batch_size']} x {shape['seq_len']} tokens, {clock}"


def time_forward(case: Case, benchmark: Any, batch_size: int) -> tuple[TimingStats, dict[str, Any] | None]:
    """Time this block's forward passes with the pytest-benchmark fixture (its own files keep working);
    the statistics hold every block of this case timed so far in the session, with the CUDA-event
    statistics of this block's rounds (None off CUDA)."""
    events: list[float] = []
    spec = case.spec
    run = workloads.forward_call(case.prepared.model, case.input_batch(batch_size), case.device, events)
    warm_compile(case.prepared, run)
    benchmark.group = f"{spec.metric} {spec.model}"
    extra = {"precision": spec.precision, "block": spec.block, "blocks": spec.blocks}
    benchmark.extra_info.update({**extra, **case.shape(batch_size)})
    benchmark.pedantic(run, rounds=rounds_per_block(case), warmup_rounds=case.settings.warmup_rounds, iterations=1)
    if not benchmark.stats:
        case.skip(
            "pytest-benchmark timing is disabled (--benchmark-disable, --benchmark-skip, or pytest-xdist "
            "on CPU, where the workers share the cores)"
        )
    rounds = benchmark.stats.stats.data
    key = (spec.model, spec.precision, spec.backend, spec.metric, batch_size, case.seq_len)
    blocks = case.session.timed_blocks.setdefault(key, [])
    blocks.append(tuple(rounds))
    return TimingStats.from_blocks(blocks), cuda_event_stats(events[-len(rounds) :])


def warm_compile(prepared: Prepared, run: Callable[[], None]) -> None:
    """compile: compile for this shape before anything is timed (its time is recorded apart)."""
    if hasattr(prepared.model, "compile_s"):
        run()


def timing_details(prepared: Prepared, events: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CUDA-event statistics of the timed rounds, and torch.compile's compile times (never timed)."""
    out: dict[str, Any] = {"cuda_events": events} if events else {}
    compile_s = getattr(prepared.model, "compile_s", None)
    if compile_s:
        out["compile_s"] = dict(compile_s)  # first call per batch size, quality pass included; never timed
    return out


def cuda_event_stats(times_s: list[float]) -> dict[str, Any] | None:
    """Median, IQR and count of the CUDA-event times of the timed rounds (None off CUDA)."""
    if not times_s:
        return None
    stats = TimingStats.from_rounds(times_s)
    return {"median_s": stats.median_s, "iqr_s": stats.iqr_s, "rounds": stats.rounds}
