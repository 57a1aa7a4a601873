"""The public fixtures a user's own benchmark is written with, and the cases of its marker.

``@pytest.mark.energybench(models=[...], precisions=[...])`` parametrizes a test over model x
precision like the built-in suite; these objects are what its fixtures hand it: ``eb_model`` (the
converted model), ``power_meter``, ``layer_profile``, ``quality_budget`` and ``eb_record``. Each
records through the test's :class:`~energybench.harness.fixture.Bench`, so a user's numbers carry
the same provenance (source, device, method, data) as the built-in ones and land in the same run.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from energybench.catalog import ALL_PRECISIONS, GATED_BASES, METRICS, MetricTable
from energybench.harness.fixture import Bench
from energybench.harness.options import SettingsError
from energybench.harness.session import BenchSession, Case
from energybench.layers.rows import LayerTable
from energybench.measure.energy import energy_details
from energybench.models.registry import REGISTRY, ModelSourceError, resolve_path
from energybench.results.schema import Budget, Record, custom_metric

MARKER_KEYWORDS = ("models", "precisions")
LIMIT = re.compile(r"^(?P<amount>[0-9]*\.?[0-9]+)\s*(?P<unit>pp|%)$")


# -- the marker's cases ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class UserCase(Case):
    """A case of a user's own benchmark: ``metric`` is the test function's name (a failed or
    skipped test is recorded under it); the metrics it records are its own."""


def is_checkpoint_path(entry: str) -> bool:
    return entry.startswith((".", "/", "~")) or "/" in entry or "\\" in entry


def user_cases(session: BenchSession, test_name: str, marker_kwargs: dict[str, Any], rootdir: Path) -> list[UserCase]:
    """model x precision cases of ``@pytest.mark.energybench(models=..., precisions=...)``.

    What the marker names wins over --model / --precision (marker > command line > ini); what it
    leaves out comes from them. A path is a local checkpoint, checked now like --model-path.
    Raises SettingsError with the line to show."""
    unknown = sorted(set(marker_kwargs) - set(MARKER_KEYWORDS))
    if unknown:
        raise SettingsError(f"unknown marker keyword {', '.join(unknown)}; accepted: {', '.join(MARKER_KEYWORDS)}")
    models = [marker_model(session, entry, rootdir) for entry in names(marker_kwargs, "models")]
    precisions = names(marker_kwargs, "precisions")
    for precision in precisions:
        if precision not in ALL_PRECISIONS:
            raise SettingsError(f"precision {precision!r}: unknown; accepted: {', '.join(ALL_PRECISIONS)}")
    models = models or list(session.settings.models)
    precisions = precisions or list(session.settings.precisions)
    return [UserCase(model, precision, test_name) for model in models for precision in precisions]


def names(marker_kwargs: dict[str, Any], key: str) -> list[str]:
    value = marker_kwargs.get(key)
    if value is None:
        return []
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{key}= must be a list of names, e.g. {key}=[{ALL_PRECISIONS[0]!r}]; got {value!r}")
    return list(value)


def marker_model(session: BenchSession, entry: str, rootdir: Path) -> str:
    """A registered model's name, or a checkpoint folder (resolved and checked now) named by its folder."""
    if not is_checkpoint_path(entry):
        if entry not in REGISTRY:
            raise SettingsError(
                f"model {entry!r}: unknown; accepted: {', '.join(REGISTRY)} or a checkpoint folder path ('./my-model')"
            )
        return entry
    path = Path(entry).expanduser()
    path = path if path.is_absolute() else rootdir / path
    name = path.name
    known = session.sources.get(name)
    if name in REGISTRY or (known is not None and known.checkpoint != str(path.resolve())):
        where = known.checkpoint if known else "a registered model"
        raise SettingsError(f"model {entry!r}: {name!r} already names {where}; rename the folder")
    if known is None:
        try:
            session.sources[name] = resolve_path(name, path, session.settings.task)
        except ModelSourceError as error:
            raise SettingsError(str(error).replace("--model-path", "models=", 1)) from None
    return name


