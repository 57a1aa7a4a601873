"""Energy: one metered window of a case's workload (energy per item, average power, CO2), the
``--energy-budget`` verdict against the same test's fp32 figure, and the window kept for the
layer study of the same case and shape (so it apportions this window instead of metering again)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from energybench.catalog import BASELINE_PRECISION, GATED_BASES
from energybench.harness.case import Case
from energybench.measure import workloads
from energybench.measure.energy import EnergyResult, energy_details
from energybench.results.schema import Budget, Record


@dataclasses.dataclass(frozen=True)
class EnergyOutcome:
    """What one metered window gave: the energy, power and CO2 records and the energy budget's verdict."""

    result: EnergyResult
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


@dataclasses.dataclass(frozen=True)
class SharedWindow:
    """An energy test's window over the case's own fixed batch: what the layer study apportions."""

    result: EnergyResult
    method: str
    test_id: str


def record(case: Case) -> list[Record]:
    """The case's own workload: one forward pass of its fixed batch, per item."""
    shape = case.shape(case.batch_size)
    run = workloads.forward_call(case.prepared.model, case.input_batch(case.batch_size), case.device)
    outcome = measure(case, run, items=case.items(shape), item=item_name(case), shape=shape, own_batch=True)
    return [r for r in (outcome.power, outcome.co2, outcome.energy) if r is not None]


def item_name(case: Case) -> str:
    """What one item is: a token for causal LMs, a sample otherwise (energy is per item)."""
    return "token" if case.is_causal_lm else "sample"


def window_key(case: Case, shape: dict[str, int]) -> tuple:
    spec = case.spec
    return (spec.model, spec.precision, spec.backend, shape["batch_size"], shape["seq_len"])


def shared_window(case: Case, shape: dict[str, int]) -> SharedWindow | None:
    """This session's energy-test window of the case's fixed batch at ``shape``, if one was metered."""
    return case.session.energy_windows.get(window_key(case, shape))


def measure(
    case: Case,
    run: Callable[[], None],
    *,
    items: int,
    item: str = "sample",
    shape: dict[str, int] | None = None,
    own_batch: bool = False,
) -> EnergyOutcome:
    """Meter ``run`` (``items`` per call; it synchronizes the device itself) and record energy per item,
    power and CO2. ``own_batch``: ``run`` is one forward pass of the case's fixed batch of ``shape``,
    so the layer study of the same case and shape may apportion this window."""
    absent = case.session.meter_absence()
    if absent is not None:
        case.skip(f"no power meter can run here ({absent})")
    result, method = case.session.metered(run, items, f"{item}s")
    if own_batch and shape:
        case.session.energy_windows[window_key(case, shape)] = SharedWindow(result, method, case.test_id)
    common: dict[str, Any] = {"shape": shape or {}, "details": energy_details(result), "reason": result.reason}
    common.update(basis=result.method, status="ok" if result.reason is None else "skipped")
    power = case.record(result.avg_power_w, "W", method, metric="power", **common)
    co2 = None
    if result.co2_per_item_g is not None or result.reason:
        co2_method = f"energy per {item} x CodeCarbon grid intensity ({case.settings.country}); " + method
        co2 = case.record(result.co2_per_item_g, f"gCO2eq/{item}", co2_method, metric="co2", **common)
    budget = energy_budget(case, result.per_item_j, result.method)
    status = "budget-breach" if budget and not budget.passed else common["status"]
    energy = case.record(
        result.per_item_j, f"J/{item}", method, metric="energy", budget=budget, **{**common, "status": status}
    )
    return EnergyOutcome(result, energy, power, co2, budget)


def energy_budget(case: Case, per_item_j: float | None, method: str) -> Budget | None:
    """--energy-budget: energy per item <= ratio x this test's fp32 figure; never gated on estimates."""
    spec = case.spec
    limit = case.settings.budget_for("energy", spec.model, spec.precision)
    if limit is None or per_item_j is None or spec.precision == BASELINE_PRECISION:
        return None
    fp32_id = case.fp32_test_id()
    baseline = next(
        (
            r
            for r in case.session.records
            if r.test_id == fp32_id and r.metric == "energy" and r.status == "ok" and r.value is not None
        ),
        None,
    )
    if baseline is None:
        return None
    ratio = per_item_j / baseline.value
    gated = method in GATED_BASES and baseline.basis in GATED_BASES  # never on an estimate
    note = "x fp32" + ("" if gated else " (estimated: not gated)")
    return Budget(BASELINE_PRECISION, baseline.value, ratio, limit, note, passed=(ratio <= limit) or not gated)
