"""What the fixtures hand a benchmark: ``eb`` (the case and the built-in recorders), ``eb_model`` (the
converted model and its inputs), ``power_meter``, ``layer_profile``, ``quality_budget`` and
``eb_record`` (a user's own metric). Each records through the test's
:class:`~energybench.harness.case.Case`, so a user's numbers carry the same provenance (source,
device, method, data) as the built-in ones and land in the same run.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

import pytest

from energybench.catalog import BASELINE_PRECISION, METRICS, MetricTable, directed
from energybench.harness.case import Case
from energybench.harness.options import SettingsError
from energybench.harness.recorders import energy, footprint, generation, layers, quality, speed
from energybench.harness.recorders.energy import EnergyOutcome
from energybench.harness.session import BenchSession, CaseSpec
from energybench.layers import units
from energybench.layers.rows import LayerTable
from energybench.measure import workloads
from energybench.models.registry import ModelSource
from energybench.results.limits import parse_amount
from energybench.results.schema import Budget, Record, custom_metric


# -- eb: the built-in benchmarks' case ---------------------------------------------------------
class Eb(Case):
    """The ``eb`` fixture: one case of the built-in suite and its recorders, one call per benchmark."""

    def __init__(self, session: BenchSession, spec: CaseSpec, test_id: str):
        super().__init__(session, spec, test_id, build=layers.prepare_mixed if spec.precision == "mixed" else None)

    def record_latency(self, benchmark: Any) -> Record:
        return speed.latency(self, benchmark)

    def record_throughput(self, benchmark: Any) -> Record:
        return speed.throughput(self, benchmark)

    def record_peak_memory(self) -> Record:
        return footprint.peak_memory(self)

    def record_size(self) -> Record:
        return footprint.size(self)

    def record_quality(self, fail_on_budget: bool = True) -> Record:
        """The quality record; the behaviour records against fp32 (flips, agreement, KL, recovery) follow it."""
        return quality.record(self, fail_on_budget)[0]

    def record_generation(self) -> list[Record]:
        return generation.record(self)

    def record_layer_energy(self) -> Record:
        return layers.layer_energy(self)

    def record_impact(self) -> Record:
        return layers.impact(self)[0]


# -- eb_model ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Forward:
    """A no-argument forward pass of ``model`` over ``batch`` that starts and ends with the device idle.
    ``own_batch``: the batch is the case's fixed batch (``eb_model.batch``), as the built-in tests use."""

    run: Callable[[], None]
    model: Any
    shape: dict[str, int]
    own_batch: bool

    def __call__(self) -> None:
        self.run()


class EbModel:
    """The case's loaded, converted model: ``model``, ``tokenizer``, ``source``, ``implementation``,
    ``precision``, ``device``, and the fixed-shape inputs the built-in benchmarks use."""

    def __init__(self, case: Case):
        self.case = case
        self.batches: list[dict[str, Any]] = []  # the fixed batches handed out, so forward() knows them

    @property
    def model(self) -> Any:
        return self.case.prepared.model

    @property
    def tokenizer(self) -> Any:
        return self.case.prepared.loaded.tokenizer

    @property
    def source(self) -> ModelSource:
        return self.case.source

    @property
    def name(self) -> str:
        return self.case.spec.model

    @property
    def precision(self) -> str:
        return self.case.spec.precision

    @property
    def implementation(self) -> str:
        return self.case.prepared.implementation

    @property
    def device(self) -> Any:
        return self.case.device

    @property
    def item(self) -> str:
        """What one item is: a token for causal LMs, a sample otherwise (energy is per item)."""
        return energy.item_name(self.case)

    def batch(self, batch_size: int | None = None) -> dict[str, Any]:
        """A fixed-shape batch of real tokens: ``batch_size`` (default: this test's) x this test's --seq-len."""
        batch = self.case.input_batch(batch_size or self.case.batch_size)
        self.batches.append(batch)
        return batch

    def items_in(self, batch: dict[str, Any]) -> int:
        """Items in a batch: sequences, or tokens for causal LMs."""
        return self.case.items(self.shape(batch))

    def shape(self, batch: dict[str, Any]) -> dict[str, int]:
        batch_size, seq_len = batch["input_ids"].shape
        return {"batch_size": int(batch_size), "seq_len": int(seq_len)}

    def forward(self, batch: dict[str, Any]) -> Forward:
        """A no-argument forward pass over ``batch`` that starts and ends with the device idle."""
        run = workloads.forward_call(self.model, batch, self.device)
        own = any(batch is given for given in self.batches)
        return Forward(run, self.model, self.shape(batch), own)