def fp32_test_id(test_id: str, case: Case) -> str:
    """The node id of the same test at fp32 (same model, same other parameters)."""
    base, bracket, params = test_id.partition("[")
    return base + bracket + params.replace(case.id, dataclasses.replace(case, precision="fp32").id, 1)


# -- eb_model -------------------------------------------------------------------------------
class EbModel:
    """The case's loaded, converted model: ``model``, ``tokenizer``, ``source``, ``implementation``,
    ``precision``, ``device``, and the fixed-shape inputs the built-in benchmarks use."""

    def __init__(self, bench: Bench):
        self.bench = bench

    @property
    def model(self) -> Any:
        return self.bench.prepared.model

    @property
    def tokenizer(self) -> Any:
        return self.bench.prepared.loaded.tokenizer

    @property
    def source(self) -> Any:
        return self.bench.source

    @property
    def name(self) -> str:
        return self.bench.case.model

    @property
    def precision(self) -> str:
        return self.bench.case.precision

    @property
    def implementation(self) -> str:
        return self.bench.prepared.implementation

    @property
    def device(self) -> Any:
        return self.bench.device

    @property
    def item(self) -> str:
        """What one item is: a token for causal LMs, a sample otherwise (energy is per item)."""
        return "token" if self.bench.is_causal_lm else "sample"

    def batch(self, batch_size: int | None = None) -> dict[str, Any]:
        """A fixed-shape batch of real tokens: ``batch_size`` (default: this test's) x this test's --seq-len."""
        return self.bench.input_batch(batch_size or self.bench.batch_size)

    def items_in(self, batch: dict[str, Any]) -> int:
        """Items in a batch: sequences, or tokens for causal LMs."""
        batch_size, seq_len = batch["input_ids"].shape
        return batch_size * seq_len if self.bench.is_causal_lm else batch_size

    def shape(self, batch: dict[str, Any]) -> dict[str, int]:
        batch_size, seq_len = batch["input_ids"].shape
        return {"batch_size": int(batch_size), "seq_len": int(seq_len)}

    def forward(self, batch: dict[str, Any]) -> Callable[[], None]:
        """A no-argument forward pass over ``batch`` that starts and ends with the device idle."""
        from energybench.measure import workloads  # deferred: heavy

        return workloads.forward_call(self.model, batch, self.device)


# -- budgets --------------------------------------------------------------------------------
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
    match = LIMIT.match(str(limit).strip()) if limit is not None else None
    if match is None:
        raise SettingsError(f"limit={limit!r}: give the tolerated loss as '1pp' (points) or '5%' (relative)")
    return float(match["amount"]), match["unit"]


def loss(value: float, baseline: float, higher_is_better: bool, unit: str) -> float:
    """How much worse than the baseline, positive = worse: points (x100) or percent."""
    if unit == "pp":
        return (baseline - value) * 100.0 if higher_is_better else (value - baseline) * 100.0
    change = (value / baseline - 1.0) * 100.0
    return -change if higher_is_better else change


