"""Limits: how much worse a metric may get, as written in ``--fail-on`` and quality budgets.

One parser for the amount (``1pp``, ``5%``, ``0.5 pp``) serves the gate's ``metric:+N%`` items
and a benchmark's own ``limit=``; the metric's loss unit (catalog) says whether points apply.
"""

from __future__ import annotations

import dataclasses
import re

from energybench.catalog import LossUnit, MetricTable
from energybench.errors import UsageError

AMOUNT = r"(?P<amount>[0-9]*\.?[0-9]+)\s*(?P<unit>pp|%)"
AMOUNT_ONLY = re.compile(rf"^{AMOUNT}$")
FAIL_ON_ITEM = re.compile(rf"^(?P<metric>[a-z0-9][a-z0-9_-]*):(?P<sign>[+-]){AMOUNT}$")


class CompareError(UsageError):
    """Bad input to a comparison: one line saying what was wrong, what is accepted, what to do."""


def parse_amount(text: str) -> tuple[float, LossUnit] | None:
    """``"1pp"`` -> (1.0, "pp"), ``"5 %"`` -> (5.0, "%"); None when it is neither (the caller says why)."""
    match = AMOUNT_ONLY.match(str(text).strip())
    return None if match is None else (float(match["amount"]), match["unit"])  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class Limit:
    metric: str
    amount: float  # always positive: how much worse is tolerated
    unit: LossUnit  # "%" (relative) or "pp" (points of a fraction-valued metric)
    worse_sign: str = "+"  # the sign that points the metric's worse way, as it is written back

    def __str__(self) -> str:
        return f"{self.metric}:{self.worse_sign}{self.amount:g}{self.unit}"


def parse_fail_on(spec: str | None, metrics: MetricTable | None = None, strict: bool = True) -> dict[str, Limit]:
    """``"latency:+10%,accuracy:-0.5pp"`` -> limits; the sign must point the metric's worse way.

    ``metrics``: the table of the runs compared (the built-ins and the runs' own declarations;
    the built-ins alone by default); every name is checked against it. ``strict=False`` (before
    a session runs, before the runs are read) lets a name the table does not know through with a
    % amount: a user's benchmark declares its own metrics as it runs, and the strict parse against
    the runs' table checks the name and its sign."""
    limits: dict[str, Limit] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if item:
            limit = parse_limit(item, metrics, strict)
            limits[limit.metric] = limit
    return limits


def parse_limit(item: str, metrics: MetricTable | None = None, strict: bool = True) -> Limit:
    """One ``metric:<sign><amount><unit>`` item (see ``parse_fail_on``)."""
    table = metrics or MetricTable()
    accepted = (
        f"metric:+N% or metric:-N% (accuracy also -Npp) with metric in {', '.join(table.comparable())} "
        "or a custom metric your benchmarks record"
    )
    match = FAIL_ON_ITEM.match(item)
    if not match:
        raise CompareError(f"--fail-on {item!r}: not metric:<sign><number><unit>; accepted: {accepted}")
    name, sign, unit, amount = match["metric"], match["sign"], match["unit"], float(match["amount"])
    if name not in table.comparable() and not strict and unit == "%":
        return Limit(name, amount, unit, sign)  # checked again once the runs are read
    if name not in table.comparable():
        raise CompareError(f"--fail-on {item!r}: unknown metric {name!r}; {table.known(comparable_only=True)}")
    worse_sign = "-" if table.higher_is_better(name) else "+"
    if sign != worse_sign:
        raise CompareError(
            f"--fail-on {item!r}: {name} gets worse in the {worse_sign} direction; "
            f"write {name}:{worse_sign}{match['amount']}{unit}"
        )
    if unit == "pp" and table[name].loss_unit != "pp":
        points = [m for m in table.comparable() if table[m].loss_unit == "pp"]
        raise CompareError(f"--fail-on {item!r}: 'pp' (points) applies to {', '.join(points)} only; use % for {name}")
    return Limit(name, amount, unit, worse_sign)
