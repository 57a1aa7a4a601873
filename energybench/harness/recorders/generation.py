"""The generation benchmark of one case: time to first token, per-token decode latency, decode
throughput, peak memory with the KV cache, and energy per generated token, each its own record."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from energybench.catalog import DEFAULT_BACKEND
from energybench.harness.case import Case
from energybench.measure import energy, generation, workloads
from energybench.measure.generation import Generation
from energybench.measure.quality import max_positions
from energybench.models.precision import PrecisionUnsupported
from energybench.results.schema import Record, TimingStats


@dataclasses.dataclass(frozen=True)
class Timed:
    """The timed generations of one case."""

    runs: list[Generation]
    warmup: int

    @property
    def prefill_s(self) -> list[float]:
        return [run.prefill_s for run in self.runs]

    @property
    def decode_s(self) -> list[float]:
        return [step for run in self.runs for step in run.decode_s]


def record(case: Case) -> list[Record]:
    """ttft, decode-latency, decode-throughput, generation-energy and generation-memory of the case."""
    return GenerationRecorder(case).run()


class GenerationRecorder:
    """Records the generation metric of one case: the prompt's shape is set once, then each record."""

    def __init__(self, case: Case):
        self.case = case
        self.gen_tokens = case.settings.gen_tokens

    def run(self) -> list[Record]:
        self.require_generation()
        model, prompt = self.case.prepared.model, self.prompt()
        timed = self.time(model, prompt)
        return [self.ttft(timed), *self.decode(timed), self.energy(model, prompt), self.memory(prompt)]

    def prompt(self) -> torch.Tensor:
        """This case's prompts: --batch-size rows of real WikiText-2 tokens of the prompt length (sets ``shape``)."""
        positions = max_positions(self.case.prepared.model)
        problem = generation.usage_problem(self.case.spec.seq_len, self.gen_tokens, positions)
        if problem:  # the session checks this before anything runs; a user's own case lands here
            pytest.fail(problem, pytrace=False)
        self.shape = {
            "batch_size": self.case.batch_size,
            "seq_len": generation.prompt_len(self.case.spec.seq_len, self.gen_tokens, positions),
            "gen_tokens": self.gen_tokens,
        }
        return self.case.input_batch(self.shape["batch_size"], seq_len=self.shape["seq_len"])["input_ids"]

    def require_generation(self) -> None:
        if self.case.spec.backend != DEFAULT_BACKEND:
            self.case.skip(
                f"generation on the {self.case.spec.backend} backend is not wired: it runs the model's forward on "
                "fixed inputs, without the KV cache a decode step needs (no cache export); use --backend eager"
            )
        if not hasattr(self.case.prepared.model, "generation_config"):
            self.case.skip(f"{self.case.spec.model} {self.case.label} is not a generative model (no generation_config)")

    def time(self, model: Any, prompt: Any) -> Timed:
        device, settings = self.case.device, self.case.settings
        for _ in range(settings.warmup_rounds):
            generation.greedy(model, prompt, self.gen_tokens, device)
        runs = [generation.greedy(model, prompt, self.gen_tokens, device) for _ in range(settings.rounds)]
        for run in runs:  # exactly --gen-tokens new tokens for every row, no early stop
            assert tuple(run.tokens.shape) == (self.shape["batch_size"], self.gen_tokens), run.tokens.shape
        return Timed(runs, settings.warmup_rounds)

    def layout(self, timed: Timed) -> str:
        clock = "wall clock synchronized at both ends" if self.case.device.type == "cuda" else "wall clock"
        return (
            f"greedy, KV cache, {self.gen_tokens} new tokens after a {self.shape['batch_size']} x "
            f"{self.shape['seq_len']}-token WikiText-2 prompt; {len(timed.runs)} generations after "
            f"{timed.warmup} warm-up; {clock} (perf_counter)"
        )

    def record(self, value: float | None, unit: str, method: str, metric: str, **fields: Any) -> Record:
        return self.case.record(value, unit, method, metric=metric, shape=self.shape, **fields)

    def ttft(self, timed: Timed) -> Record:
        stats = TimingStats.from_rounds(timed.prefill_s)
        method = "prefill: the prompt's forward pass and the first token, median; " + self.layout(timed)
        return self.record(stats.median_s, "s", method, "ttft", timing=stats)

    def decode(self, timed: Timed) -> list[Record]:
        if not timed.decode_s:
            why = f"--gen-tokens {self.gen_tokens}: the first token comes from the prefill; there is no decode step"
            return [
                self.record(None, "s", "", "decode-latency", status="skipped", reason=why),
                self.record(None, "tokens/s", "", "decode-throughput", status="skipped", reason=why),
            ]
        stats = TimingStats.from_rounds(timed.decode_s)
        steps = self.gen_tokens - 1
        details = {"p90_s": stats.p90_s, "p99_s": stats.p99_s, "steps_per_generation": steps}
        method = f"one decode step of the batch, median of {stats.rounds} steps ({steps} per generation); "
        latency = self.record(
            stats.median_s, "s", method + self.layout(timed), "decode-latency", timing=stats, details=details
        )
        tokens_per_s = self.shape["batch_size"] * len(timed.decode_s) / sum(timed.decode_s)
        method = f"{self.shape['batch_size']} rows x {len(timed.decode_s)} steps / their summed time; " + self.layout(
            timed
        )
        throughput = self.record(tokens_per_s, "tokens/s", method, "decode-throughput", details=details)
        return [latency, throughput]

    def energy(self, model: Any, prompt: Any) -> Record:
        """Energy per generated token over a metered window of decode steps only (from a prefilled cache
        rewound before each call); of whole generations, labelled so, where decode cannot run alone."""
        device, absent = self.case.device, self.case.session.meter_absence()
        if absent is not None:
            why = f"no power meter can run here ({absent})"
            return self.record(None, "J/token", "", "generation-energy", status="skipped", reason=why)
        run = generation.decode_only_call(model, prompt, self.gen_tokens, device)
        basis, tokens = "decode only", self.gen_tokens - 1
        if run is None:
            run = generation.whole_generation_call(model, prompt, self.gen_tokens, device)
            basis, tokens = "whole generation (prefill + decode)", self.gen_tokens
        items = self.shape["batch_size"] * tokens
        result, method = self.case.session.metered(run, items, f"generated tokens ({basis})")
        details = {"window": basis, **energy.energy_details(result)}
        status = "ok" if result.reason is None else "skipped"
        fields = {"basis": result.method, "reason": result.reason, "status": status, "details": details}
        return self.record(result.per_item_j, "J/token", method, "generation-energy", **fields)

    def memory(self, prompt: Any) -> Record:
        """Peak memory of one generation of a fresh copy (weights, activations and the KV cache) above
        the memory in use before the copy; the kernels are warm from the timed generations."""
        device = self.case.device
        self.case.release_for_fresh()
        baseline = workloads.memory_baseline(device)
        try:
            fresh = self.case.fresh()
        except PrecisionUnsupported as error:
            self.case.skip(f"{self.case.label} on {device}: {error}")
        found: list[Generation] = []
        peak = workloads.peak_memory(
            lambda: found.append(
                generation.greedy(fresh.model, prompt, self.gen_tokens, device, generation.empty_cache(fresh.model))
            ),
            device,
            baseline,
        )
        details = {"kv_cache_bytes": found[0].cache_bytes, "model_tensor_bytes": workloads.model_bytes(fresh.model)}
        method = f"one whole generation of a fresh copy: {peak.method}"
        if peak.peak_bytes <= 0:
            why = f"memory did not grow above the baseline ({peak.peak_bytes} bytes): not measurable"
            return self.record(
                None, "bytes", method, "generation-memory", status="skipped", reason=why, details=details
            )
        return self.record(float(peak.peak_bytes), "bytes", method, "generation-memory", details=details)