class QualityBudget:
    """Compares a number with the same test's fp32 number of this session."""

    def __init__(self, bench: Bench, eb_model: EbModel):
        self.bench, self.eb_model = bench, eb_model

    of = staticmethod(BudgetCheck.of)

    def check(
        self, name: str, value: float | Callable[[EbModel], float], *, higher_is_better: bool, limit: str
    ) -> BudgetCheck:
        """``value`` (or ``value(eb_model)``) against this test's fp32 value, within ``limit``
        ('1pp' or '5%'). Skips, with the reason, when no fp32 value can be had."""
        amount, unit = self.usable_limit(limit)
        case, session = self.bench.case, self.bench.session
        measured = value(self.eb_model) if callable(value) else float(value)
        if case.precision == "fp32":
            session.fp32_values[(self.bench.test_id, name)] = measured
            return BudgetCheck(True, f"{name} fp32 {measured:.4f} is the baseline", None)
        baseline = self.fp32_value(name, value)
        lost = loss(measured, baseline, higher_is_better, unit)
        budget = Budget("fp32", baseline, lost, amount, unit, passed=lost <= amount + 1e-9)
        self.attach(name, budget)
        return BudgetCheck(budget.passed, budget.message(name, case.precision, measured), budget)

    def usable_limit(self, limit: str) -> tuple[float, str]:
        try:
            return parse_limit(limit)
        except SettingsError as error:
            pytest.fail(f"quality_budget.check: {error}", pytrace=False)

    def fp32_value(self, name: str, value: float | Callable[[EbModel], float]) -> float:
        fp32_id = fp32_test_id(self.bench.test_id, self.bench.case)
        known = self.bench.session.fp32_values.get((fp32_id, name))
        if known is not None:
            return known
        failed = next((r for r in self.bench.session.records if r.test_id == fp32_id and r.status != "ok"), None)
        if failed is not None:
            self.bench.skip(f"no fp32 baseline for the {name} budget: the fp32 side {failed.status} ({failed.reason})")
        if not callable(value):
            self.bench.skip(
                f"no fp32 baseline for the {name} budget: fp32 of this test was not measured in this session; "
                "select fp32 (--precision) or pass value as a callable of eb_model"
            )
        fp32_bench = Bench(self.bench.session, dataclasses.replace(self.bench.case, precision="fp32"), fp32_id)
        baseline = value(EbModel(fp32_bench))
        self.bench.session.fp32_values[(fp32_id, name)] = baseline
        return baseline

    def attach(self, name: str, budget: Budget) -> None:
        """The verdict goes onto this test's record of ``name``, where it recorded one."""
        records = self.bench.session.records
        for i, record in enumerate(records):
            if record.test_id == self.bench.test_id and record.metric == name and record.status == "ok":
                status = "ok" if budget.passed else "budget-breach"
                records[i] = dataclasses.replace(record, budget=budget, status=status)


# -- eb_record: a user's own metric ---------------------------------------------------------
class MetricRecorder:
    """``eb_record(name, value, unit=..., higher_is_better=...)``: one number of the user's own
    metric, saved in the run with its declaration so compare, the gate, history and report know it."""

    def __init__(self, bench: Bench):
        self.bench = bench

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
        if value is not None and self.bench.case.precision == "fp32":
            self.bench.session.fp32_values[(self.bench.test_id, name)] = float(value)
        status = "ok" if value is not None else "skipped"
        method = method or f"recorded by {self.bench.test_id.partition('[')[0]}"
        return self.bench.record(
            None if value is None else float(value),
            str(unit),
            method,
            metric=name,
            data=data,
            status=status,
            reason=reason,
            details=details or {},
        )

    def declare(self, name: str, unit: str | None, higher_is_better: bool | None, description: str) -> None:
        problem = declaration_problem(name, unit, higher_is_better)
        facts = {"direction": "higher" if higher_is_better else "lower", "unit": str(unit), "description": description}
        if problem is None:
            try:
                MetricTable.of(self.bench.session.custom_metrics).declare(custom_metric(name, facts))
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            pytest.fail(f"eb_record({name!r}, ...): {problem}", pytrace=False)
        self.bench.session.custom_metrics[name] = facts


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


# -- power_meter ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EnergyOutcome:
    """What one metered window gave: the energy, power and CO2 records and the energy budget's verdict."""

    result: Any  # energybench.measure.energy.EnergyResult
    energy: Record
    power: Record
    co2: Record | None
    budget: Budget | None

    @property
    def passed(self) -> bool:
        return self.budget is None or self.budget.passed

    @property
    def message(self) -> str:
        if self.budget is None:
            return f"energy {self.energy.precision}: no energy budget applies"
        return self.budget.message("energy", self.energy.precision, self.energy.value)


