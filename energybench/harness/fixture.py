"""The ``eb`` fixture's object: one benchmark case, its prepared model and inputs, and a recorder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cached_property
from typing import Any

import pytest

from energybench.harness.options import Settings
from energybench.harness.session import BenchSession, Case
from energybench.measure.quality import eval_text, max_positions
from energybench.models.precision import Prepared
from energybench.results.schema import Budget, Record, TimingStats


class Bench:
    """The ``eb`` fixture: one benchmark case, its prepared model, and a recorder for its result."""

    def __init__(self, session: BenchSession, case: Case, test_id: str):
        self.session, self.case, self.test_id = session, case, test_id
        self.settings: Settings = session.settings
        self.source = session.sources[case.model]

    @cached_property
    def prepared(self) -> Prepared:
        from energybench.models.precision import PrecisionUnsupported

        try:
            return self.session.prepared(self.case.model, self.case.precision, self.builder())
        except PrecisionUnsupported as error:
            self.skip(f"{self.case.precision} on {self.session.device}: {error}")

    def builder(self) -> Callable[[], Prepared] | None:
        """How to build this case's precision when a converter alone cannot (``mixed``: from its plan)."""
        if self.case.precision != "mixed":
            return None
        from energybench.layers import study

        return lambda: study.prepare_mixed(self.session, self)

    @property
    def device(self) -> Any:
        return self.session.device

    @property
    def is_causal_lm(self) -> bool:
        return self.source.task == "causal-lm"

    def shape(self, batch_size: int, prepared: Prepared | None = None) -> dict[str, int]:
        model = (prepared or self.prepared).model
        return {"batch_size": batch_size, "seq_len": min(self.settings.seq_len, max_positions(model))}

    def input_batch(self, batch_size: int, prepared: Prepared | None = None) -> dict[str, Any]:
        """A fixed-shape batch of real tokens (random ids for shape-only models)."""
        from energybench import data
        from energybench.measure import workloads

        prepared = prepared or self.prepared
        shape = self.shape(batch_size, prepared)
        tokenizer = prepared.loaded.tokenizer
        ids = None
        if tokenizer is not None:
            if self.is_causal_lm:
                texts = eval_text(prepared)[0].split("\n")
            else:
                texts = [sentence for sentence, _ in data.sst2("validation")[0]]
            ids = workloads.text_token_ids(tokenizer, texts, shape["batch_size"] * shape["seq_len"])
        return workloads.fixed_batch(ids, vocab_size=prepared.model.config.vocab_size, **shape)

    def timing_method(self, batch_size: int) -> str:
        clock = (
            "wall clock synchronized at both ends (CUDA-event times in details)"
            if self.device.type == "cuda"
            else "wall clock (perf_counter)"
        )
        shape = self.shape(batch_size)
        return (
            f"pytest-benchmark pedantic: {self.settings.rounds} rounds after {self.settings.warmup_rounds} warm-up, "
            f"batch {shape['batch_size']} x {shape['seq_len']} tokens, {clock}"
        )

    def time_forward(self, benchmark: Any, batch_size: int) -> TimingStats:
        """Time the forward pass with the pytest-benchmark fixture (its own files keep working).

        On CUDA, CUDA events time the same calls on the device; their statistics land in
        ``self.event_timing`` for the record's details.
        """
        from energybench.measure import workloads

        events: list[float] = []
        run = workloads.forward_call(self.prepared.model, self.input_batch(batch_size), self.device, events)
        benchmark.group = f"{self.case.metric} {self.case.model}"
        benchmark.extra_info.update({"precision": self.case.precision, **self.shape(batch_size)})
        benchmark.pedantic(run, rounds=self.settings.rounds, warmup_rounds=self.settings.warmup_rounds, iterations=1)
        if not benchmark.stats:
            self.skip(
                "pytest-benchmark timing is disabled (--benchmark-disable, --benchmark-skip, or pytest-xdist "
                "on CPU, where the workers share the cores)"
            )
        rounds = benchmark.stats.stats.data
        self.event_timing = cuda_event_stats(events[-len(rounds) :])
        return TimingStats.from_rounds(rounds)

    def timing_details(self) -> dict[str, Any]:
        timing = getattr(self, "event_timing", None)
        return {"cuda_events": timing} if timing else {}

    def record_latency(self, benchmark: Any) -> Record:
        timing = self.time_forward(benchmark, batch_size=1)
        method = self.timing_method(1)
        return self.record(
            timing.median_s, "s", method, timing=timing, shape=self.shape(1), details=self.timing_details()
        )

    def record_throughput(self, benchmark: Any) -> Record:
        batch_size = self.settings.batch_size
        timing = self.time_forward(benchmark, batch_size)
        shape = self.shape(batch_size)
        items, unit = (batch_size * shape["seq_len"], "tokens/s") if self.is_causal_lm else (batch_size, "samples/s")
        method = f"{items} {unit[:-2]} / median batch time; " + self.timing_method(batch_size)
        value = items / timing.median_s
        return self.record(value, unit, method, timing=timing, shape=shape, details=self.timing_details())

    def record_peak_memory(self) -> Record:
        """Peak memory of one forward pass of a fresh copy: its weights + activations above the baseline.

        A throw-away copy runs first, so one-time costs (loading the source model, kernel and
        thread-pool initialisation) fall before the baseline rather than into the figure.
        """
        from energybench.measure import workloads
        from energybench.models.precision import PrecisionUnsupported

        self.session.release_prepared()
        batch_size = self.settings.batch_size
        try:
            warm = self.session.fresh(self.case.model, self.case.precision)
            batch = self.input_batch(batch_size, warm)
            workloads.forward_call(warm.model, batch, self.device)()
            del warm
            baseline = workloads.memory_baseline(self.device)
            fresh = self.session.fresh(self.case.model, self.case.precision)
        except PrecisionUnsupported as error:
            self.skip(f"{self.case.precision} on {self.device}: {error}")
        peak = workloads.peak_memory(workloads.forward_call(fresh.model, batch, self.device), self.device, baseline)
        shape = self.shape(batch_size, fresh)
        details = {"model_tensor_bytes": workloads.tensor_bytes(fresh.model), "baseline_bytes": baseline}
        if peak.peak_bytes <= 0:
            why = f"memory did not grow above the baseline ({peak.peak_bytes} bytes): not measurable"
            return self.record(None, "bytes", peak.method, status="skipped", shape=shape, reason=why, details=details)
        return self.record(float(peak.peak_bytes), "bytes", peak.method, shape=shape, details=details)

    def record_size(self) -> Record:
        from energybench.measure.workloads import serialized_size

        size = serialized_size(self.prepared.model)
        return self.record(float(size), "bytes", "len(torch.save(model.state_dict())) in memory")

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
            **fields,
        )
        return self.session.add(record)

    def record_energy(self) -> Record:
        """Energy per item (sample, or token for GPT-2), average power and CO2, each with its method."""
        from energybench.measure import energy, workloads

        meters = self.session.meter_set
        if meters is None or meters.primary() is None:
            absent = "; ".join(f"{k}: {v}" for k, v in (meters.absent if meters else {}).items())
            self.skip(f"no power meter can run here ({absent or 'meters not opened'})")
        batch_size = self.settings.batch_size
        shape = self.shape(batch_size)
        run = workloads.forward_call(self.prepared.model, self.input_batch(batch_size), self.device)
        items, unit = (batch_size * shape["seq_len"], "token") if self.is_causal_lm else (batch_size, "sample")
        idle = self.session.idle_reading(meters.primary())
        result = energy.measure(
            run,
            meters,
            idle,
            items_per_call=items,
            configured_min_s=self.settings.energy_min_s,
            min_calls=self.settings.energy_min_calls,
        )
        details = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("readings", "idle")}
        details["readings"] = {name: dataclasses.asdict(r) for name, r in result.readings.items()}
        details["idle"] = dataclasses.asdict(result.idle) if result.idle else None
        details["gated"] = result.method != "estimated"
        details.update(truth_check(result.readings[result.primary]))
        method = (
            f"{result.method}: {result.primary} on {result.readings[result.primary].device}, "
            f"{result.window_s:.2f} s window over {result.calls} calls of {items} {unit}s; "
            f"idle baseline {self.settings.idle_s:.1f} s"
        )
        common = {
            "shape": shape,
            "details": details,
            "reason": result.reason,
            "status": "ok" if result.reason is None else "skipped",
        }
        self.record(result.avg_power_w, "W", method, metric="power", **common)
        if result.co2_per_item_g is not None or result.reason:
            co2_method = f"energy per {unit} x CodeCarbon grid intensity ({self.settings.country}); " + method
            co2_reason = result.reason
            self.record(
                result.co2_per_item_g, f"gCO2eq/{unit}", co2_method, metric="co2", **{**common, "reason": co2_reason}
            )
        budget = self.energy_budget(result.per_item_j, result.method)
        status = "budget-breach" if budget and not budget.passed else common["status"]
        record = self.record(result.per_item_j, f"J/{unit}", method, budget=budget, **{**common, "status": status})
        if budget and not budget.passed:
            pytest.fail(budget.message("energy", self.case.precision, result.per_item_j), pytrace=False)
        return record

    def energy_budget(self, per_item_j: float | None, method: str) -> Budget | None:
        """An optional "energy per item <= ratio x fp32" budget; never gated on estimated energy."""
        limit = self.settings.budget_for("energy", self.case.model, self.case.precision)
        if limit is None or per_item_j is None or self.case.precision == "fp32":
            return None
        baseline = next(
            (
                r
                for r in self.session.records
                if (r.model, r.precision, r.metric, r.status) == (self.case.model, "fp32", "energy", "ok")
            ),
            None,
        )
        if baseline is None or baseline.value is None:
            return None
        ratio = per_item_j / baseline.value
        gated = method != "estimated" and baseline.details.get("gated", False)
        return Budget(
            "fp32",
            baseline.value,
            ratio,
            limit,
            "x fp32" + ("" if gated else " (estimated: not gated)"),
            passed=(ratio <= limit) or not gated,
        )

    def record_quality(self, fail_on_budget: bool = True) -> Record:
        """Measure accuracy/perplexity, compare with the fp32 baseline, record, assert the budget
        (unless ``fail_on_budget`` is False: the test asserts the record's verdict itself)."""
        self.require_trained_weights()
        self.prepared  # noqa: B018 - skips here if the precision cannot run
        result = self.session.quality(self.case.model, self.case.precision, self.case.metric, self.prepared)
        budget = self.budget(result.value)
        status = "budget-breach" if budget and not budget.passed else "ok"
        details = {**result.details, **self.predicted_vs_measured(budget)}
        record = self.record(
            result.value, result.unit, result.method, data=result.data, details=details, budget=budget, status=status
        )
        if fail_on_budget and budget and not budget.passed:
            pytest.fail(budget.message(self.case.metric, self.case.precision, result.value), pytrace=False)
        return record

    def budget(self, value: float) -> Budget | None:
        limit = self.settings.budget_for(self.case.metric, self.case.model, self.case.precision)
        if self.case.precision == "fp32" or limit is None:
            return None
        baseline = self.session.quality(self.case.model, "fp32", self.case.metric).value
        if self.case.metric == "accuracy":
            loss, unit = (baseline - value) * 100.0, "pp"
        else:
            loss, unit = (value / baseline - 1.0) * 100.0, "%"
        return Budget("fp32", baseline, loss, limit, unit, passed=loss <= limit + 1e-9)

    def predicted_vs_measured(self, budget: Budget | None) -> dict[str, Any]:
        """For ``mixed``: the plan's predicted quality delta next to the measured one vs fp32."""
        if self.case.precision != "mixed" or budget is None:
            return {}
        plan = self.prepared.details["plan"]
        sign = -1.0 if self.case.metric == "accuracy" else 1.0  # budget.loss is a loss; deltas keep their sign
        return {
            "predicted_quality_delta": plan["predicted_quality_delta"],
            "measured_quality_delta": sign * budget.loss,
        }

    def record_layer_energy(self) -> Record:
        """Per layer type and per unit: time, share, FLOPs and apportioned energy, with the checks."""
        from energybench.layers import study
        from energybench.layers import units as layers

        self.require_trained_weights()
        try:
            table = study.layer_table(self, self.case.precision)
        except layers.LayerMappingError as error:
            self.skip(str(error))
        meter = table["meter"]
        unit = "J/token" if self.is_causal_lm else "J/sample"
        method = (
            f"apportioned: {meter['method']} window energy ({meter['name']}) x hooked time share, "
            f"{len(table['rounds_s'])} passes, {table['timer']}; not a per-layer reading"
        )
        details = {k: table[k] for k in ("per_type", "per_layer", "sum_check", "hook_overhead", "timer")}
        details["meter"] = meter
        return self.record(
            meter["energy_j_per_sample"],
            unit,
            method,
            reason=meter.get("reason"),
            timing=TimingStats.from_rounds(table["rounds_s"]),
            shape=self.shape(self.settings.batch_size),
            details=details,
        )

    def record_impact(self) -> Record:
        """Per unit: ablation KL and quality delta, int8/fp16 sensitivity, energy; correlations; plan."""
        from energybench.layers import ablation, study
        from energybench.layers import units as layers

        self.require_trained_weights()
        try:
            rows = study.impact_rows(self)
        except layers.LayerMappingError as error:
            self.skip(str(error))
        types = study.per_type(rows)
        correlation = study.correlations(rows, types)
        plan = study.mixed_plan(self) if self.device.type == "cpu" else None
        rho = correlation["per_layer"]["spearman_rho"]
        details = {
            "samples": study.evalset(self).samples,
            "impact_score": ablation.IMPACT_SCORE,
            "per_layer": rows,
            "per_type": types,
            "correlation": correlation,
            "plan": plan,
        }
        method = f"Spearman rho of per-unit {correlation['per_layer']['x']} vs impact score ({ablation.IMPACT_SCORE})"
        return self.record(rho, "rho", method, reason=correlation["per_layer"].get("reason"), details=details)


def truth_check(reading: Any) -> dict[str, Any]:
    """The primary meter's verdicts, lifted onto the record: ``unstable`` (counter and sampled power
    disagree) with its reason, ``flags`` (clocks, power limit or throttling changed in the window)."""
    check = reading.details.get("cross_check") or {}
    out: dict[str, Any] = {}
    if check:
        out["cross_check"] = check
        out["unstable"] = check["reason"] if check["verdict"] == "unstable" else None
    flags = [flag for flag in reading.details.get("flags", []) if flag != check.get("reason")]
    if flags:
        out["flags"] = flags
    return out


def cuda_event_stats(times_s: list[float]) -> dict[str, Any] | None:
    """Median, IQR and count of the CUDA-event times of the timed rounds (None off CUDA)."""
    if not times_s:
        return None
    stats = TimingStats.from_rounds(times_s)
    return {"median_s": stats.median_s, "iqr_s": stats.iqr_s, "rounds": stats.rounds}
