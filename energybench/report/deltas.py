"""A minimal run-vs-run delta table for the report's comparison view.

Stand-in until ``energybench.compare`` provides the statistical verdicts; the comparison
figure and page only need the columns of :data:`COLUMNS`, so either source can feed them.
"""

from __future__ import annotations

import pandas as pd
from scipy.stats import mannwhitneyu

from energybench.report.tidy import LOWER_IS_BETTER

COLUMNS = ["model", "precision", "metric", "unit", "value_a", "value_b", "delta_pct", "verdict", "note"]
ALPHA = 0.01
NOISE_PCT = 2.0  # below this a change of a single (round-less) value is "unchanged"


def delta_frame(frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> pd.DataFrame:
    """Rows measured in both runs: B relative to A (A is the baseline), with a verdict."""
    keys = ["model", "precision", "metric"]
    like = ["fingerprint", "source_kind", "checkpoint", "batch_size", "seq_len", "unit"]
    a = frame_a[frame_a["value"].notna()][[*keys, "value", "rounds_s", *like]]
    b = frame_b[frame_b["value"].notna()][[*keys, "value", "rounds_s", *like]]
    both = a.merge(b, on=keys, suffixes=("_a", "_b"))
    if both.empty:
        return pd.DataFrame(columns=COLUMNS)
    both["unit"] = both["unit_a"]
    both["delta_pct"] = (both["value_b"] / both["value_a"] - 1.0) * 100.0
    verdicts = [verdict(row) for row in both.itertuples()]
    both["verdict"] = [v for v, _ in verdicts]
    both["note"] = [n for _, n in verdicts]
    return both[COLUMNS].reset_index(drop=True)


UNLIKE = {"fingerprint": "machine fingerprints", "source_kind": "model sources", "checkpoint": "checkpoints",
          "batch_size": "batch sizes", "seq_len": "sequence lengths", "unit": "units"}  # fmt: skip


def same(a: object, b: object) -> bool:
    return (pd.isna(a) and pd.isna(b)) if (pd.isna(a) or pd.isna(b)) else a == b


def verdict(row: object) -> tuple[str, str]:
    """better / worse / unchanged / inconclusive, from the raw rounds where both runs have them."""
    unlike = [name for name, label in UNLIKE.items() if not same(getattr(row, f"{name}_a"), getattr(row, f"{name}_b"))]
    if unlike:
        return "not comparable", "different " + ", ".join(UNLIKE[name] for name in unlike)
    direction = -1.0 if row.metric in LOWER_IS_BETTER else 1.0
    moved = "better" if direction * row.delta_pct > 0 else "worse"
    rounds_a, rounds_b = row.rounds_s_a, row.rounds_s_b
    if isinstance(rounds_a, tuple) and isinstance(rounds_b, tuple) and min(len(rounds_a), len(rounds_b)) >= 3:
        p = float(mannwhitneyu(rounds_a, rounds_b, alternative="two-sided").pvalue)
        if p < ALPHA:
            return moved, f"Mann-Whitney p={p:.3g} on {len(rounds_a)}+{len(rounds_b)} rounds"
        return "inconclusive", f"Mann-Whitney p={p:.3g}: within the noise, run more rounds"
    if abs(row.delta_pct) < NOISE_PCT:
        return "unchanged", f"single values, |delta| < {NOISE_PCT:g} %"
    return moved, "single values, no rounds to test against the noise"
