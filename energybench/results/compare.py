"""Align two runs, give every metric a delta in its own direction and a statistical verdict, and gate.

Verdicts (per model x precision x metric):

- ``worse`` / ``better``: the change is statistically significant (two-sided Mann-Whitney U on
  the raw rounds, p < ``ALPHA``) *and* larger than the noise band;
- ``same``: the bootstrap 95 % CI of the change lies inside the noise band, or the change is
  significant but smaller than the band;
- ``inconclusive``: neither; the row says about how many rounds would decide.

The noise band is relative to the measured noise: the larger relative IQR (IQR / median) of the
two runs' rounds, and at least ``MIN_BAND_PCT``. Metrics measured once per run (accuracy,
perplexity, size, memory, energy) have no rounds: their verdict is the plain change against the
``--fail-on`` limit (or ``SINGLE_VALUE_BAND_PCT``) and the row says so.

A row is only compared when both sides measured the same thing: same machine fingerprint, model
source and revision, precision implementation, shape, data file and device. Otherwise it reads
"not comparable: <why>". Estimated energy is shown and never gates.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from typing import Any

import numpy as np

from energybench.catalog import METRICS
from energybench.errors import UsageError
from energybench.results.schema import Record, Run

ALPHA = 0.01
MIN_BAND_PCT = 1.0
SINGLE_VALUE_BAND_PCT = 5.0
BOOTSTRAP_RESAMPLES = 999
REGRESSION_EXIT_STATUS = 6  # a session that passed its tests but regressed against --compare


def higher_is_better(metric: str) -> bool:
    """The metric's direction, from the catalog (read at call time, so a new metric needs no edit here)."""
    return metric in METRICS and METRICS[metric].higher_is_better


def deterministic(metric: str) -> bool:
    """Same model and data give the same number: compared exactly, not statistically."""
    return metric in METRICS and METRICS[metric].deterministic


VERDICTS = ("better", "worse", "same", "inconclusive", "not comparable", "not measured", "missing")


class CompareError(UsageError):
    """Bad input to a comparison: one line saying what was wrong, what is accepted, what to do."""


# -- --fail-on ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Limit:
    metric: str
    amount: float  # always positive: how much worse is tolerated
    unit: str  # "%" (relative) or "pp" (accuracy points)

    def __str__(self) -> str:
        sign = "-" if higher_is_better(self.metric) else "+"
        return f"{self.metric}:{sign}{self.amount:g}{self.unit}"


FAIL_ON_ITEM = re.compile(r"^(?P<metric>[a-z0-9-]+):(?P<sign>[+-])(?P<amount>[0-9]*\.?[0-9]+)(?P<unit>%|pp)$")


def parse_fail_on(spec: str | None, strict: bool = True) -> dict[str, Limit]:
    """``"latency:+10%,accuracy:-0.5pp"`` -> limits; the sign must point the metric's worse way.

    ``strict=False`` (before a session runs) lets a name the catalog does not know yet through:
    a user's benchmark declares its own metrics as it runs, and the strict parse at compare time,
    once the runs are loaded, checks the name and its sign."""
    limits: dict[str, Limit] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if item:
            limit = parse_limit(item, strict)
            limits[limit.metric] = limit
    return limits


def parse_limit(item: str, strict: bool = True) -> Limit:
    accepted = (
        f"metric:+N% or metric:-N% (accuracy also -Npp) with metric in {', '.join(directed_metrics())} "
        "or a custom metric your benchmarks record"
    )
    match = FAIL_ON_ITEM.match(item)
    if not match:
        raise CompareError(f"--fail-on {item!r}: not metric:<sign><number><unit>; accepted: {accepted}")
    metric, sign, unit = match["metric"], match["sign"], match["unit"]
    if metric not in directed_metrics() and not strict and unit == "%":
        return Limit(metric, float(match["amount"]), unit)
    if metric not in directed_metrics():
        raise CompareError(f"--fail-on {item!r}: unknown metric {metric!r}; accepted: {accepted}")
    worse_sign = "-" if higher_is_better(metric) else "+"
    if sign != worse_sign:
        raise CompareError(
            f"--fail-on {item!r}: {metric} gets worse in the {worse_sign} direction; "
            f"write {metric}:{worse_sign}{match['amount']}{unit}"
        )
    if unit == "pp" and metric != "accuracy":
        raise CompareError(f"--fail-on {item!r}: 'pp' (points) applies to accuracy only; use % for {metric}")
    return Limit(metric, float(match["amount"]), unit)


