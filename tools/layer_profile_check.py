"""Check: the layer study's cost and the profiler's honesty on one model (targets: the layer-energy +
impact tests <= 60 s on the embedded DistilBERT, hook overhead <= 10 % at batch 32, sum within +-10 %).

    python tools/layer_profile_check.py [--model distilbert] [--precision fp32] [--meters auto] [extra pytest args]

Runs ``pytest benchmarks --metric layer-energy,impact`` the way a user does, times it, and prints
the figures from the saved run: wall time, sum check, hook overhead, energy shares per layer type,
correlations and the mixed plan (with the measured ``mixed`` accuracy when --precision has mixed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from energybench.layers.rows import ImpactStudy, LayerTable

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="distilbert")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--meters", default="auto")
    parser.add_argument("--metric", default="layer-energy,impact")
    args, extra = parser.parse_known_args()
    reports = Path(tempfile.mkdtemp(prefix="layer-check-"))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks",
        "-q",
        "-p",
        "no:cacheprovider",
        "--model",
        args.model,
        "--precision",
        args.precision,
        "--metric",
        args.metric,
        "--meters",
        args.meters,
        "--reports-dir",
        str(reports),
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    print(" ".join(command[1:]), f"\nexit {done.returncode}, wall {wall:.1f} s")
    runs = sorted((reports / "runs").glob("*/run.json"))
    if done.returncode or not runs:
        print(done.stdout[-3000:], done.stderr[-2000:])
        sys.exit(1)
    for record in json.loads(runs[-1].read_text())["records"]:
        show(record)


def show(record: dict) -> None:
    d, head = record["details"], f"{record['model']} {record['precision']} {record['metric']}:"
    if record["metric"] == "layer-energy":
        table = LayerTable.from_dict(d)
        check, over = table.sum_check, table.hook_overhead
        print(
            head,
            f"value {record['value']} {record['unit']} ({table.meter.basis}); sum ratio "
            f"{check.ratio:.3f} within10 {check.within_10pct}; hook overhead {over.overhead_pct:+.1f} % "
            f"at batch {over.batch_size}",
        )
        print("   shares:", ", ".join(f"{t.layer_type} {t.share:.1%}" for t in table.per_type))
    elif record["metric"] == "impact":
        study = ImpactStudy.from_dict(d)
        for level, c in study.correlation.items():
            print(
                head,
                level,
                f"n={c.n} pearson {c.pearson_r} (p {c.pearson_p}, CI {c.pearson_ci95_lo}..{c.pearson_ci95_hi}) "
                f"spearman {c.spearman_rho} (p {c.spearman_p}, CI {c.spearman_ci95_lo}..{c.spearman_ci95_hi})",
            )
        print("   plan:", json.dumps(d["plan"]))
    elif "predicted_quality_delta" in d:
        print(
            head,
            f"{record['value']:.4f}; predicted delta {d['predicted_quality_delta']:+.3f}, "
            f"measured delta {d['measured_quality_delta']:+.3f}",
        )
    elif record["value"] is not None:
        print(head, f"{record['value']:.6g} {record['unit']}", d.get("plan", {}).get("quantize", ""))


if __name__ == "__main__":
    main()
