"""Check: added latency while the power meters run (target <= 1 %).

    python tools/meter_overhead.py [--model distilbert] [--meters auto] [--pairs 5]

Times the same forward pass (batch 1 x 128 tokens) with torch.utils.benchmark, alternately with
the meters off and with every available meter running (their sampling threads and CodeCarbon's
scheduler included), and prints the median paired overhead.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
import torch.utils.benchmark as tbench

from energybench import data
from energybench.measure import workloads
from energybench.measure.meters.selection import open_meters
from energybench.models import precision
from energybench.models import registry as models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="distilbert")
    parser.add_argument("--meters", default="auto")
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = models.load(models.resolve(models.REGISTRY[args.model], "auto"))
    model = precision.convert(copy.deepcopy(loaded.model), "fp32", device).model
    texts = [s for s, _ in data.sst2("validation")[0]]
    batch = workloads.fixed_batch(
        workloads.text_token_ids(loaded.tokenizer, texts, 128), batch_size=1, seq_len=128, vocab_size=0
    )
    run = workloads.forward_call(model, batch, device)
    requested = args.meters if args.meters in ("auto", "none") else tuple(args.meters.split(","))
    meters = open_meters(requested, device, country="USA", region=None, rapl_root=None, output_dir=None)
    timer = tbench.Timer(stmt="run()", globals={"run": run})
    ratios = []
    for pair in range(args.pairs):
        off = timer.blocked_autorange(min_run_time=3.0).median
        for meter in meters.meters:
            meter.start()
        on = timer.blocked_autorange(min_run_time=3.0).median
        readings = [meter.stop() for meter in meters.meters]
        ratios.append(on / off)
        print(f"pair {pair + 1}: off {off * 1e3:.3f} ms, on {on * 1e3:.3f} ms ({[r.meter for r in readings]})")
    print(f"meters running: {[m.name for m in meters.meters]}; absent: {meters.absent}")
    print(f"median added latency: {(statistics.median(ratios) - 1) * 100:+.2f} % (target <= 1 %)")


if __name__ == "__main__":
    main()
