"""The LLM quantization table: decode speed, memory and size at real LLM size; perplexity loss on an embedded LM.

Speed, memory and size: a shape-only Llama of SmolLM2-360M's dimensions (960 wide, 32 layers, 15 heads /
5 KV heads, 2560 MLP, 49152 vocabulary, tied embeddings; random weights, seed 0), one precision per fresh
process (so its peak memory holds only that model): greedy decoding with the KV cache, batch 1, a
``--prompt``-token prompt, ``--gen-tokens`` new tokens, ``--rounds`` timed generations after one warm-up.
decode tokens/s is the median over the rounds of (decode steps / their summed time); peak memory is the
process RSS peak during one generation minus the RSS before the model was built; size is
``torch.save(state_dict)``. J/token needs an energy counter (RAPL or NVML): where none is readable it is
printed as not measured, with the reason; the suite's ``generation-energy`` records it where one is.

Perplexity loss: the embedded ``--ppl-model`` (smollm2: a Llama trained by energybench on WikiText-2) at each
precision, strided WikiText-2 test perplexity (``--ppl-windows`` windows), in % over fp32.

usage: python tools/llm_quant_figures.py [--precisions fp32,int8,int8-wo,int4-wo,int4-hqq] [--layers 32]
       [--prompt 128] [--gen-tokens 16] [--rounds 3] [--ppl-windows 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PRECISIONS = ("fp32", "int8", "int8-wo", "int4-wo", "int4-hqq")
SMOLLM2_360M = {
    "hidden_size": 960,
    "intermediate_size": 2560,
    "num_hidden_layers": 32,
    "num_attention_heads": 15,
    "num_key_value_heads": 5,
    "vocab_size": 49152,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}


def shape_only_llama(layers: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**{**SMOLLM2_360M, "num_hidden_layers": layers}, bos_token_id=0, eos_token_id=0)
    return LlamaForCausalLM(config).eval()


def energy_reason() -> str:
    from energybench.measure.meters import rapl

    reason = rapl.probe()
    return f"RAPL: {reason}" if reason else "RAPL readable: measure it with the suite's generation-energy"


def measure_one(precision: str, layers: int, prompt_len: int, gen_tokens: int, rounds: int) -> dict:
    """One precision in this (fresh) process: decode tokens/s, peak memory of a generation, size."""
    import torch

    from energybench.measure import generation, workloads
    from energybench.models.precision import convert

    cpu = torch.device("cpu")
    before = workloads.memory_baseline(cpu)
    converted = convert(shape_only_llama(layers), precision, cpu)
    model = converted.model
    prompt = torch.randint(1, SMOLLM2_360M["vocab_size"], (1, prompt_len), generator=torch.Generator().manual_seed(1))
    generation.greedy(model, prompt, gen_tokens, cpu)  # warm-up
    runs = [generation.greedy(model, prompt, gen_tokens, cpu) for _ in range(rounds)]
    workloads.memory_baseline(cpu)  # collect and trim what the rounds freed
    peak = workloads.peak_memory(lambda: generation.greedy(model, prompt, gen_tokens, cpu), cpu, before)
    return {
        "precision": precision,
        "implementation": converted.implementation,
        "decode_tokens_per_s": statistics.median(run.decode_tokens_per_s for run in runs),
        "peak_bytes": peak.peak_bytes,
        "size_bytes": workloads.serialized_size(model),
    }


def perplexity_losses(precisions: list[str], windows: int, model: str = "smollm2") -> dict[str, float | str]:
    """Perplexity of the embedded ``model`` at each precision (or the skip reason)."""
    import copy

    import torch

    from energybench import data
    from energybench.errors import Unsupported
    from energybench.measure import quality
    from energybench.models import registry
    from energybench.models.precision import convert

    loaded = registry.load(registry.resolve_embedded(registry.REGISTRY[model]))
    text, _ = data.wikitext2("test.tokens")
    ids = quality.tokenize_long_text(loaded.tokenizer, text)
    context = quality.max_positions(loaded.model)
    found: dict[str, float | str] = {}
    for precision in ["fp32", *[p for p in precisions if p != "fp32"]]:
        try:
            model = convert(copy.deepcopy(loaded.model), precision, torch.device("cpu")).model
        except Unsupported as error:
            found[precision] = f"skipped: {error}"
            continue
        result = quality.perplexity(
            model,
            ids,
            context=context,
            stride=context // 2,
            batch_size=8,
            device=torch.device("cpu"),
            max_windows=windows,
        )
        found[precision] = result.perplexity
    return found


def table(rows: list[dict], losses: dict, why_no_energy: str, args: argparse.Namespace) -> str:
    fp32 = losses.get("fp32")
    lines = [
        f"shape-only SmolLM2-360M dimensions ({args.layers} layers), batch 1, {args.prompt}-token prompt, "
        f"{args.gen_tokens} new tokens, median of {args.rounds} generations; CPU, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; perplexity: embedded {args.ppl_model}, strided "
        "WikiText-2 test, "
        f"{args.ppl_windows} windows",
        "",
        "| precision | decode tokens/s | J/token | peak memory (MiB) | size (MiB) | "
        f"perplexity (embedded {args.ppl_model}) "
        "| loss vs fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ppl = losses.get(row["precision"])
        if "skipped" in row:
            lines.append(f"| `{row['precision']}` | {row['skipped']} | | | | | |")
            continue
        shown = f"{ppl:.2f}" if isinstance(ppl, float) else (ppl or "-")
        loss = f"{100 * (ppl / fp32 - 1):+.2f} %" if isinstance(ppl, float) and isinstance(fp32, float) else "-"
        lines.append(
            f"| `{row['precision']}` | {row['decode_tokens_per_s']:.2f} | not measured ({why_no_energy}) | "
            f"{row['peak_bytes'] / 2**20:.0f} | {row['size_bytes'] / 2**20:.0f} | {shown} | {loss} |"
        )
    lines += ["", "implementations:"] + [f"- `{r['precision']}`: {r.get('implementation', '-')}" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--layers", type=int, default=SMOLLM2_360M["num_hidden_layers"])
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--gen-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ppl-windows", type=int, default=40)
    parser.add_argument("--ppl-model", default="smollm2", help="the embedded LM scored for the perplexity loss")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one precision, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.layers, args.prompt, args.gen_tokens, args.rounds)))
        return
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    rows = []
    for precision in precisions:
        start = time.perf_counter()
        child = [sys.executable, __file__, "--one", precision, "--layers", str(args.layers)]
        child += ["--prompt", str(args.prompt), "--gen-tokens", str(args.gen_tokens), "--rounds", str(args.rounds)]
        done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["failed"])[-1]
            rows.append({"precision": precision, "skipped": f"skipped: {last[:160]}"})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{precision}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    losses = perplexity_losses(precisions, args.ppl_windows, args.ppl_model)
    print(table(rows, losses, energy_reason(), args))


if __name__ == "__main__":
    main()
