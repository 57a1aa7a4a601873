"""Check: the harness's per-token decode latency vs a bare ``model.generate`` timed by torch.utils.benchmark.

    python tools/generation_agreement.py [--model gpt2] [--precision fp32] [--gen-tokens 32] [--pairs 5]

Alternates, in this one process, `pytest benchmarks --metric generation` (the harness: the median
decode step of its timed generations) and torch.utils.benchmark.Timer.blocked_autorange of
``model.generate`` (greedy, exactly N new tokens, the KV cache) on the same converted model and
the same prompt. generate's per-token latency is (time of N new tokens - time of 1) / (N - 1):
the prefill and the first token cancel. Each harness figure is paired with the reference taken
right after it and the median of the paired ratios is reported (target: within 5 %). The harness's
mean step is printed beside its median: generate's figure is a mean per token, so on a loaded
machine, where preemptions make the step times skewed, the two statistics part and only the
mean can agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.utils.benchmark as tbench

ROOT = Path(__file__).resolve().parent.parent


class Capture:
    """A pytest plugin object that keeps the session's harness state for reuse after the run."""

    def pytest_sessionfinish(self, session):
        from energybench.harness.fixtures import bench_session

        self.bench = bench_session(session.config)


def harness_decode_latency(args: argparse.Namespace) -> tuple[float, object]:
    reports = Path(tempfile.mkdtemp(prefix="energybench-generation-agreement-"))
    capture = Capture()
    options = ["--model", args.model, "--precision", args.precision, "--metric", "generation", "--meters", "none"]
    options += ["--gen-tokens", str(args.gen_tokens), "--rounds", args.rounds, "--warmup-rounds", "3"]
    code = pytest.main(
        [str(ROOT / "benchmarks"), "-q", "-p", "no:cacheprovider", *options, "--reports-dir", str(reports)],
        plugins=[capture],
    )
    if code != 0:
        raise SystemExit(f"pytest exited with {code}")
    records = json.loads(next(reports.glob("runs/*/run.json")).read_text())["records"]
    latency = next(r for r in records if r["metric"] == "decode-latency")
    print(
        f"harness decode step: median {latency['value'] * 1e3:.3f} ms, mean {latency['timing']['mean_s'] * 1e3:.3f} ms"
    )
    return latency["value"], capture.bench


def generate_call(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> Callable[[], None]:
    """Bare greedy ``model.generate`` of exactly ``new_tokens`` tokens with the KV cache."""
    mask = torch.ones_like(prompt)
    pad = model.generation_config.pad_token_id
    pad = model.generation_config.eos_token_id if pad is None else pad

    def run() -> None:
        with torch.inference_mode():
            model.generate(
                input_ids=prompt,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                num_beams=1,
                use_cache=True,
                pad_token_id=pad,
            )

    return run


def reference_decode_latency(bench: object, gen_tokens: int) -> float:
    from energybench.harness.case import Case
    from energybench.harness.recorders.generation import GenerationRecorder

    eb = Case(bench, bench.cases("generation")[0], "agreement")
    prompt = GenerationRecorder(eb).prompt().to(eb.device)  # the harness's prompt for this case
    model = eb.prepared.model

    def median_s(new_tokens: int) -> float:
        run = generate_call(model, prompt, new_tokens)
        timer = tbench.Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=2.0).median

    return (median_s(gen_tokens) - median_s(1)) / (gen_tokens - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--gen-tokens", type=int, default=32)
    parser.add_argument("--rounds", default="30")
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    if args.gen_tokens < 2:
        raise SystemExit("--gen-tokens must be >= 2: one new token has no decode step")
    ratios = []
    for pair in range(args.pairs):
        harness_s, bench = harness_decode_latency(args)
        reference_s = reference_decode_latency(bench, args.gen_tokens)
        ratios.append(harness_s / reference_s)
        print(
            f"pair {pair + 1}: harness {harness_s * 1e3:.3f} ms/token, generate + torch.utils.benchmark "
            f"{reference_s * 1e3:.3f} ms/token, ratio {ratios[-1]:.3f}"
        )
    diff = (statistics.median(ratios) - 1) * 100
    spread = (max(ratios) - min(ratios)) * 100
    print(f"model {args.model} {args.precision}, {args.gen_tokens} new tokens, {torch.get_num_threads()} threads")
    print(
        f"median paired ratio {statistics.median(ratios):.3f} ({diff:+.2f} %, target within 5 %); "
        f"spread {spread:.1f} points"
    )


if __name__ == "__main__":
    main()
