"""Check: what behaviour against fp32 adds to the quality pass, and what the kernel profiler pass costs.

    python tools/behaviour_cost.py [--models distilbert,gpt2] [--precision int8] [--max-samples N] [--repeats 3]
    python tools/behaviour_cost.py --random-gpt2 WINDOWS   # the embedded GPT-2's shapes, random weights

Quality pass: each pass is timed without and with its tap (GPT-2: fp32 keeping the reference, the
precision comparing with it), the four passes interleaved, ``--repeats`` times; the medians give the
tap's added share (target: at most 10 %), and the statistics (CIs) are timed apart. Classifiers keep
their predicted labels in the pass itself, so their added cost is the flips and recovery statistics.
Kernel path: one profiled call per case at the default shape (batch 32 x 128 tokens), with its
warm-up call (target: at most 5 s per case). On a shared machine the figures are contended.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import os
import statistics
import time
import types
from typing import Any

import torch

from energybench import data
from energybench.catalog import DEFAULT_BATCH_SIZE, DEFAULT_SEQ_LEN
from energybench.measure import behaviour, kernels, quality
from energybench.measure.workloads import fixed_batch, text_token_ids
from energybench.models import backends, embedded
from energybench.models import registry as models
from energybench.models.precision import Prepared

CPU = torch.device("cpu")


RUNNERS: dict[str, Any] = {}  # one backend object each for the whole run (ONNX Runtime's files live in it)


def prepare(loaded: Any, precision: str, backend: str = "eager") -> Prepared:
    runner = RUNNERS.setdefault(backend, backends.backend(backend))
    converted = runner.prepare(copy.deepcopy(loaded.model), precision, CPU, loaded)
    return Prepared(loaded, converted.model, precision, converted.implementation, converted.details, CPU)


def load(name: str) -> Any:
    return models.load(models.resolve(models.REGISTRY[name], "auto"))


def settings(max_samples: int | None) -> Any:
    return types.SimpleNamespace(
        max_samples=max_samples, batch_size=DEFAULT_BATCH_SIZE, ppl_context=None, ppl_stride=None
    )


def timed(fn, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def lm_cost(loaded: Any, precision: str, max_samples: int | None, repeats: int) -> None:
    ref_model, model = prepare(loaded, "fp32"), prepare(loaded, precision)
    config = settings(max_samples)
    times: dict[str, list[float]] = {"fp32": [], "fp32+reference": [], precision: [], f"{precision}+behaviour": []}
    for _ in range(repeats):
        times["fp32"].append(timed(quality.quality, ref_model, "perplexity", config)[0])
        keep = behaviour.LMTrace(keep_reference=True)
        times["fp32+reference"].append(timed(quality.quality, ref_model, "perplexity", config, tap=keep)[0])
        times[precision].append(timed(quality.quality, model, "perplexity", config)[0])
        trace = behaviour.LMTrace(against=keep.reference())
        result = timed(quality.quality, model, "perplexity", config, tap=trace)
        times[f"{precision}+behaviour"].append(result[0])
    stats_s, found = timed(behaviour.lm_behaviour, trace)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = keep.reference()
    print(f"{loaded.source.describe()}")
    print(f"  perplexity pass: {result[1].method}")
    print(f"  reference kept: {ref.mode} ({ref.kept_bytes / 2**20:.1f} MiB); {ref.reason or behaviour.EXACT_KL}")
    for name, value in med.items():
        print(f"  {name:<22} median {value:7.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    fp32_added = med["fp32+reference"] / med["fp32"] - 1.0
    added = (med[f"{precision}+behaviour"] + stats_s) / med[precision] - 1.0
    print(f"  added to the fp32 pass (keeping the reference): {100 * fp32_added:+.1f} %")
    print(f"  added to the {precision} pass (KL, agreement, by position + CIs {stats_s:.2f} s): {100 * added:+.1f} %")
    print(f"  -> agreement {found.agreement_pct:.2f} %, output-kl {found.output_kl:.5f} nats")


def classifier_cost(loaded: Any, precision: str, max_samples: int | None, repeats: int) -> None:
    ref_model, model = prepare(loaded, "fp32"), prepare(loaded, precision)
    config = settings(max_samples)
    passes = [timed(quality.quality, model, "accuracy", config)[0] for _ in range(repeats)]
    ref, mine = (quality.quality(m, "accuracy", config).details for m in (ref_model, model))
    labels = [quality.unpack_bits(d["predicted_bits"], d["total"]) for d in (ref, mine)]
    hits = [quality.unpack_bits(d["correct_bits"], d["total"]) for d in (ref, mine)]
    stats_s, found = timed(lambda: (behaviour.flips(*labels, *hits), behaviour.accuracy_recovery(*hits)))
    pass_s = statistics.median(passes)
    print(f"{loaded.source.describe()}")
    print(f"  {precision} accuracy pass median {pass_s:.2f} s over {ref['total']} sentences (runs {passes})")
    print(f"  flips + recovery with CIs: {stats_s:.3f} s = {100 * stats_s / pass_s:+.1f} % of the pass")
    print(f"  -> flips {found[0].flips_pp:.2f} pp, recovery {found[1].recovery_pct:.2f} %")


def kernel_cost(loaded: Any, precisions: list[str]) -> None:
    ids = text_token_ids(loaded.tokenizer, [t for t, _ in quality_texts(loaded)], DEFAULT_BATCH_SIZE * DEFAULT_SEQ_LEN)
    batch = fixed_batch(ids, batch_size=DEFAULT_BATCH_SIZE, seq_len=DEFAULT_SEQ_LEN, vocab_size=0)
    for name in precisions:
        for backend in ("eager", "onnxruntime"):
            if backends.probe(backend, name, CPU):
                continue
            model = prepare(loaded, name, backend).model
            total_s, path = timed(kernels.kernel_path, model, batch, name)
            print(
                f"  kernel path {loaded.source.model} {backend}-{name}: {total_s:.2f} s with warm-up "
                f"(profiled call {path.profile_s:.2f} s), {path.status}"
            )


def quality_texts(loaded: Any) -> list[tuple[str, int]]:
    if loaded.source.task == "causal-lm":
        return [(line, 0) for line in data.wikitext2("test.tokens")[0].split("\n") if line.strip()]
    return data.sst2("validation")[0]


def random_lm_cost(windows: int, repeats: int) -> None:
    """The embedded GPT-2's architecture (recipe shapes) with random weights on random ids: the same
    compute as the trained model, for when it is not built yet; a noised copy stands in for int8."""
    from transformers import GPT2Config, GPT2LMHeadModel

    recipe = embedded.RECIPES["gpt2"]
    config = GPT2Config(
        n_layer=recipe.layers,
        n_embd=recipe.hidden,
        n_head=recipe.heads,
        n_inner=recipe.ffn,
        n_positions=recipe.max_len,
        vocab_size=recipe.vocab_size,
    )
    torch.manual_seed(0)
    ref_model = GPT2LMHeadModel(config).eval()
    model = copy.deepcopy(ref_model)
    with torch.no_grad():
        for weight in model.parameters():
            weight.add_(0.01 * torch.randn_like(weight))
    stride = recipe.max_len // 2
    ids = torch.randint(0, recipe.vocab_size, (stride * (windows + 1),), generator=torch.Generator().manual_seed(0))

    def run(which: Any, tap: Any = None) -> float:
        watching = tap.watching(which, int(ids.numel())) if tap is not None else contextlib.nullcontext()
        with watching:
            return timed(
                quality.perplexity,
                which,
                ids,
                context=recipe.max_len,
                stride=stride,
                batch_size=DEFAULT_BATCH_SIZE,
                device=CPU,
                tap=tap,
            )[0]

    times: dict[str, list[float]] = {k: [] for k in ("fp32", "fp32+reference", "other", "other+exact", "other+top-k")}
    for _ in range(repeats):
        times["fp32"].append(run(ref_model))
        keep, keep_k = behaviour.LMTrace(keep_reference=True), behaviour.LMTrace(keep_reference=True, exact=False)
        times["fp32+reference"].append(run(ref_model, keep))
        run(ref_model, keep_k)
        times["other"].append(run(model))
        times["other+exact"].append(run(model, behaviour.LMTrace(against=keep.reference())))
        times["other+top-k"].append(run(model, behaviour.LMTrace(against=keep_k.reference())))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"embedded GPT-2 architecture, random weights, {windows + 1} windows of {recipe.max_len}, stride {stride}")
    for name, value in med.items():
        print(f"  {name:<16} median {value:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    for mode in ("exact", "top-k"):
        print(f"  added by the {mode} KL and agreement: {100 * (med[f'other+{mode}'] / med['other'] - 1):+.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="distilbert,gpt2")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--max-samples", type=int, default=None, help="SST-2 sentences / perplexity windows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--random-gpt2", type=int, metavar="WINDOWS", help="only the embedded GPT-2's architecture, random weights"
    )
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, ", end="")
    print(f"load average {os.getloadavg()[0]:.1f} (shared machine: contended figures)")
    stats = importlib.import_module("scipy.stats")  # the harness imports it once per session anyway
    del stats
    if args.random_gpt2:
        random_lm_cost(args.random_gpt2, args.repeats)
        return
    for name in args.models.split(","):
        loaded = load(name)
        cost = lm_cost if loaded.source.task == "causal-lm" else classifier_cost
        cost(loaded, args.precision, args.max_samples, args.repeats)
        kernel_cost(loaded, ["fp32", args.precision])


if __name__ == "__main__":
    main()