# -- quality_budget ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BudgetCheck:
    """A budget's verdict: ``assert check.passed, check.message`` fails with the one-line message."""

    passed: bool
    message: str
    budget: Budget | None = None

    @classmethod
    def of(cls, record: Record) -> BudgetCheck:
        """The verdict a recorded number already carries (built-in budgets: --accuracy-budget ...)."""
        if record.budget is None:
            return cls(True, f"{record.metric} {record.precision}: no budget applies", None)
        budget = record.budget
        return cls(budget.passed, budget.message(record.metric, record.precision, record.value), budget)


def parse_limit(limit: Any) -> tuple[float, str]:
    amount = parse_amount(str(limit)) if limit is not None else None
    if amount is None:
        raise SettingsError(f"limit={limit!r}: give the tolerated loss as '1pp' (points) or '5%' (relative)")
    return amount


class QualityBudget:
    """Compares a number with the same test's fp32 number of this session."""

    def __init__(self, case: Case, eb_model: EbModel):
        self.case, self.eb_model = case, eb_model

    def of(self, record: Record) -> BudgetCheck:
        """The verdict a recorded quality number carries, with the behaviour budgets (--flips-budget,
        --kl-budget) of the same test's behaviour records: one failed budget fails the check."""
        checks = [BudgetCheck.of(record)]
        checks += [
            BudgetCheck.of(r)
            for r in self.case.session.records
            if r.test_id == record.test_id
            and r.budget is not None
            and getattr(METRICS.get(r.metric), "behaviour", False)
        ]
        failed = [c for c in checks if not c.passed]
        return (
            failed[0]
            if len(failed) == 1
            else BudgetCheck(not failed, "; ".join(c.message for c in failed) or checks[0].message, record.budget)
        )

    def check(
        self, name: str, value: float | Callable[[EbModel], float], *, higher_is_better: bool, limit: str
    ) -> BudgetCheck:
        """``value`` (or ``value(eb_model)``) against this test's fp32 value, within ``limit``
        ('1pp' or '5%'). Skips, with the reason, when no fp32 value can be had."""
        amount, unit = self.usable_limit(limit)
        case = self.case
        measured = value(self.eb_model) if callable(value) else float(value)
        if case.spec.precision == BASELINE_PRECISION:
            case.session.fp32_values[(case.test_id, name)] = measured
            return BudgetCheck(True, f"{name} fp32 {measured:.4f} is the baseline", None)
        baseline = self.fp32_value(name, value)
        lost = directed(name, higher_is_better).loss(measured, baseline, unit)
        budget = Budget(BASELINE_PRECISION, baseline, lost, amount, unit, passed=lost <= amount + 1e-9)
        self.attach(name, budget)
        return BudgetCheck(budget.passed, budget.message(name, case.spec.precision, measured), budget)

    def usable_limit(self, limit: str) -> tuple[float, str]:
        try:
            return parse_limit(limit)
        except SettingsError as error:
            pytest.fail(f"quality_budget.check: {error}", pytrace=False)

    def fp32_value(self, name: str, value: float | Callable[[EbModel], float]) -> float:
        case, session = self.case, self.case.session
        fp32_id = case.fp32_test_id()
        known = session.fp32_values.get((fp32_id, name))
        if known is not None:
            return known
        failed = next((r for r in session.records if r.test_id == fp32_id and r.status != "ok"), None)
        if failed is not None:
            case.skip(f"no fp32 baseline for the {name} budget: the fp32 side {failed.status} ({failed.reason})")
        if not callable(value):
            case.skip(
                f"no fp32 baseline for the {name} budget: fp32 of this test was not measured in this session; "
                "select fp32 (--precision) or pass value as a callable of eb_model"
            )
        fp32_case = Case(session, dataclasses.replace(case.spec, precision=BASELINE_PRECISION), fp32_id)
        baseline = value(EbModel(fp32_case))
        session.fp32_values[(fp32_id, name)] = baseline
        return baseline

    def attach(self, name: str, budget: Budget) -> None:
        """The verdict goes onto this test's record of ``name``, where it recorded one."""
        records = self.case.session.records
        for i, record in enumerate(records):
            if record.test_id == self.case.test_id and record.metric == name and record.status == "ok":
                status = "ok" if budget.passed else "budget-breach"
                records[i] = dataclasses.replace(record, budget=budget, status=status)


