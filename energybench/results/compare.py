"""Align two runs, give every metric a delta in its own direction and a statistical verdict, and gate.

Verdicts (per model x precision x metric):

- ``worse`` / ``better``: the change is statistically significant (p < ``ALPHA``) *and* larger
  than the noise band;
- ``same``: the 95 % CI of the change lies inside the noise band, or the change is significant
  but smaller than the band;
- ``inconclusive``: neither; the row says about how many blocks (or rounds) would decide.

Timed metrics measured in blocks (``--blocks`` >= 2 on both sides) are tested on the block
medians, not the pooled rounds: Welch's t on their logarithms, whose CI is the CI of the ratio
(Kalibera & Jones), so the drift between the minutes of a session counts as noise. The band
is then ``BETWEEN_BLOCKS_K`` x the larger between-block CV. Runs with one block fall back to a
Mann-Whitney U on the raw rounds, with the larger relative IQR of the rounds as the band
("within-run"). Either band is at least ``MIN_BAND_PCT``.

Drift between runs: when ``history`` (the saved runs) holds at least ``HISTORY_MIN_RUNS``
earlier runs of the same machine fingerprint that measured a comparable record, the band
widens to ``HISTORY_K`` x their run-to-run CV (the last ``HISTORY_LOOKBACK`` runs, as
Conbench's lookback z-score). Each row names the band it used.

Metrics measured once per run (accuracy, perplexity, size, memory, energy) have no rounds: their
verdict is the plain change against the ``--fail-on`` limit (or ``SINGLE_VALUE_BAND_PCT``, or
the history band if wider) and the row says so.

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
from energybench.layers import flatten
from energybench.results.schema import Record, Run, shape_label, swept_metrics

ALPHA = 0.01
MIN_BAND_PCT = 1.0
SINGLE_VALUE_BAND_PCT = 5.0
BOOTSTRAP_RESAMPLES = 999
BETWEEN_BLOCKS_K = 2.0
HISTORY_LOOKBACK = 10
HISTORY_MIN_RUNS = 3
HISTORY_K = 3.0
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
    band: str | None = None  # which band: within-run, between blocks, history of N runs, A/B pairs
    method_b: str = ""
    gated: bool = True
    failed: bool = False
    limit: str | None = None
    shape: str = ""  # the shape of a swept metric (``b8x128``); "" where the runs measured one shape

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


@dataclasses.dataclass(frozen=True)
class Band:
    """A noise band in %, and where it came from (shown on the row)."""

    pct: float
    source: str

    def widest(self, other: Band | None) -> Band:
        return other if other is not None and other.pct > self.pct else self


def noise_band_pct(a: np.ndarray, b: np.ndarray) -> float:
    def relative_iqr(x: np.ndarray) -> float:
        q1, median, q3 = np.percentile(x, [25, 50, 75])
        return float((q3 - q1) / median * 100.0)

    return max(MIN_BAND_PCT, relative_iqr(a), relative_iqr(b))


def bootstrap_ci_pct(metric: str, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy import stats  # deferred: heavy

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


def rounds_verdict(metric: str, a: np.ndarray, b: np.ndarray, drift: Band | None = None) -> dict[str, Any]:
    """The statistical verdict for two sets of raw rounds (see the module docstring)."""
    from scipy import stats  # deferred: heavy

    change = worse_change_pct(metric, float(np.median(a)), float(np.median(b)))
    chosen = Band(noise_band_pct(a, b), "within-run").widest(drift)
    band = chosen.pct
    p_value = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    out: dict[str, Any] = {"change_pct": change, "p_value": p_value, "band_pct": band, "band": chosen.source}
    basis = f"Mann-Whitney U on {a.size} vs {b.size} rounds, p={p_value:.2g}; noise band {band:.1f} % ({chosen.source})"
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


def block_values(record: Record) -> np.ndarray | None:
    """Each block's median in the record's own unit, if the record was timed in 2 or more blocks."""
    if record.timing is None or record.value is None or len(record.timing.blocks_s) < 2:
        return None
    medians = np.asarray(record.timing.block_medians_s, dtype=float)
    if record.metric == "throughput":
        return record.value * record.timing.median_s / medians
    return medians


def between_blocks_band(a: np.ndarray, b: np.ndarray) -> Band:
    def cv(x: np.ndarray) -> float:
        return float(np.std(x, ddof=1) / np.mean(x))

    return Band(max(MIN_BAND_PCT, BETWEEN_BLOCKS_K * 100.0 * max(cv(a), cv(b))), "between blocks")


def blocks_verdict(metric: str, a: np.ndarray, b: np.ndarray, drift: Band | None = None) -> dict[str, Any]:
    """Welch's t on the log block medians: the p-value and the 95 % CI of the ratio B/A."""
    from scipy import stats  # deferred: heavy

    log_a, log_b = np.log(a), np.log(b)
    test = stats.ttest_ind(log_b, log_a, equal_var=False)
    low_log, high_log = test.confidence_interval(0.95)
    diff = float(log_b.mean() - log_a.mean())
    change = worse_change_pct(metric, 1.0, math.exp(diff))
    low, high = sorted(worse_change_pct(metric, 1.0, math.exp(x)) for x in (low_log, high_log))
    p_value = float(test.pvalue) if math.isfinite(test.pvalue) else 1.0
    chosen = between_blocks_band(a, b).widest(drift)
    band = chosen.pct
    basis = (
        f"Welch t on {a.size} vs {b.size} block medians, p={p_value:.2g}; 95 % CI of the change "
        f"[{low:+.1f}, {high:+.1f}] %; noise band {band:.1f} % ({chosen.source})"
    )
    out = {"change_pct": change, "p_value": p_value, "band_pct": band, "band": chosen.source, "ci95_pct": (low, high)}
    if p_value < ALPHA and abs(change) > band:
        return {**out, "verdict": "worse" if change > 0 else "better", "basis": basis}
    if p_value < ALPHA or (-band <= low and high <= band):
        return {**out, "verdict": "same", "basis": basis}
    needed = rounds_to_decide(min(a.size, b.size), (high - low) / 2.0, abs(abs(change) - band), band)
    basis += f"; about {needed} blocks per run would decide"
    return {**out, "verdict": "inconclusive", "basis": basis, "rounds_needed": needed}