def directed_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in METRICS.values() if m.comparable)


# -- one row --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Row:
    model: str
    precision: str
    metric: str
    unit: str
    value_a: float | None
    value_b: float | None
    change_pct: float | None  # signed, in the metric's own direction: positive = worse
    change_pp: float | None  # accuracy only: points lost (positive = worse)
    verdict: str
    basis: str  # how the verdict was reached
    p_value: float | None = None
    ci95_pct: tuple[float, float] | None = None
    band_pct: float | None = None
    rounds_needed: int | None = None
    method_b: str = ""
    gated: bool = True
    failed: bool = False
    limit: str | None = None

    @property
    def direction(self) -> str:
        return "higher is better" if higher_is_better(self.metric) else "lower is better"


def worse_change_pct(metric: str, a: float, b: float) -> float:
    """Relative change, signed so that positive means worse for this metric."""
    change = (b / a - 1.0) * 100.0
    return -change if higher_is_better(metric) else change


def samples_of(record: Record) -> np.ndarray | None:
    """Per-round values in the record's own unit (seconds, or items/s for throughput), if it has rounds."""
    if record.timing is None or record.timing.rounds < 2 or record.value is None:
        return None
    rounds = np.asarray(record.timing.rounds_s, dtype=float)
    if record.metric == "throughput":
        return record.value * record.timing.median_s / rounds
    return rounds


def noise_band_pct(a: np.ndarray, b: np.ndarray) -> float:
    def relative_iqr(x: np.ndarray) -> float:
        q1, median, q3 = np.percentile(x, [25, 50, 75])
        return float((q3 - q1) / median * 100.0)

    return max(MIN_BAND_PCT, relative_iqr(a), relative_iqr(b))


