"""Issue 11's targets: backend x precision latency ratios over eager fp32, and int8-static's accuracy loss.

Latency on shape-only DistilBERT-base (real size, random weights), batch 1 x 128: every variant is
prepared first, then timed in interleaved rounds (each round calls every variant once, in a
rotating order), so the ratios come from ONE run under the same load. Median and IQR per variant.
Accuracy: int8-static vs fp32 on the embedded DistilBERT (SST-2 validation, 872 sentences).

usage: python tools/backend_speed.py [--rounds 30] [--skip-accuracy] [--skip-latency] [--variants eager:fp32,...]

torch.compile variants compile during the warm-up call (its time is printed apart, never in the rounds).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import time

import torch

from energybench import data
from energybench.errors import Unsupported
from energybench.measure.quality import accuracy
from energybench.measure.workloads import fixed_batch
from energybench.models import registry
from energybench.models.backends import backend

VARIANTS = (
    ("eager", "fp32"),
    ("eager", "int8"),
    ("compile", "fp32"),
    ("compile", "int8-dyn"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8-static"),
)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, median, q3


def latency_table(rounds: int, variants: tuple[tuple[str, str], ...]) -> None:
    spec = registry.REGISTRY["distilbert"]
    loaded = registry.load(registry.resolve_shape_only(spec))
    # shape-only has no tokenizer: int8-static calibrates with the embedded model's tokenizer (its ids are
    # valid for the real vocabulary); random weights make the calibration ranges meaningless, not the speed
    embedded = registry.load(registry.resolve_embedded(spec))
    loaded = dataclasses.replace(loaded, tokenizer=embedded.tokenizer)
    cpu = torch.device("cpu")
    batch = fixed_batch(None, vocab_size=loaded.model.config.vocab_size, batch_size=1, seq_len=128)
    runners, notes = {}, {}
    for name, precision in variants:
        start = time.perf_counter()
        runner = backend(name)
        try:
            runners[(name, precision)] = (runner, runner.prepare(copy.deepcopy(loaded.model), precision, cpu, loaded))
        except Unsupported as why:
            print(f"{name} {precision}: skipped: {why}", flush=True)
            continue
        notes[(name, precision)] = f"prepared in {time.perf_counter() - start:.0f} s"
        print(f"{name} {precision}: {notes[(name, precision)]}", flush=True)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
    keys = list(runners)
    with torch.inference_mode():
        for key in keys:  # warm-up (torch.compile compiles here)
            runners[key][1].model(**batch)
            compiled = getattr(runners[key][1].model, "compile_s", None)
            if compiled:
                print(f"{key[0]} {key[1]}: compiled in {sum(compiled.values()):.0f} s (not in the rounds)", flush=True)
        for r in range(rounds):
            for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                start = time.perf_counter()
                runners[key][1].model(**batch)
                times[key].append(time.perf_counter() - start)
    base = statistics.median(times[("eager", "fp32")])
    print(f"\nlatency, batch 1 x 128, shape-only DistilBERT-base, {rounds} interleaved rounds, {threads()}")
    print(f"{'backend':<12} {'precision':<12} {'median ms':>10} {'IQR ms':>8} {'speedup vs eager fp32':>22}  size")
    for key, values in times.items():
        q1, median, q3 = quartiles(values)
        size = runners[key][1].details.get("onnx_bytes")
        shown = f"{size / 2**20:.1f} MiB .onnx" if size else ""
        print(f"{key[0]:<12} {key[1]:<12} {median * 1e3:10.1f} {(q3 - q1) * 1e3:8.1f} {base / median:21.2f}x  {shown}")


def accuracy_table() -> None:
    spec = registry.REGISTRY["distilbert"]
    loaded = registry.load(registry.resolve_embedded(spec))
    cpu = torch.device("cpu")
    validation, _ = data.sst2("validation")
    results = {}
    for name, precision in (("eager", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8-static")):
        prepared = backend(name).prepare(copy.deepcopy(loaded.model), precision, cpu, loaded)
        results[(name, precision)] = accuracy(
            prepared.model, loaded.tokenizer, validation, batch_size=32, device=cpu
        ).accuracy
        calibration = prepared.details.get("calibration")
        if calibration:
            print(f"calibration: {calibration}")
    base = results[("eager", "fp32")]
    print(f"\naccuracy, embedded DistilBERT, SST-2 validation ({len(validation)} sentences)")
    for (name, precision), value in results.items():
        print(f"{name:<12} {precision:<12} {value * 100:6.2f} %  loss vs eager fp32 {(base - value) * 100:+.2f} pp")


def threads() -> str:
    load = os.getloadavg()
    return f"{torch.get_num_threads()} threads, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--variants",
        type=lambda text: tuple(tuple(v.split(":")) for v in text.split(",")),
        default=VARIANTS,
        help="backend:precision,... (default: %(default)s); eager:fp32 is the base and always included",
    )
    args = parser.parse_args()
    print(f"start: {threads()}")
    if not args.skip_accuracy:
        accuracy_table()
    if not args.skip_latency:
        latency_table(args.rounds, tuple(dict.fromkeys((("eager", "fp32"), *args.variants))))
    print(f"end: {threads()}")


if __name__ == "__main__":
    main()
