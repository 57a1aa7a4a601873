"""Diff the record keys of two runs: the same suite before and after a change must give the same records.

usage: python tools/record_keys.py RUN_A RUN_B

A record's key is (test id, model, precision, backend, metric, shape, energy basis, status). Prints
the keys only one run has and exits 1 if there are any; values and methods are not compared (they
are measurements, and a method line may say more than it did).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from energybench.results.store import load_run


def record_keys(run_path: Path) -> set[tuple[str, ...]]:
    run = load_run(run_path)
    return {
        (
            r.test_id,
            r.model,
            r.precision,
            r.backend,
            r.metric,
            json.dumps(r.shape, sort_keys=True),
            str(r.basis),
            r.status,
        )
        for r in run.records
    }


def diff(a: Path, b: Path) -> list[str]:
    """One line per key found in only one of the runs, ``-`` for RUN_A only, ``+`` for RUN_B only."""
    keys_a, keys_b = record_keys(a), record_keys(b)
    return [f"- {' | '.join(k)}" for k in sorted(keys_a - keys_b)] + [
        f"+ {' | '.join(k)}" for k in sorted(keys_b - keys_a)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args(argv)
    lines = diff(args.run_a, args.run_b)
    for line in lines:
        print(line)
    count = len(record_keys(args.run_a))
    print(f"{count} records in {args.run_a}, {len(lines)} key(s) differ" if lines else f"{count} record keys equal")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