def rounds_to_decide(rounds: int, half_width: float, gap: float, band: float) -> int:
    """Rounds at which the CI half-width (shrinking as 1/sqrt(n)) falls below the gap to the band."""
    target = max(gap, band / 4.0)
    return int(min(100_000, math.ceil(rounds * (half_width / target) ** 2 + 1)))


def single_value_verdict(
    metric: str, a: float, b: float, limit: Limit | None, drift: Band | None = None
) -> dict[str, Any]:
    change = worse_change_pct(metric, a, b)
    if deterministic(metric):
        same = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        verdict = "same" if same else ("worse" if change > 0 else "better")
        return {"change_pct": change, "verdict": verdict, "basis": "single deterministic value: exact comparison"}
    fixed = limit.amount if limit is not None and limit.unit == "%" else SINGLE_VALUE_BAND_PCT
    chosen = Band(fixed, "--fail-on limit" if limit is not None and limit.unit == "%" else "fixed").widest(drift)
    band = chosen.pct
    verdict = "same" if abs(change) <= band else ("worse" if change > 0 else "better")
    basis = (
        f"single value, no rounds: plain change against a {band:g} % band ({chosen.source}; add rounds for statistics)"
    )
    return {"change_pct": change, "band_pct": band, "band": chosen.source, "verdict": verdict, "basis": basis}


