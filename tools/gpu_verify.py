"""The Python half of tools/gpu_verify.sh: the GPU suite's pytest arguments (the one place the
script and .github/workflows/gpu-benchmarks.yml read them from), and the summary of its runs.

    python tools/gpu_verify.py args quality --device cuda      # one pytest argument per line
    python tools/gpu_verify.py summary OUT/quality-run.json OUT/speed-run.json [--records OUT/records.csv]

The summary prints, from the saved runs: NVML counter vs integrated power per energy window,
the speedups of every precision over fp32 at real size (latency at batch 1, batch time and
throughput at --batch-size x --seq-len, energy per item), and every test that did not pass.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

STEPS = ("quality", "speed")
MODELS = "distilbert,gpt2"
ENERGY_MIN_S = "5.5"  # every window at least 5 s, so the NVML cross-check judges it


LEAN_PRECISIONS = "fp32,fp16,bf16,int8-wo,int4-wo,fp8-dyn"  # no compiled int8-dyn: its compile alone is minutes


def suite_args(step: str, device: str = "cuda", quick: bool = False, lean: bool = False) -> list[str]:
    """The pytest arguments of one step of the GPU suite (without --reports-dir and the gate's options).

    ``quality``: the embedded DistilBERT and GPT-2, every GPU precision, accuracy and perplexity.
    ``speed``: shape-only DistilBERT-base and GPT-2 small at real size, every GPU precision,
    latency, throughput, memory, size and energy (NVML). ``device`` cpu is the dry run: the same
    steps at toy sizes, no meters.
    """
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; accepted: {', '.join(STEPS)}")
    precisions = LEAN_PRECISIONS if lean else "gpu"
    args = ["benchmarks", "--model", MODELS, "--precision", precisions, "--device", device, "-p", "no:cacheprovider"]
    dry = device == "cpu"
    quick = quick or lean
    if step == "quality":
        args += ["--model-source", "embedded", "--metric", "accuracy,perplexity", "--meters", "none"]
        samples = "24" if dry else ("256" if quick else "1000")
        return [*args, "--max-samples", samples]
    if lean:  # real-size speed and energy of DistilBERT-base only
        args[2] = "distilbert"
    args += ["--model-source", "shape-only", "--metric", "latency,throughput,memory,size,energy"]
    if dry:
        return [
            *args,
            "--meters",
            "none",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--rounds",
            "3",
            "--warmup-rounds",
            "1",
        ]
    args += ["--meters", "nvml", "--energy-min-s", ENERGY_MIN_S, "--idle-s", "3"]
    return [*args, "--rounds", "10" if quick else "30", "--warmup-rounds", "3"]


# -- the summary ------------------------------------------------------------------------------
def load(path: str) -> object | None:
    from energybench.results.store import load_run

    try:
        return load_run(Path(path))
    except Exception as error:  # a step that saved nothing: say so and summarize the rest
        print(f"(no run at {path}: {error})")
        return None


def cross_check_lines(run) -> list[str]:
    """One line per energy window: the counter, the integrated power, their ratio and the verdict."""
    lines = ["NVML energy counter vs integrated sampled power, per energy window:"]
    head = f"  {'model':<11}{'precision':<10}{'window s':>9}{'counter J':>11}{'sampled J':>11}{'ratio':>8}"
    lines.append(head + f"{'samples':>9}  verdict")
    found = False
    for record in run.records:
        if record.metric != "energy":
            continue
        check = record.details.get("cross_check")
        if not check:
            why = record.reason or f"{record.method.split(':')[0]}: no counter to cross-check"
            lines.append(f"  {record.model:<11}{record.precision:<10}  {why}")
            continue
        found = True
        ratio = f"{check['ratio']:.4f}" if check["ratio"] is not None else "-"
        sampled = f"{check['sampled_j']:.1f}" if check["sampled_j"] is not None else "-"
        verdict = check["verdict"] + (f" ({check['reason']})" if check["verdict"] != "agrees" else "")
        row = f"  {record.model:<11}{record.precision:<10}{check['window_s']:>9.2f}{check['counter_j']:>11.1f}"
        lines.append(row + f"{sampled:>11}{ratio:>8}{check['samples']:>9}  {verdict}")
        lines += [f"      flagged: {flag}" for flag in record.details.get("flags", [])]
    if not found:
        lines.append("  (no window had the NVML energy counter: nothing to cross-check)")
    return lines


def speedup_lines(run) -> list[str]:
    """Each precision against fp32 of the same model, at the shapes the run measured."""
    from energybench.catalog import ALL_PRECISIONS, format_value

    order = {p: i for i, p in enumerate(ALL_PRECISIONS)}
    by_key = {(r.model, r.precision, r.metric): r for r in run.records}
    metrics = (("latency", "latency b1"), ("throughput", "batch time"), ("energy", "energy/item"))
    lines = ["Speedups over fp32 (fp32 time / precision time; energy: fp32 J / precision J):"]
    lines.append(f"  {'model':<11}{'precision':<10}" + "".join(f"{label:>25}" for _, label in metrics))
    for model, precision, metric in sorted(by_key, key=lambda k: (k[0], order.get(k[1], len(order)), k[2])):
        if metric != "latency":
            continue
        cells = []
        for name, _ in metrics:
            record, base = by_key.get((model, precision, name)), by_key.get((model, "fp32", name))
            cells.append(speedup_cell(record, base, format_value))
        lines.append(f"  {model:<11}{precision:<10}" + "".join(f" {cell:>24}" for cell in cells))
    shapes = {
        (r.model, r.shape.get("batch_size"), r.shape.get("seq_len"))
        for r in run.records
        if r.metric == "throughput" and r.value is not None  # a skipped record has no shape
    }
    lines += [f"  batch time = {m} throughput batch {b} x {s} tokens" for m, b, s in sorted(shapes, key=str)]
    return lines


def speedup_cell(record, base, format_value) -> str:
    if record is None or record.value is None:
        return "skipped" if record is not None else "-"
    if record.metric == "throughput":
        seconds = record.timing.median_s if record.timing else None
        shown = format_value(seconds, "s")
        ratio = record.value / base.value if base and base.value else None
    else:
        shown = format_value(record.value, record.unit)
        ratio = base.value / record.value if base and base.value and record.value else None
    return f"{shown} ({ratio:.2f}x)" if ratio else shown


def not_passed_lines(runs) -> list[str]:
    lines = ["Tests that did not pass (skipped with the reason, or failed):"]
    for run in runs:
        for record in run.records:
            if record.status != "ok":
                lines.append(f"  {record.model} {record.precision} {record.metric}: {record.status}: {record.reason}")
    return lines if len(lines) > 1 else [lines[0], "  none"]


def quality_lines(run) -> list[str]:
    from energybench.catalog import format_value

    lines = ["Quality (embedded models) against fp32:"]
    for record in run.records:
        if record.metric in ("accuracy", "perplexity") and record.value is not None:
            budget = record.budget
            loss = f"  loss {budget.loss:+.2f} {budget.unit} (budget {budget.limit:g})" if budget else ""
            lines.append(
                f"  {record.model:<11}{record.precision:<10}{format_value(record.value, record.unit):>12}{loss}"
            )
    return lines


def write_records(runs, path: Path) -> None:
    from energybench.results.store import records_csv, write_file

    write_file(path, records_csv([record for run in runs for record in run.records]))


def summary(quality: str, speed: str, records: str | None) -> int:
    quality_run, speed_run = load(quality), load(speed)
    runs = [run for run in (quality_run, speed_run) if run is not None]
    sections = []
    if quality_run is not None:
        sections.append(quality_lines(quality_run))
    if speed_run is not None:
        m = speed_run.machine
        where = f"{m.get('gpu') or m.get('cpu')}, torch {m.get('torch')}, CUDA {m.get('cuda')}"
        where += f", driver {m.get('gpu_driver')}"
        sections.append([f"Machine: {where} (fingerprint {m.get('fingerprint')})"])
        sections += [cross_check_lines(speed_run), speedup_lines(speed_run)]
    sections.append(not_passed_lines(runs))
    print("\n\n".join("\n".join(section) for section in sections))
    if records and runs:
        write_records(runs, Path(records))
    return 0 if runs else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    args_parser = sub.add_parser("args", help="print one step's pytest arguments, one per line")
    args_parser.add_argument("step", choices=STEPS)
    args_parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args_parser.add_argument("--quick", action="store_true")
    args_parser.add_argument("--lean", action="store_true", help="a rental of about 4 minutes: DistilBERT speed only")
    summary_parser = sub.add_parser("summary", help="print the summary of the saved runs")
    summary_parser.add_argument("quality_run")
    summary_parser.add_argument("speed_run")
    summary_parser.add_argument("--records", help="also write both runs' records to this CSV")
    args = parser.parse_args(argv)
    if args.command == "args":
        print("\n".join(suite_args(args.step, args.device, args.quick, args.lean)))
        return 0
    return summary(args.quality_run, args.speed_run, args.records)


if __name__ == "__main__":
    sys.exit(main())