class PowerMeter:
    """``power_meter.measure(run, items=N)``: runs ``run`` until the window is long enough for the
    sensor and records energy per item, average power and CO2 under this test; skips, with the
    reason, when no power meter can run here."""

    def __init__(self, bench: Bench):
        self.bench = bench

    def meters(self) -> Any:
        meters = self.bench.session.meter_set
        if meters is None or meters.primary() is None:
            absent = "; ".join(f"{k}: {v}" for k, v in (meters.absent if meters else {}).items())
            self.bench.skip(f"no power meter can run here ({absent or 'meters not opened'})")
        return meters

    def measure(
        self, run: Callable[[], None], *, items: int, item: str = "sample", shape: dict[str, int] | None = None
    ) -> EnergyOutcome:
        """``run`` must synchronize the device itself (``eb_model.forward`` does); ``items`` per call."""

        self.meters()  # or skip, saying why
        settings = self.bench.settings
        result, method = self.bench.session.metered(run, items, f"{item}s")
        common = {
            "shape": shape or {},
            "details": energy_details(result),
            "reason": result.reason,
            "basis": result.method,
        }
        common["status"] = "ok" if result.reason is None else "skipped"
        power = self.bench.record(result.avg_power_w, "W", method, metric="power", **common)
        co2 = None
        if result.co2_per_item_g is not None or result.reason:
            co2_method = f"energy per {item} x CodeCarbon grid intensity ({settings.country}); " + method
            co2 = self.bench.record(result.co2_per_item_g, f"gCO2eq/{item}", co2_method, metric="co2", **common)
        budget = self.energy_budget(result.per_item_j, result.method)
        status = "budget-breach" if budget and not budget.passed else common["status"]
        record = self.bench.record(
            result.per_item_j, f"J/{item}", method, metric="energy", budget=budget, **{**common, "status": status}
        )
        return EnergyOutcome(result, record, power, co2, budget)

    def energy_budget(self, per_item_j: float | None, method: str) -> Budget | None:
        """--energy-budget: energy per item <= ratio x this test's fp32 figure; never gated on estimates."""
        case = self.bench.case
        limit = self.bench.settings.budget_for("energy", case.model, case.precision)
        if limit is None or per_item_j is None or case.precision == "fp32":
            return None
        fp32_id = fp32_test_id(self.bench.test_id, case)
        baseline = next(
            (
                r
                for r in self.bench.session.records
                if r.test_id == fp32_id and r.metric == "energy" and r.status == "ok" and r.value is not None
            ),
            None,
        )
        if baseline is None:
            return None
        ratio = per_item_j / baseline.value
        gated = method in GATED_BASES and baseline.basis in GATED_BASES  # never on an estimate
        note = "x fp32" + ("" if gated else " (estimated: not gated)")
        return Budget("fp32", baseline.value, ratio, limit, note, passed=(ratio <= limit) or not gated)


# -- layer_profile --------------------------------------------------------------------------
class LayerProfile:
    """``layer_profile(run, items=N)``: hooks on every unit of the model (layers/units.py), ``passes``
    hooked passes interleaved with plain ones, and the per-unit table: time per item, share,
    FLOPs, with the sum check and the hooks' overhead."""

    def __init__(self, bench: Bench, eb_model: EbModel):
        self.bench, self.eb_model = bench, eb_model

    def __call__(
        self, run: Callable[[], None] | None = None, *, items: int | None = None, passes: int = 5
    ) -> LayerTable:
        """The typed per-unit and per-type table (energybench.layers.rows.LayerTable) of ``run``."""
        from energybench.layers import units as layers  # deferred: heavy

        model = self.eb_model.model
        if run is None:
            batch = self.eb_model.batch()
            run, items = self.eb_model.forward(batch), self.eb_model.items_in(batch)
        if items is None:
            pytest.fail("layer_profile(run, items=N): say how many items one call of run processes", pytrace=False)
        try:
            model_units = layers.units(model)
        except layers.LayerMappingError as error:
            self.bench.skip(str(error))
        prof = layers.profile(model, run, self.bench.device, passes, model_units)
        flops, total = layers.flops_per_unit(model, run, model_units)
        table = layers.table(prof, model_units, flops, total, items, None)
        return dataclasses.replace(table, hook_overhead=layers.hook_overhead(prof, items))


def activate_user_models(session: BenchSession, models: set[str]) -> None:
    """Resolve the registered models the markers name beyond --model (after the session's own)."""
    try:
        for model in sorted(models):
            session.add_model(model)
    except ModelSourceError as error:
        raise SettingsError(str(error)) from error