# -- eb_record: a user's own metric --------------------------------------------------------------
class MetricRecorder:
    """``eb_record(name, value, unit=..., higher_is_better=...)``: one number of the user's own
    metric, saved in the run with its declaration so compare, the gate, history and report know it."""

    def __init__(self, case: Case):
        self.case = case

    def __call__(
        self,
        name: str,
        value: float | None,
        *,
        unit: str | None = None,
        higher_is_better: bool | None = None,
        description: str = "",
        method: str | None = None,
        data: dict[str, str] | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Record:
        self.declare(name, unit, higher_is_better, description)
        case = self.case
        number = recorded_number(name, value, reason)
        if number is not None and case.spec.precision == BASELINE_PRECISION:
            case.session.fp32_values[(case.test_id, name)] = number
        status = "ok" if number is not None else "skipped"
        method = method or f"recorded by {case.test_id.partition('[')[0]}"
        fields = {"data": data, "status": status, "reason": reason, "details": details or {}}
        return case.record(number, str(unit), method, metric=name, **fields)

    def declare(self, name: str, unit: str | None, higher_is_better: bool | None, description: str) -> None:
        problem = declaration_problem(name, unit, higher_is_better)
        facts = {"direction": "higher" if higher_is_better else "lower", "unit": str(unit), "description": description}
        if problem is None:
            try:
                MetricTable.of(self.case.session.custom_metrics).declare(custom_metric(name, facts))
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            pytest.fail(f"eb_record({name!r}, ...): {problem}", pytrace=False)
        self.case.session.custom_metrics[name] = facts


def recorded_number(name: str, value: Any, reason: str | None) -> float | None:
    """The value as a finite float, or None with a reason; anything else fails the test with one line."""
    if value is None:
        if not reason:
            pytest.fail(f"eb_record({name!r}, None): a missing value needs reason='why it was not measured'", False)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        pytest.fail(
            f"eb_record({name!r}, {value!r}): the value is a {type(value).__name__}, not a number; record a float, "
            "or None with reason='...'",
            pytrace=False,
        )
    number = float(value)
    if not math.isfinite(number):
        pytest.fail(
            f"eb_record({name!r}, {number}): the value is not finite; record a finite number, or None with "
            "reason='why it was not measured' (a nan or inf would be compared as a measurement)",
            pytrace=False,
        )
    return number


def declaration_problem(name: str, unit: str | None, higher_is_better: bool | None) -> str | None:
    """What a custom metric's declaration lacks, as the line to show; None when it is complete."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name or ""):
        return "a metric name is lower-case letters, digits, - and _"
    if name in METRICS and not METRICS[name].custom:
        return f"{name!r} is a built-in energybench metric; give your metric another name"
    if higher_is_better is None:
        return "no direction; add higher_is_better=True or False (compare and the gate need it)"
    if not unit:
        return "no unit; add unit='...' (e.g. 'fraction', 's', 'J/sample')"
    return None


# -- power_meter ---------------------------------------------------------------------------------
class PowerMeter:
    """``power_meter.measure(run, items=N)``: runs ``run`` until the window is long enough for the
    sensor and records energy per item, average power and CO2 under this test; skips, with the
    reason, when no power meter can run here."""

    def __init__(self, case: Case):
        self.case = case

    def measure(
        self, run: Callable[[], None], *, items: int, item: str = "sample", shape: dict[str, int] | None = None
    ) -> EnergyOutcome:
        """``run`` must synchronize the device itself (``eb_model.forward`` does); ``items`` per call."""
        own = isinstance(run, Forward) and self.is_own_batch(run, items, shape)
        return energy.measure(self.case, run, items=items, item=item, shape=shape, own_batch=own)

    def is_own_batch(self, run: Forward, items: int, shape: dict[str, int] | None) -> bool:
        """``run`` is this case's model on a batch of ``eb_model.batch``, with its items and shape declared
        as they are: then the layer study of the same case and shape may apportion this window."""
        return (
            run.own_batch
            and run.model is self.case.prepared.model
            and shape == run.shape
            and items == self.case.items(run.shape)
        )


# -- layer_profile -------------------------------------------------------------------------------
class LayerProfile:
    """``layer_profile(run, items=N)``: hooks on every unit of the model (layers/units.py), ``passes``
    hooked passes interleaved with plain ones, and the per-unit table: time per item, share,
    FLOPs, with the sum check and the hooks' overhead."""

    def __init__(self, case: Case, eb_model: EbModel):
        self.case, self.eb_model = case, eb_model

    def __call__(
        self, run: Callable[[], None] | None = None, *, items: int | None = None, passes: int = 5
    ) -> LayerTable:
        """The typed per-unit and per-type table (energybench.layers.rows.LayerTable) of ``run``."""
        model = self.eb_model.model
        if run is None:
            batch = self.eb_model.batch()
            run, items = self.eb_model.forward(batch), self.eb_model.items_in(batch)
        if items is None:
            pytest.fail("layer_profile(run, items=N): say how many items one call of run processes", pytrace=False)
        try:
            model_units = units.units(model)
        except units.LayerMappingError as error:
            self.case.skip(str(error))
        prof = units.profile(model, run, self.case.device, passes, model_units)
        flops, total = units.flops_per_unit(model, run, model_units)
        table = units.table(prof, model_units, flops, total, items, None)
        return dataclasses.replace(table, hook_overhead=units.hook_overhead(prof, items))