# -- drift between runs ---------------------------------------------------------------------
def history_band(b: Record, fingerprint: Any, history: list[Run], exclude: str) -> Band | None:
    """``HISTORY_K`` x the run-to-run CV of this record over the last runs of the same machine."""
    values = [
        record.value
        for run in sorted(history, key=lambda r: r.started_at)
        if run.run_id != exclude and run.machine.get("fingerprint") == fingerprint
        for record in run.records
        if (record.model, record.precision, record.metric) == (b.model, b.precision, b.metric)
        and record.value is not None
        and record.status == "ok"
        and record_incomparability(record, b) is None
    ][-HISTORY_LOOKBACK:]
    if len(values) < HISTORY_MIN_RUNS:
        return None
    cv = float(np.std(values, ddof=1) / np.mean(values))
    return Band(HISTORY_K * 100.0 * cv, f"history of {len(values)} runs, run-to-run CV {100.0 * cv:.1f} %")


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
    ("backend", lambda r: r.backend),
    ("precision implementation", lambda r: r.details.get("implementation")),
    ("shape", lambda r: tuple(sorted(r.shape.items()))),
    ("data", lambda r: (r.data or {}).get("sha256")),
    ("device", lambda r: r.device),
    (
        "perplexity protocol (protocol, context, stride)",
        lambda r: (
            r.metric == "perplexity"
            and (r.details.get("protocol", "strided"), r.details.get("context"), r.details.get("stride"))
        ),
    ),
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


def compare_runs(
    run_a: Run, run_b: Run, limits: dict[str, Limit] | None = None, history: list[Run] | None = None
) -> Comparison:
    """Align ``run_a`` (baseline) and ``run_b`` (candidate) by model x precision x metric.

    ``history``: saved runs whose run-to-run spread may widen the band (see the module docstring).
    """
    limits = limits or {}
    guard = run_incomparability(run_a, run_b)
    swept = swept_metrics([run_a.records, run_b.records])
    index_a, index_b = index(run_a.records, swept), index(run_b.records, swept)
    fingerprint = run_b.machine.get("fingerprint")
    rows = []
    for key in sorted(set(index_a) | set(index_b)):
        if key[2] not in directed_metrics():
            continue
        b = index_b.get(key)
        drift = history_band(b, fingerprint, history or [], run_b.run_id) if b and b.value is not None else None
        rows.append(compare_pair(key, index_a.get(key), b, limits.get(key[2]), guard, drift))
    return Comparison(run_a.run_id, run_b.run_id, rows, guard)


Key = tuple[str, str, str, str]  # model, precision as run by its backend, metric, shape label ("" unswept)


def index(records: list[Record], swept: set[tuple[str, str, str]] | None = None) -> dict[Key, Record]:
    """Records by (model, precision as run by its backend, metric, shape): backends are never aligned
    together; shapes only where a run swept them (otherwise unlike shapes are refused as before)."""
    out = {}
    for r in records:
        triple = r.series
        out[(*triple, shape_label(r.shape) if triple in (swept or set()) else "")] = r
    return out


def compare_pair(
    key: Key,
    a: Record | None,
    b: Record | None,
    limit: Limit | None,
    guard: str | None,
    drift: Band | None = None,
) -> Row:
    model, precision, metric, shape = key
    base = {
        "model": model,
        "precision": precision,
        "metric": metric,
        "shape": shape,
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
    found = verdict_of(metric, a, b, limit, drift)
    if metric == "accuracy":
        base["change_pp"] = (a.value - b.value) * 100.0
    gated = flatten.gated(a) and flatten.gated(b)  # never on an estimate, nor on a share of one
    if not gated:
        found["basis"] += "; estimated energy: shown, never gated"
    row = Row(**{**base, "change_pct": found.pop("change_pct")}, **found, gated=gated)
    return dataclasses.replace(row, failed=breaches(row, limit))


def verdict_of(metric: str, a: Record, b: Record, limit: Limit | None, drift: Band | None) -> dict[str, Any]:
    """Block medians when both sides have blocks, else the raw rounds, else the single values."""
    blocks_a, blocks_b = block_values(a), block_values(b)
    if blocks_a is not None and blocks_b is not None:
        return blocks_verdict(metric, blocks_a, blocks_b, drift)
    sa, sb = samples_of(a), samples_of(b)
    if sa is not None and sb is not None:
        return rounds_verdict(metric, sa, sb, drift)
    return single_value_verdict(metric, a.value, b.value, limit, drift)


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
        f"{row.metric} {row.shape}" if row.shape else row.metric,
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