def bootstrap_ci_pct(metric: str, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        change = (np.median(y, axis=axis) / np.median(x, axis=axis) - 1.0) * 100.0
        return -change if higher_is_better(metric) else change

    result = stats.bootstrap(
        (a, b),
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(0),
    )
    low, high = result.confidence_interval
    return float(low), float(high)


def rounds_verdict(metric: str, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """The statistical verdict for two sets of raw rounds (see the module docstring)."""
    from scipy import stats

    change = worse_change_pct(metric, float(np.median(a)), float(np.median(b)))
    band = noise_band_pct(a, b)
    p_value = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    out: dict[str, Any] = {"change_pct": change, "p_value": p_value, "band_pct": band}
    basis = f"Mann-Whitney U on {a.size} vs {b.size} rounds, p={p_value:.2g}; noise band {band:.1f} %"
    if p_value < ALPHA and abs(change) > band:
        return {**out, "verdict": "worse" if change > 0 else "better", "basis": basis}
    low, high = bootstrap_ci_pct(metric, a, b)
    out["ci95_pct"] = (low, high)
    basis += f"; bootstrap 95 % CI of the change [{low:+.1f}, {high:+.1f}] %"
    if p_value < ALPHA or (-band <= low and high <= band):
        return {**out, "verdict": "same", "basis": basis}
    needed = rounds_to_decide(min(a.size, b.size), (high - low) / 2.0, abs(abs(change) - band), band)
    basis += f"; about {needed} rounds per run would decide"
    return {**out, "verdict": "inconclusive", "basis": basis, "rounds_needed": needed}


def rounds_to_decide(rounds: int, half_width: float, gap: float, band: float) -> int:
    """Rounds at which the CI half-width (shrinking as 1/sqrt(n)) falls below the gap to the band."""
    target = max(gap, band / 4.0)
    return int(min(100_000, math.ceil(rounds * (half_width / target) ** 2 + 1)))


def single_value_verdict(metric: str, a: float, b: float, limit: Limit | None) -> dict[str, Any]:
    change = worse_change_pct(metric, a, b)
    if deterministic(metric):
        same = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        verdict = "same" if same else ("worse" if change > 0 else "better")
        return {"change_pct": change, "verdict": verdict, "basis": "single deterministic value: exact comparison"}
    band = limit.amount if limit is not None and limit.unit == "%" else SINGLE_VALUE_BAND_PCT
    verdict = "same" if abs(change) <= band else ("worse" if change > 0 else "better")
    basis = f"single value, no rounds: plain change against a {band:g} % band (add rounds for statistics)"
    return {"change_pct": change, "band_pct": band, "verdict": verdict, "basis": basis}


# -- comparability --------------------------------------------------------------------------
def run_incomparability(run_a: Run, run_b: Run) -> str | None:
    fa, fb = run_a.machine.get("fingerprint"), run_b.machine.get("fingerprint")
    if fa != fb:
        differing = [
            k
            for k in sorted(set(run_a.machine) | set(run_b.machine))
            if k not in ("fingerprint", "node") and run_a.machine.get(k) != run_b.machine.get(k)
        ]
        shown = ", ".join(f"{k} {run_a.machine.get(k)!r} vs {run_b.machine.get(k)!r}" for k in differing[:3])
        return f"different machine fingerprint {fa} vs {fb} ({shown or 'fingerprint scheme differs'})"
    return None


COMPARABLE_FIELDS = (
    ("model source", lambda r: (r.source.get("kind"), r.source.get("checkpoint"), r.source.get("revision"))),
    ("precision implementation", lambda r: r.details.get("implementation")),
    ("shape", lambda r: tuple(sorted(r.shape.items()))),
    ("data", lambda r: (r.data or {}).get("sha256")),
    ("device", lambda r: r.device),
)


def record_incomparability(a: Record, b: Record) -> str | None:
    for name, key in COMPARABLE_FIELDS:
        if key(a) != key(b):
            return f"different {name}: {key(a)} vs {key(b)}"
    return None


# -- two runs -------------------------------------------------------------------------------
@dataclasses.dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[Row]
    not_comparable: str | None = None

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.failed]

    def counts(self) -> dict[str, int]:
        return {v: n for v in VERDICTS if (n := sum(row.verdict == v for row in self.rows))}


def compare_runs(run_a: Run, run_b: Run, limits: dict[str, Limit] | None = None) -> Comparison:
    """Align ``run_a`` (baseline) and ``run_b`` (candidate) by model x precision x metric."""
    limits = limits or {}
    guard = run_incomparability(run_a, run_b)
    index_a, index_b = index(run_a.records), index(run_b.records)
    rows = [
        compare_pair(key, index_a.get(key), index_b.get(key), limits.get(key[2]), guard)
        for key in sorted(set(index_a) | set(index_b))
        if key[2] in directed_metrics()
    ]
    return Comparison(run_a.run_id, run_b.run_id, rows, guard)


def index(records: list[Record]) -> dict[tuple[str, str, str], Record]:
    return {(r.model, r.precision, r.metric): r for r in records}


def compare_pair(
    key: tuple[str, str, str], a: Record | None, b: Record | None, limit: Limit | None, guard: str | None
) -> Row:
    model, precision, metric = key
    base = {
        "model": model,
        "precision": precision,
        "metric": metric,
        "limit": str(limit) if limit else None,
        "unit": (b or a).unit,
        "value_a": a.value if a else None,
        "value_b": b.value if b else None,
        "change_pct": None,
        "change_pp": None,
        "method_b": b.method if b else "",
    }
    if a is None or b is None:
        return Row(**base, verdict="missing", basis=f"only in run {'B' if a is None else 'A'}")
    if a.value is None or b.value is None:
        why = a.reason if a.value is None else b.reason
        return Row(**base, verdict="not measured", basis=f"run {'A' if a.value is None else 'B'}: {why}")
    why_not = guard or record_incomparability(a, b)
    if why_not:
        return Row(**base, verdict="not comparable", basis=f"not comparable: {why_not}", gated=False)
    sa, sb = samples_of(a), samples_of(b)
    if sa is not None and sb is not None:
        found = rounds_verdict(metric, sa, sb)
    else:
        found = single_value_verdict(metric, a.value, b.value, limit)
    if metric == "accuracy":
        base["change_pp"] = (a.value - b.value) * 100.0
    gated = not is_estimated(a) and not is_estimated(b)
    if not gated:
        found["basis"] += "; estimated energy: shown, never gated"
    row = Row(**{**base, "change_pct": found.pop("change_pct")}, **found, gated=gated)
    return dataclasses.replace(row, failed=breaches(row, limit))


def is_estimated(record: Record) -> bool:
    return record.method.startswith("estimated") or record.details.get("gated") is False


def breaches(row: Row, limit: Limit | None) -> bool:
    """A gate failure: a gated row, judged worse, by more than the user's limit."""
    if limit is None or not row.gated or row.verdict != "worse":
        return False
    change = row.change_pp if limit.unit == "pp" else row.change_pct
    return change is not None and change > limit.amount


# -- output ---------------------------------------------------------------------------------
FORMATS = ("table", "markdown", "csv", "json")
COLUMNS = ("model", "precision", "metric", "A", "B", "change", "verdict", "basis")


def row_cells(row: Row) -> list[str]:
    change = "" if row.change_pct is None else describe_change(row.change_pct)
    if row.change_pp is not None:
        change += f" ({row.change_pp:+.2f} pp lost)"
    verdict = row.verdict.upper() + (" -> FAIL " + row.limit if row.failed else "")
    return [
        row.model,
        row.precision,
        row.metric,
        fmt_value(row.value_a, row.unit),
        fmt_value(row.value_b, row.unit),
        change,
        verdict,
        row.basis,
    ]


def describe_change(change_pct: float) -> str:
    if abs(change_pct) < 0.005:
        return "0.00 %"
    return f"{change_pct:+.2f} % worse" if change_pct > 0 else f"{-change_pct:.2f} % better"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.4g} {unit}".strip()


