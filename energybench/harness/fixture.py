"""The ``eb`` fixture's object: one benchmark case, its prepared model and inputs, and a recorder."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import cached_property
from typing import Any

import pytest
import torch

from energybench import data
from energybench.catalog import METRICS
from energybench.harness.generation import GenerationBench
from energybench.harness.options import Settings
from energybench.harness.session import BenchSession, Case
from energybench.layers import ablation, study
from energybench.layers.rows import ImpactStudy, Plan
from energybench.layers.units import LayerMappingError
from energybench.measure import workloads
from energybench.measure.energy import truth_check
from energybench.measure.quality import eval_text, max_positions
from energybench.measure.workloads import serialized_size
from energybench.models.precision import PrecisionUnsupported, Prepared
from energybench.results.schema import Budget, Record, TimingStats

__all__ = ["Bench", "cuda_event_stats", "truth_check"]


class Bench:
    """The ``eb`` fixture: one benchmark case, its prepared model, and a recorder for its result."""

    def __init__(self, session: BenchSession, case: Case, test_id: str):
        self.session, self.case, self.test_id = session, case, test_id
        self.settings: Settings = session.settings
        self.source = session.sources[case.model]

    @cached_property
    def prepared(self) -> Prepared:
        try:
            return self.session.prepared(
                self.case.model, self.case.precision, self.builder(), backend=self.case.backend
            )
        except PrecisionUnsupported as error:
            self.skip(f"{self.label} on {self.session.device}: {error}")

    @property
    def label(self) -> str:
        """The precision as run by this case's backend: ``int8``, ``onnxruntime-int8-static``."""
        from energybench.catalog import variant  # deferred: heavy

        return variant(self.case.precision, self.case.backend)

    def require_hooks(self) -> None:
        """The layer study hooks nn.Modules: only eager and compile run them."""
        runner = self.session.backend(self.case.backend)
        if not runner.runs_hooks():
            self.skip(
                f"the layer study needs forward hooks on PyTorch modules; the {self.case.backend} backend runs "
                "no PyTorch modules (use --backend eager or compile)"
            )

    def builder(self) -> Callable[[], Prepared] | None:
        """How to build this case's precision when a converter alone cannot (``mixed``: from its plan)."""
        if self.case.precision != "mixed":
            return None
        if self.case.backend != "eager":
            raise PrecisionUnsupported("mixed is built by the layer study's plan in eager PyTorch; use --backend eager")

        return lambda: study.prepare_mixed(self.session, self)

    @property
    def device(self) -> torch.device:
        return self.session.device

    @property
    def is_causal_lm(self) -> bool:
        return self.source.task == "causal-lm"

    @property
    def batch_size(self) -> int:
        """This test's batch size: its shape's, else the first --batch-size (unshaped tests, users' own)."""
        return self.case.batch_size or self.settings.batch_size

    @property
    def seq_len(self) -> int:
        return self.case.seq_len or self.settings.seq_len

    def require_task(self) -> None:
        """A metric of another task (asked for by name): a skip with the reason, not an error."""
        task = METRICS[self.case.metric].task if self.case.metric in METRICS else None
        if task is not None and self.source.task not in (task, None):
            self.skip(f"{self.case.metric} needs a {task} model; {self.case.model} is a {self.source.task} model")

    def shape(self, batch_size: int, prepared: Prepared | None = None, seq_len: int | None = None) -> dict[str, int]:
        model = (prepared or self.prepared).model
        return {"batch_size": batch_size, "seq_len": min(seq_len or self.seq_len, max_positions(model))}

    def input_batch(
        self, batch_size: int, prepared: Prepared | None = None, seq_len: int | None = None
    ) -> dict[str, torch.Tensor]:
        """A fixed-shape batch of real tokens (random ids for shape-only models)."""
        prepared = prepared or self.prepared
        shape = self.shape(batch_size, prepared, seq_len)
        tokenizer = prepared.loaded.tokenizer
        ids = None
        if tokenizer is not None:
            if self.is_causal_lm:
                texts = eval_text(prepared)[0].split("\n")
            else:
                texts = [sentence for sentence, _ in data.sst2("validation")[0]]
            ids = workloads.text_token_ids(tokenizer, texts, shape["batch_size"] * shape["seq_len"])
        return workloads.fixed_batch(ids, vocab_size=prepared.model.config.vocab_size, **shape)

    @property
    def rounds_per_block(self) -> int:
        return -(-self.settings.rounds // self.case.blocks)  # --rounds split evenly, rounded up

    def timing_method(self, batch_size: int) -> str:
        clock = (
            "wall clock synchronized at both ends (CUDA-event times in details)"
            if self.device.type == "cuda"
            else "wall clock (perf_counter)"
        )
        shape = self.shape(batch_size)
        blocks = self.case.blocks
        layout = (
            f"{blocks} blocks of {self.rounds_per_block} rounds, one per pass over the selection, "
            f"each after {self.settings.warmup_rounds} warm-up"
            if blocks > 1
            else f"{self.settings.rounds} rounds after {self.settings.warmup_rounds} warm-up"
        )
        return f"pytest-benchmark pedantic: {layout}, batch {shape['batch_size']} x {shape['seq_len']} tokens, {clock}"

    def time_forward(self, benchmark: Any, batch_size: int) -> TimingStats:
        """Time this block's forward passes with the pytest-benchmark fixture (its own files keep working);
        the statistics hold every block of this case timed so far in the session.

        On CUDA, CUDA events time the same calls on the device; their statistics land in
        ``self.event_timing`` for the record's details.
        """
        events: list[float] = []
        run = workloads.forward_call(self.prepared.model, self.input_batch(batch_size), self.device, events)
        self.warm_compile(run)
        benchmark.group = f"{self.case.metric} {self.case.model}"
        extra = {"precision": self.case.precision, "block": self.case.block, "blocks": self.case.blocks}
        benchmark.extra_info.update({**extra, **self.shape(batch_size)})
        rounds, warmup = self.rounds_per_block, self.settings.warmup_rounds
        benchmark.pedantic(run, rounds=rounds, warmup_rounds=warmup, iterations=1)
        if not benchmark.stats:
            self.skip(
                "pytest-benchmark timing is disabled (--benchmark-disable, --benchmark-skip, or pytest-xdist "
                "on CPU, where the workers share the cores)"
            )
        rounds = benchmark.stats.stats.data
        self.event_timing = cuda_event_stats(events[-len(rounds) :])
        key = (self.case.model, self.case.precision, self.case.backend, self.case.metric, batch_size, self.seq_len)
        blocks = self.session.timed_blocks.setdefault(key, [])
        blocks.append(tuple(rounds))
        return TimingStats.from_blocks(blocks)

    def warm_compile(self, run: Callable[[], None]) -> None:
        """compile: compile for this shape before anything is timed (its time is recorded apart)."""
        if hasattr(self.prepared.model, "compile_s"):
            run()

    def timing_details(self) -> dict[str, Any]:
        timing = getattr(self, "event_timing", None)
        out: dict[str, Any] = {"cuda_events": timing} if timing else {}
        compile_s = getattr(self.prepared.model, "compile_s", None)
        if compile_s:
            out["compile_s"] = dict(compile_s)  # first call per batch size, quality pass included; never timed
        return out

    def record_latency(self, benchmark: Any) -> Record:
        batch_size = self.batch_size
        timing = self.time_forward(benchmark, batch_size)
        method = self.timing_method(batch_size)
        return self.record(
            timing.median_s, "s", method, timing=timing, shape=self.shape(batch_size), details=self.timing_details()
        )

    def record_throughput(self, benchmark: Any) -> Record:
        batch_size = self.batch_size
        timing = self.time_forward(benchmark, batch_size)
        shape = self.shape(batch_size)
        items, unit = (batch_size * shape["seq_len"], "tokens/s") if self.is_causal_lm else (batch_size, "samples/s")
        method = f"{items} {unit[:-2]} / median batch time; " + self.timing_method(batch_size)
        value = items / timing.median_s
        return self.record(value, unit, method, timing=timing, shape=shape, details=self.timing_details())

    def record_generation(self) -> list[Record]:
        """ttft, decode-latency, decode-throughput, generation-energy and generation-memory of this case."""
        return GenerationBench(self).run()

    def record_peak_memory(self) -> Record:
        """Peak memory of one forward pass of a fresh copy: its weights + activations above the baseline.

        A throw-away copy runs first, so one-time costs (loading the source model, kernel and
        thread-pool initialisation) fall before the baseline rather than into the figure.
        """
        self.session.release_prepared()
        batch_size = self.batch_size
        try:
            warm = self.session.fresh(self.case.model, self.case.precision, self.case.backend)
            batch = self.input_batch(batch_size, warm)
            workloads.forward_call(warm.model, batch, self.device)()
            del warm
            baseline = workloads.memory_baseline(self.device)
            fresh = self.session.fresh(self.case.model, self.case.precision, self.case.backend)
        except PrecisionUnsupported as error:
            self.skip(f"{self.label} on {self.device}: {error}")
        peak = workloads.peak_memory(workloads.forward_call(fresh.model, batch, self.device), self.device, baseline)
        shape = self.shape(batch_size, fresh)
        details = {"model_tensor_bytes": workloads.model_bytes(fresh.model), "baseline_bytes": baseline}
        details["in_process"] = {"peak_bytes": peak.peak_bytes, "method": peak.method}
        isolated = self.isolated_memory(fresh, batch)
        details["isolated"] = isolated
        if "peak_bytes" in isolated:
            details.update(self.versus_fp32(isolated))
            return self.record(float(isolated["peak_bytes"]), "bytes", isolated["method"], shape=shape, details=details)
        if peak.peak_bytes <= 0:
            why = f"memory did not grow above the baseline ({peak.peak_bytes} bytes): not measurable"
            return self.record(None, "bytes", peak.method, status="skipped", shape=shape, reason=why, details=details)
        method = f"{peak.method} (in this process: {isolated['reason']})"
        return self.record(float(peak.peak_bytes), "bytes", method, shape=shape, details=details)

    def versus_fp32(self, isolated: dict[str, Any]) -> dict[str, Any]:
        """Where a quantized peak is not below eager fp32's: why (weights vs activations, apart)."""
        fp32 = next(
            (
                r
                for r in self.session.records
                if (r.model, r.precision, r.backend, r.metric) == (self.case.model, "fp32", "eager", "memory")
                and "peak_bytes" in r.details.get("isolated", {})
            ),
            None,
        )
        if fp32 is None or self.case.precision == "fp32" or isolated["peak_bytes"] < fp32.value:
            return {}
        base = fp32.details["isolated"]
        mib = 2**20
        return {
            "not_below_fp32": (
                f"peak {isolated['peak_bytes'] / mib:.1f} MiB >= eager fp32 {fp32.value / mib:.1f} MiB: weights "
                f"{isolated['weights_bytes'] / mib:.1f} vs {base['weights_bytes'] / mib:.1f} MiB, activations "
                f"{isolated['activations_bytes'] / mib:.1f} vs {base['activations_bytes'] / mib:.1f} MiB"
            )
        }

    def record_size(self) -> Record:
        model = self.prepared.model
        if hasattr(model, "artifact_bytes"):
            return self.record(float(model.artifact_bytes), "bytes", "size of the .onnx file ONNX Runtime runs")
        size = serialized_size(getattr(model, "module", model))
        return self.record(float(size), "bytes", "len(torch.save(model.state_dict())) in memory")

    def isolated_memory(self, prepared: Prepared, batch: dict[str, Any]) -> dict[str, Any]:
        """Peak RSS of a fresh process that loads only the converted model and runs one
        forward pass, weights and activations apart (CPU); the reason where it cannot be measured."""
        from energybench.measure import isolated  # deferred: heavy

        return isolated.measure(prepared.model, batch, self.device)

    def require_trained_weights(self) -> None:
        if self.source.kind == "shape-only":
            self.skip(f"{self.case.metric} is meaningless on shape-only models (random weights)")

    def skip(self, reason: str) -> None:
        self.record(None, "", "", status="skipped", reason=reason)
        pytest.skip(reason)

    def record(self, value: float | None, unit: str, method: str, metric: str | None = None, **fields: Any) -> Record:
        prepared = self.__dict__.get("prepared")
        details = dict(fields.pop("details", {}))
        if prepared is not None:
            details = {"implementation": prepared.implementation, **prepared.details, **details}
        record = Record(
            model=self.case.model,
            precision=self.case.precision,
            metric=metric or self.case.metric,
            value=value,
            unit=unit,
            method=method,
            device=str(self.device),
            source=self.source.to_dict(),
            test_id=self.test_id,
            details=details,
            backend=self.case.backend,
            **{"shape": self.case.shape, **fields},
        )
        return self.session.add(record)

    def record_quality(self, fail_on_budget: bool = True) -> Record:
        """Measure accuracy/perplexity, compare with the fp32 baseline, record, assert the budget
        (unless ``fail_on_budget`` is False: the test asserts the record's verdict itself)."""
        self.require_trained_weights()
        self.prepared  # noqa: B018 - skips here if the precision cannot run
        result = self.session.quality(
            self.case.model, self.case.precision, self.case.metric, self.prepared, backend=self.case.backend
        )
        budget = self.budget(result.value)
        status = "budget-breach" if budget and not budget.passed else "ok"
        details = {**result.details, **self.predicted_vs_measured(budget), **self.timing_details()}
        record = self.record(
            result.value, result.unit, result.method, data=result.data, details=details, budget=budget, status=status
        )
        if fail_on_budget and budget and not budget.passed:
            pytest.fail(budget.message(self.case.metric, self.case.precision, result.value), pytrace=False)
        return record

    def budget(self, value: float) -> Budget | None:
        limit = self.settings.budget_for(self.case.metric, self.case.model, self.case.precision)
        if self.case.precision == "fp32" or limit is None:  # fp32 on any backend: no budget, the loss is shown
            return None
        reference = self.session.quality(self.case.model, "fp32", self.case.metric)
        baseline = reference.value
        if self.case.metric == "accuracy":
            loss, unit = (baseline - value) * 100.0, "pp"
        else:
            loss, unit = (value / baseline - 1.0) * 100.0, "%"
        budget = Budget("fp32", baseline, loss, limit, unit, passed=loss <= limit + 1e-9)
        return self.with_paired_loss(budget, reference.details, value)

    def with_paired_loss(self, budget: Budget, reference: dict[str, Any], value: float) -> Budget:
        """Accuracy: the paired difference on the same sentences (McNemar p, bootstrap CI of the loss)."""
        from energybench.measure.quality import unpack_bits  # deferred: heavy
        from energybench.results.paired import paired_loss  # deferred: heavy

        mine = self.session.quality(
            self.case.model, self.case.precision, self.case.metric, self.prepared, backend=self.case.backend
        ).details
        if not (mine.get("correct_bits") and reference.get("correct_bits")) or mine["total"] != reference["total"]:
            return budget
        base, hits = (unpack_bits(d["correct_bits"], d["total"]) for d in (reference, mine))
        accuracies = (sum(base) / len(base), sum(hits) / len(hits))
        if not all(math.isclose(a, b) for a, b in zip(accuracies, (budget.baseline_value, value), strict=True)):
            return budget  # the per-sentence bits do not describe these values: no paired statistics
        found = paired_loss(base, hits)
        return dataclasses.replace(
            budget, lost=found.lost, gained=found.gained, mcnemar_p=found.mcnemar_p, loss_ci95=found.loss_ci95_pp
        )

    def predicted_vs_measured(self, budget: Budget | None) -> dict[str, Any]:
        """For ``mixed``: the plan's predicted quality delta next to the measured one vs fp32."""
        if self.case.precision != "mixed" or budget is None:
            return {}
        plan = Plan.from_dict(self.prepared.details["plan"])
        sign = -1.0 if self.case.metric == "accuracy" else 1.0  # budget.loss is a loss; deltas keep their sign
        return {
            "predicted_quality_delta": plan.predicted_quality_delta,
            "measured_quality_delta": sign * budget.loss,
        }

    def record_layer_energy(self) -> Record:
        """Per layer type and per unit: time, share, FLOPs and apportioned energy, with the checks."""
        self.require_trained_weights()
        self.require_hooks()
        try:
            profiled = study.layer_table(self, self.case.precision)
        except LayerMappingError as error:
            self.skip(str(error))
        table, window = profiled.table, profiled.table.meter
        unit = "J/token" if self.is_causal_lm else "J/sample"
        method = (
            f"apportioned: {window.basis} window energy ({window.name}) x hooked time share, "
            f"{len(profiled.rounds_s)} passes, {table.timer}; not a per-layer reading"
        )
        return self.record(
            window.energy_j_per_sample,
            unit,
            method,
            basis="apportioned",
            reason=window.reason,
            timing=TimingStats.from_rounds(profiled.rounds_s),
            shape=self.shape(self.settings.batch_size),
            details=table.to_dict(),
        )

    def record_impact(self) -> Record:
        """Per unit: ablation KL and quality delta, int8/fp16 sensitivity, energy; correlations; plan."""
        self.require_trained_weights()
        self.require_hooks()
        try:
            rows = study.impact_rows(self)
        except LayerMappingError as error:
            self.skip(str(error))
        types = study.per_type(rows)
        correlation = study.correlations(rows, types)
        found = ImpactStudy(
            samples=study.evalset(self).samples,
            impact_score=ablation.IMPACT_SCORE,
            per_layer=rows,
            per_type=types,
            correlation=correlation,
            plan=study.mixed_plan(self) if self.device.type == "cpu" else None,
        )
        largest = study.largest_impact(rows)
        method = f"largest per-unit impact score ({ablation.IMPACT_SCORE}), every unit's in details"
        details = {**found.to_dict(), "largest_unit": largest.layer, "largest_unit_type": largest.layer_type}
        impact = self.record(largest.impact_score, "nats", method, details=details)
        per_layer = correlation["per_layer"]
        method = f"Spearman rho of per-unit {per_layer.x} vs impact score ({ablation.IMPACT_SCORE})"
        rho = {"correlation": {level: dataclasses.asdict(c) for level, c in correlation.items()}}
        self.record(per_layer.spearman_rho, "rho", method, "energy-impact-rho", reason=per_layer.reason, details=rho)
        return impact


def cuda_event_stats(times_s: list[float]) -> dict[str, Any] | None:
    """Median, IQR and count of the CUDA-event times of the timed rounds (None off CUDA)."""
    if not times_s:
        return None
    stats = TimingStats.from_rounds(times_s)
    return {"median_s": stats.median_s, "iqr_s": stats.iqr_s, "rounds": stats.rounds}
