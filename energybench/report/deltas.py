"""The report's comparison table: ``energybench.results.compare`` verdicts as a DataFrame for the figure and page.

``delta_pct`` is the plain change (B / A - 1) in %; the verdict (from compare: Mann-Whitney on
the raw rounds and a noise band, the comparability guard, never gating on estimates) accounts
for each metric's direction, and ``note`` says how it was reached.
"""

from __future__ import annotations

import pandas as pd

from energybench.results.compare import compare_runs
from energybench.results.schema import Run

COLUMNS = ["model", "precision", "metric", "unit", "value_a", "value_b", "delta_pct", "verdict", "note"]


def delta_frame(run_a: Run, run_b: Run) -> pd.DataFrame:
    """Every number of both runs: B relative to A (A is the baseline), with compare's verdict."""
    rows = [
        {
            "model": row.model,
            "precision": row.precision,
            "metric": row.metric,
            "unit": row.unit,
            "value_a": row.value_a,
            "value_b": row.value_b,
            "delta_pct": plain_change(row.value_a, row.value_b),
            "verdict": row.verdict,
            "note": row.basis,
        }
        for row in compare_runs(run_a, run_b).rows
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def plain_change(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else (b / a - 1.0) * 100.0
