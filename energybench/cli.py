"""The ``energybench`` command: list runs and the model registry (compare and report come later)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_models(args: argparse.Namespace) -> int:
    from energybench.models import REGISTRY

    for spec in REGISTRY.values():
        print(f"{spec.name:<11} {spec.task:<24} hub: {spec.hub_id}  ({spec.description})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from energybench.records import SchemaError
    from energybench.store import list_runs, load_run

    runs = list_runs(args.reports_dir)
    if not runs:
        print(f"no runs under {Path(args.reports_dir) / 'runs'}")
        return 0
    for path in runs:
        try:
            run = load_run(path)
        except SchemaError as error:
            print(f"{path.name}  skipped: {error}", file=sys.stderr)
            continue
        models = ",".join(sorted(run.models)) or "-"
        print(f"{run.run_id}  {run.started_at}  {len(run.records):4d} records  models {models}  "
              f"commit {(run.commit.get('id') or '-')[:10]}")  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="energybench", description="energybench: runs, models and reports")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="the model registry").set_defaults(func=cmd_models)
    runs = sub.add_parser("list", help="saved runs, oldest first")
    runs.add_argument("--reports-dir", type=Path, default=Path("reports"), metavar="DIR", help="[reports]")
    runs.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
