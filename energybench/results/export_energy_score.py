"""A run as an AI Energy Score style table: GPU energy in Wh per 1,000 queries, by phase.

The AI Energy Score (Hugging Face and partners, https://huggingface.github.io/AIEnergyScore/,
"Evaluating Models" and "Disclosing Results"; source huggingface/AIEnergyScore index.md, kept in
tests/formats/ai-energy-score-methodology.md) scores "GPU energy consumption, measured in watt-hours
per 1,000 queries", each phase (preprocess, prefill and decode) "evaluated separately and summed",
only GPU energy, at batch size 1, on stated hardware (NVIDIA H100 80GB); a label names the model,
the GPU energy, the task, the date and the benchmarking hardware.

One row per model x precision x backend x shape that has an energy figure. A query is one item of
the workload: one sequence (classification, or a causal LM's forward over the prompt, which is its
prefill); a generation's query is one prompt and its ``gen_tokens`` new tokens, its decode energy
the ``generation-energy`` record (J per decode token) x the decode tokens. Only GPU energy that was
measured (NVML counter) or sampled (NVML power, like CodeCarbon's nvidia-smi reading) gives a
number; anything else (a CPU run, CodeCarbon's estimate) leaves the energy cells empty and says why
in ``note``: no number is made up. Where this run's batch or hardware differs from the score's
protocol, ``note`` says so too: the table is in the score's units, not a score.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields

from energybench.errors import UsageError
from energybench.results.answer import JOULES_PER_WH, PER_THOUSAND
from energybench.results.export_fields import hardware, record_machine, shape_name
from energybench.results.schema import Record, Run

GPU_BASES = ("measured", "sampled")
SCORE_BATCH = 1
SCORE_HARDWARE = "NVIDIA H100"


@dataclass(frozen=True)
class ScoreRow:
    model: str
    task: str
    date: str  # the day the run started (UTC)
    precision: str
    backend: str
    shape: str
    hardware: str
    energy_basis: str
    gpu_energy_wh_per_1000_queries: float | None
    prefill_wh_per_1000_queries: float | None
    decode_wh_per_1000_queries: float | None
    query: str
    note: str


COLUMNS = tuple(f.name for f in fields(ScoreRow))


def wh_per_1000(joules_per_query: float) -> float:
    return joules_per_query * PER_THOUSAND / JOULES_PER_WH


def measured_gpu(record: Record | None) -> str | None:
    """Why this record gives no GPU energy number, or None when it does."""
    if record is None:
        return "not measured in this run"
    if record.value is None:
        return f"not measured: {record.reason}"
    if not record.device.startswith("cuda"):
        return f"no measured GPU energy: {record.basis} energy on {record.device}"
    if record.basis not in GPU_BASES:
        return f"no measured GPU energy: the figure is {record.basis}"
    return None


def protocol_note(record: Record, machine_hardware: str) -> list[str]:
    notes = []
    if record.shape.get("batch_size", SCORE_BATCH) != SCORE_BATCH:
        notes.append(f"batch {record.shape['batch_size']} (the score uses batch {SCORE_BATCH})")
    if SCORE_HARDWARE not in machine_hardware:
        notes.append(f"on {machine_hardware.split(' (')[0]} (the score's hardware is {SCORE_HARDWARE})")
    return notes


def forward_row(run: Run, record: Record) -> ScoreRow:
    """A one-forward query (a classification, or a causal LM's prompt: its prefill)."""
    why = measured_gpu(record)
    total = None if why else wh_per_1000(float(record.value or 0.0))
    lm = record.source.get("task") == "causal-lm"
    machine = hardware(record_machine(run, record))
    notes = [why] if why else protocol_note(record, machine)
    return row(
        run.started_at[:10],
        record,
        machine,
        total,
        total if lm else None,
        None,
        "one sequence (one forward pass)",
        notes,
    )


def generation_row(run: Run, decode: Record, prefill: Record | None) -> ScoreRow:
    """A generation query: the prompt's prefill and ``gen_tokens`` new tokens."""
    machine = hardware(record_machine(run, decode))
    tokens = int(decode.shape.get("gen_tokens", 0))
    window = str(decode.details.get("window", ""))
    whole = window.startswith("whole")
    query = f"one prompt + {tokens} new tokens"
    notes: list[str] = []
    why_decode = measured_gpu(decode)
    decode_wh = None if why_decode else wh_per_1000(float(decode.value or 0.0) * (tokens if whole else tokens - 1))
    if why_decode:
        notes.append(f"decode: {why_decode}")
    if whole:
        notes.append("whole generations metered together: prefill and decode not split")
        return row(
            run.started_at[:10], decode, machine, decode_wh, None, None, query, notes + protocol_note(decode, machine)
        )
    why_prefill = measured_gpu(prefill) if prefill is not None else "no energy record at the generation's prompt shape"
    prefill_wh = None if why_prefill or prefill is None else wh_per_1000(float(prefill.value or 0.0))
    if why_prefill:
        notes.append(f"prefill: {why_prefill}")
    total = decode_wh + prefill_wh if decode_wh is not None and prefill_wh is not None else None
    return row(
        run.started_at[:10],
        decode,
        machine,
        total,
        prefill_wh,
        decode_wh,
        query,
        notes + protocol_note(decode, machine),
    )


def row(
    day: str,
    record: Record,
    machine: str,
    total: float | None,
    prefill: float | None,
    decode: float | None,
    query: str,
    notes: list[str],
) -> ScoreRow:
    return ScoreRow(
        record.model,
        str(record.source.get("task") or ""),
        day,
        record.precision,
        record.backend,
        shape_name(record),
        machine,
        record.basis or "-",
        total,
        prefill,
        decode,
        query,
        "; ".join(notes),
    )


def score_rows(run: Run) -> list[ScoreRow]:
    energy = [r for r in run.records if r.metric == "energy"]
    rows = [forward_row(run, r) for r in energy]
    for decode in (r for r in run.records if r.metric == "generation-energy"):
        prompt = {k: v for k, v in decode.shape.items() if k != "gen_tokens"}
        prefill = next((r for r in energy if r.series[:2] == decode.series[:2] and r.shape == prompt), None)
        rows.append(generation_row(run, decode, prefill))
    return rows


def to_ai_energy_score(run: Run) -> tuple[str, list[str]]:
    """The CSV table and notes (one per row without a measured GPU energy)."""
    rows = score_rows(run)
    if not rows:
        raise UsageError(
            f"run {run.run_id} has no energy or generation-energy records: nothing to put in an AI Energy Score "
            "table; run the suite with --metric energy (on a GPU: --device cuda) and export that run"
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for found in rows:
        writer.writerow("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in vars(found).values())
    missing = [r for r in rows if r.gpu_energy_wh_per_1000_queries is None]
    notes = [f"{r.model}/{r.precision}/{r.backend}/{r.shape}: no GPU energy number ({r.note})" for r in missing]
    return buffer.getvalue(), notes
