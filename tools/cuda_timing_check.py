"""The harness's clocks against ``torch.utils.benchmark`` on the same model, precision and input.

Builds the case the way the suite does (shape-only model from the registry, ``convert``, a fixed
batch, ``workloads.forward_call`` with CUDA events), times it with the harness's clocks (CUDA
events per call on GPU, synchronized wall clock), then with ``torch.utils.benchmark.Timer``
(``blocked_autorange``) on the very same call, and prints the medians and their ratio. The
target is a ratio within 3 % (``TOLERANCE``). On CPU there are no events: the wall clock is
compared (the dry run of tools/gpu_verify.sh).

    python tools/cuda_timing_check.py --device cuda --case distilbert:fp32 --case distilbert:bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

TOLERANCE = 0.03


def measure(model: str, precision: str, device: Any, batch: int, seq: int, rounds: int, min_run_s: float) -> dict:
    import torch
    from torch.utils import benchmark

    from energybench.measure import workloads
    from energybench.models.precision import convert
    from energybench.models.registry import REGISTRY, load, resolve

    loaded = load(resolve(REGISTRY[model], "shape-only"))
    converted = convert(loaded.model, precision, device)
    inputs = workloads.fixed_batch(None, batch_size=batch, seq_len=seq, vocab_size=loaded.model.config.vocab_size)
    events: list[float] = []
    run = workloads.forward_call(converted.model, inputs, device, events)
    for _ in range(max(3, rounds // 10)):  # warm-up (and compile, for a compiled precision)
        run()
    wall = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        wall.append(time.perf_counter() - start)
    timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
    reference = timer.blocked_autorange(min_run_time=min_run_s)
    out = {
        "model": model,
        "precision": precision,
        "implementation": converted.implementation,
        "shape": [batch, seq],
        "device": str(device),
        "rounds": rounds,
        "wall_median_s": statistics.median(wall),
        "timer_median_s": reference.median,
        "timer_calls": reference.number_per_run * len(reference.times),
    }
    out["events_median_s"] = statistics.median(events[-rounds:]) if events else None
    clock = "events" if events else "wall"
    out["compared"] = clock
    out["ratio"] = out[f"{clock}_median_s"] / reference.median
    out["wall_ratio"] = out["wall_median_s"] / reference.median
    out["within_tolerance"] = abs(out["ratio"] - 1.0) <= TOLERANCE
    return out


def describe(result: dict) -> list[str]:
    ms = 1e3
    events = result["events_median_s"]
    verdict = "OK" if result["within_tolerance"] else f"OFF by more than {TOLERANCE:.0%}"
    return [
        f"{result['model']} {result['precision']} batch {result['shape'][0]} x {result['shape'][1]} on "
        f"{result['device']} ({result['implementation']})",
        f"  harness CUDA events median   {events * ms:9.4f} ms" if events is not None else "  (no CUDA events on CPU)",
        f"  harness wall clock median    {result['wall_median_s'] * ms:9.4f} ms ({result['rounds']} rounds)",
        f"  torch.utils.benchmark median {result['timer_median_s'] * ms:9.4f} ms ({result['timer_calls']} calls)",
        f"  {result['compared']}/Timer {result['ratio']:.4f}, wall/Timer {result['wall_ratio']:.4f} -> {verdict}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--case", action="append", help="model:precision (repeatable) [distilbert:fp32]")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--min-run-s", type=float, default=2.0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False); use --device cpu")
    device = torch.device(args.device)
    results = []
    for case in args.case or ["distilbert:fp32"]:
        model, _, precision = case.partition(":")
        result = measure(model, precision or "fp32", device, args.batch, args.seq, args.rounds, args.min_run_s)
        print("\n".join(describe(result)), flush=True)
        results.append(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
    return 0 if all(r["within_tolerance"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
