"""Figures: behaviour against fp32 and the kernel path of every precision that runs here.

    python tools/behaviour_figures.py [--models distilbert,gpt2] [--backends eager,onnxruntime] [--max-samples N]

For each model, fp32 on eager runs first and keeps the reference; every other precision x backend
that runs on this machine then gets, from its one quality pass: classifiers, accuracy, flips with
their exact CI, McNemar's lost / gained and recovery with its paired CI; causal LMs, perplexity,
top-1 agreement, output KL and recovery with CIs and perplexity by position. Then the kernel path
(one profiled call at batch 32 x 128 tokens): its status and heaviest operators. A combination this
machine cannot run is listed with its reason.
"""

from __future__ import annotations

import argparse
import copy
import types
from typing import Any

import torch

from energybench import catalog, data
from energybench.measure import behaviour, kernels, quality
from energybench.measure.workloads import fixed_batch, text_token_ids
from energybench.models import backends
from energybench.models import registry as models
from energybench.models.precision import PrecisionUnsupported, Prepared

CPU = torch.device("cpu")
RUNNERS: dict[str, Any] = {}


def prepare(loaded: Any, precision: str, backend: str) -> Prepared:
    runner = RUNNERS.setdefault(backend, backends.backend(backend))
    converted = runner.prepare(copy.deepcopy(loaded.model), precision, CPU, loaded)
    return Prepared(loaded, converted.model, precision, converted.implementation, converted.details, CPU)


def ci(pair: tuple[float, float], digits: int = 2) -> str:
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def classifier_rows(loaded: Any, cases: list[tuple[str, str]], settings: Any) -> None:
    ref = quality.quality(prepare(loaded, "fp32", "eager"), "accuracy", settings).details
    ref_labels, ref_hits = (quality.unpack_bits(ref[k], ref["total"]) for k in ("predicted_bits", "correct_bits"))
    print(f"  eager-fp32: accuracy {100 * ref['accuracy']:.2f} % over {ref['total']} sentences (the reference)")
    for precision, backend in cases:
        prepared = prepare(loaded, precision, backend)
        mine = quality.quality(prepared, "accuracy", settings).details
        labels, hits = (quality.unpack_bits(mine[k], mine["total"]) for k in ("predicted_bits", "correct_bits"))
        flips = behaviour.flips(ref_labels, labels, ref_hits, hits)
        recovery = behaviour.accuracy_recovery(ref_hits, hits)
        print(
            f"  {catalog.variant(precision, backend)}: accuracy {100 * mine['accuracy']:.2f} %, "
            f"flips {flips.flips_pp:.2f} pp {ci(flips.ci95_pp)} ({flips.flipped}: {flips.lost} lost / "
            f"{flips.gained} gained), recovery {recovery.recovery_pct:.2f} % {ci(recovery.ci95_pct)}"
        )
        kernel_row(prepared, precision, backend)


def lm_rows(loaded: Any, cases: list[tuple[str, str]], settings: Any) -> None:
    keep = behaviour.LMTrace(keep_reference=True)
    ref = quality.quality(prepare(loaded, "fp32", "eager"), "perplexity", settings, tap=keep)
    reference = keep.reference()
    print(f"  eager-fp32: perplexity {ref.value:.3f} ({ref.method}); reference {reference.mode}, ", end="")
    print(f"{reference.kept_bytes / 2**20:.1f} MiB kept")
    for precision, backend in cases:
        prepared = prepare(loaded, precision, backend)
        trace = behaviour.LMTrace(against=reference)
        mine = quality.quality(prepared, "perplexity", settings, tap=trace)
        found = behaviour.lm_behaviour(trace)
        positions = ", ".join(
            f"{b.label}: {b.perplexity:.2f} vs {r.perplexity:.2f}"
            for b, r in zip(found.by_position, found.reference_by_position)
            if b.tokens
        )
        print(
            f"  {catalog.variant(precision, backend)}: perplexity {mine.value:.3f}, agreement "
            f"{found.agreement_pct:.2f} % {ci(found.agreement_ci95_pct)}, output-kl {found.output_kl:.2e} nats "
            f"{ci(found.output_kl_ci95, 6)}, recovery {found.recovery.recovery_pct:.2f} % "
            f"{ci(found.recovery.ci95_pct)}; perplexity by position (this vs fp32) {positions}"
        )
        kernel_row(prepared, precision, backend)


def kernel_row(prepared: Prepared, precision: str, backend: str) -> None:
    loaded = prepared.loaded
    texts = (
        [t for t in data.wikitext2("test.tokens")[0].split("\n") if t.strip()]
        if loaded.source.task == catalog.CAUSAL_LM
        else [s for s, _ in data.sst2("validation")[0]]
    )
    ids = text_token_ids(loaded.tokenizer, texts, catalog.DEFAULT_BATCH_SIZE * catalog.DEFAULT_SEQ_LEN)
    batch = fixed_batch(ids, batch_size=catalog.DEFAULT_BATCH_SIZE, seq_len=catalog.DEFAULT_SEQ_LEN, vocab_size=0)
    path = kernels.kernel_path(prepared.model, batch, precision)
    proof = f"proof {', '.join(path.matched)} {100 * path.proof_share:.1f} %" if path.matched else ""
    print(f"      kernel path ({path.profiler}, {path.profile_s:.2f} s): {path.status} {proof}")
    print(f"      heaviest: {path.top(6)}")
    if path.reason:
        print(f"      reason: {path.reason}")


def runnable(task: str, names: list[str]) -> list[tuple[str, str]]:
    cases = []
    for backend in names:
        for precision in catalog.PRECISIONS:
            if (precision, backend) == ("fp32", "eager"):
                continue
            reason = backends.probe(backend, precision, CPU)
            if reason is None and precision == "int8-static" and task != catalog.SEQUENCE_CLASSIFICATION:
                reason = "int8-static calibrates on SST-2 sentences: classifiers only"
            if reason:
                print(f"  {catalog.variant(precision, backend)}: not run here: {reason}")
            else:
                cases.append((precision, backend))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="distilbert,gpt2")
    parser.add_argument("--backends", default="eager,onnxruntime")
    parser.add_argument("--max-samples", type=int, default=None, help="SST-2 sentences / perplexity windows")
    args = parser.parse_args()
    settings = types.SimpleNamespace(
        max_samples=args.max_samples, batch_size=catalog.DEFAULT_BATCH_SIZE, ppl_context=None, ppl_stride=None
    )
    for name in args.models.split(","):
        loaded = models.load(models.resolve(models.REGISTRY[name], "auto"))
        print(loaded.source.describe())
        cases = runnable(loaded.source.task, args.backends.split(","))
        rows = lm_rows if loaded.source.task == catalog.CAUSAL_LM else classifier_rows
        try:
            rows(loaded, cases, settings)
        except PrecisionUnsupported as error:
            print(f"  stopped: {error}")


if __name__ == "__main__":
    main()
