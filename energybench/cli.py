"""The ``energybench`` command: list runs, the model registry, and the report of a run."""

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


# -- report (issue 6) ---------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from energybench.report.build import ReportError, build_report

    try:
        folder = build_report(args.run, compare=args.compare, out=args.out, reports_dir=args.reports_dir)
    except ReportError as error:
        print(f"energybench report: {error}", file=sys.stderr)
        return 2
    print(f"energybench: report written to {folder / 'index.html'}")
    return 0


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="figures (PNG + SVG) and one HTML page for a saved run")
    report.add_argument("run", metavar="RUN", help="a run folder, a run id under --reports-dir, or 'latest'")
    report.add_argument("--compare", metavar="RUN", help="a baseline run to compare with (folder, id or 'latest')")
    report.add_argument("--out", type=Path, metavar="DIR", help="where to write the report [<run folder>/report]")
    report.add_argument("--reports-dir", type=Path, default=Path("reports"), metavar="DIR", help="[reports]")
    report.set_defaults(func=cmd_report)


# -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="energybench", description="energybench: runs, models and reports")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="the model registry").set_defaults(func=cmd_models)
    runs = sub.add_parser("list", help="saved runs, oldest first")
    runs.add_argument("--reports-dir", type=Path, default=Path("reports"), metavar="DIR", help="[reports]")
    runs.set_defaults(func=cmd_list)
    add_report_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