def header_line(comparison: Comparison) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in comparison.counts().items())
    head = f"A={comparison.run_a} (baseline)  B={comparison.run_b}  {counts}"
    if comparison.not_comparable:
        head += f"\nnot comparable: {comparison.not_comparable}"
    return head


def render(comparison: Comparison, fmt: str = "table") -> str:
    if fmt not in FORMATS:
        raise CompareError(f"--format {fmt!r}: accepted: {', '.join(FORMATS)}")
    return {"table": render_table, "markdown": render_markdown, "csv": render_csv, "json": render_json}[fmt](comparison)


def render_table(comparison: Comparison) -> str:
    cells = [list(COLUMNS)] + [row_cells(row) for row in comparison.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS) - 1)]
    lines = [header_line(comparison)]
    for line in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1])
    return "\n".join(lines)


def render_markdown(comparison: Comparison) -> str:
    lines = [
        "### energybench comparison",
        "",
        header_line(comparison).replace("\n", "  \n"),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in comparison.rows:
        cells = [c.replace("|", "\\|") for c in row_cells(row)]
        if row.failed:
            cells[6] = f"**{cells[6]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_csv(comparison: Comparison) -> str:
    buffer = io.StringIO()
    fields = ["run_a", "run_b", *Row.__dataclass_fields__]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in comparison.rows:
        writer.writerow({"run_a": comparison.run_a, "run_b": comparison.run_b, **dataclasses.asdict(row)})
    return buffer.getvalue()


def render_json(comparison: Comparison) -> str:
    return json.dumps(dataclasses.asdict(comparison), indent=1)
