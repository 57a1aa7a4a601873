"""The ``energybench`` command: saved runs, comparisons, baselines, history and the model registry.

Every bad input ends with one line on stderr (what was wrong, what is accepted, what to do) and
exit status 2; nothing in the history is touched. ``compare --fail-on`` exits with
``REGRESSION_EXIT_STATUS`` (6) when a gated metric regressed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

from energybench.catalog import BACKENDS, METRICS, PRECISIONS, options_reference
from energybench.cli.ab import add_ab_parser
from energybench.errors import EnergybenchError, UsageError
from energybench.models.registry import REGISTRY

BAD_INPUT = 2


def cmd_models(args: argparse.Namespace) -> int:
    for spec in REGISTRY.values():
        print(f"{spec.name:<11} {spec.task:<24} hub: {spec.hub_id}  ({spec.description})")
    return 0


def cmd_precisions(args: argparse.Namespace) -> int:
    """Every precision on every backend: where it runs (here, on this device) and what implements it."""
    import torch  # deferred: heavy

    from energybench.models.backends import implementation, probe  # deferred: heavy

    device = torch.device(args.device)
    print(f"device {device} (torch {torch.__version__}); 'runs' means it can run here, else the reason")
    for precision in PRECISIONS:
        for name in BACKENDS:
            reason = probe(name, precision, device)
            where = "runs" if reason is None else f"skipped: {reason}"
            print(f"{precision:<12} {name:<12} {where}")
            if reason is None:
                print(f"{'':<25} {implementation(name, precision)}")
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    """The options and metrics reference, generated from energybench.catalog (docs/options.md)."""
    print(options_reference(), end="")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from energybench.results.index import summaries  # deferred: heavy
    from energybench.results.store import list_baselines, runs_dir  # deferred: heavy

    runs, skipped = summaries(args.reports_dir)  # the index beside the runs, checked against every run.json
    for line in skipped:
        print(line, file=sys.stderr)
    if not runs:
        print(f"no runs under {runs_dir(args.reports_dir)}")
    for run in runs:
        models = ",".join(run["models"]) or "-"
        commit, machine = (run["commit"].get("id") or "-")[:10], run["fingerprint"] or "-"
        partial = f"  PARTIAL ({run['partial_reason']})" if run["partial"] else ""
        print(
            f"{run['run_id']}  {run['started_at']}  {run['records']:4d} records  models {models}  "
            f"commit {commit}  machine {machine}{partial}"
        )
    for path in list_baselines(args.reports_dir):
        print(f"baseline {path.stem}  {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from energybench.results.compare import (  # deferred: heavy
        REGRESSION_EXIT_STATUS,
        compare_runs,
        metrics_of,
        parse_fail_on,
        render,
    )
    from energybench.results.index import history_runs  # deferred: heavy
    from energybench.results.store import load_run, resolve_ref  # deferred: heavy

    parse_fail_on(args.fail_on, strict=False)  # a malformed limit stops before any run is read
    run_a = load_run(resolve_ref(args.run_a, args.reports_dir))
    run_b = load_run(resolve_ref(args.run_b, args.reports_dir))
    limits = parse_fail_on(args.fail_on, metrics_of(run_a, run_b))  # now the runs' own metrics are known
    if args.fail_on is not None and not limits:
        raise UsageError(f"--fail-on {args.fail_on!r} names no limit; give e.g. latency:+10%,accuracy:-0.5pp")
    series = {(r.model, r.precision, r.metric) for r in run_b.records}
    fingerprint = run_b.machine.get("fingerprint")
    history, _ = history_runs(args.reports_dir, series, fingerprint)  # the drift band: runs of the same machine
    comparison = compare_runs(run_a, run_b, limits, history)
    print(render(comparison, args.format))
    return REGRESSION_EXIT_STATUS if comparison.regressions else 0


def cmd_history(args: argparse.Namespace) -> int:
    from energybench.results.history import render_history  # deferred: heavy
    from energybench.results.index import history_points  # deferred: heavy
    from energybench.results.store import runs_dir  # deferred: heavy

    points, skipped = history_points(args.reports_dir, args.metric, args.model, args.precision)
    for line in skipped:
        print(line, file=sys.stderr)
    if not points:
        from energybench.results.store import load_runs  # deferred: heavy

        known_metric(args.metric, load_runs(args.reports_dir)[0])  # an unknown name: one line naming the known
        scope = "/".join(x for x in (args.model, args.precision) if x) or "any model"
        raise UsageError(
            f"empty history: no saved run under {runs_dir(args.reports_dir)} measured "
            f"{args.metric} for {scope}; run the suite (and check --reports-dir)"
        )
    if args.format == "json":
        print(json.dumps([asdict(p) for p in points], indent=1))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(asdict(points[0])))
        writer.writeheader()
        writer.writerows(asdict(p) for p in points)
    else:
        print(render_history(points))
    return 0


def known_metric(name: str, runs: list) -> None:
    """A built-in metric or one a saved run declared (``custom_metrics``); else one line naming them."""
    custom = sorted({m for run in runs for m in run.custom_metrics})
    built_in = built_in_metrics()
    if name in built_in or name in custom:
        return
    own = f"; custom, declared by the saved runs: {', '.join(custom)}" if custom else "; no saved run declares its own"
    raise UsageError(f"--metric {name!r}: unknown metric; built-in: {', '.join(built_in)}{own}")


def built_in_metrics() -> list[str]:
    return [m.name for m in METRICS.values() if m.comparable and not m.custom]


def cmd_baseline(args: argparse.Namespace) -> int:
    from energybench.results.store import delete_baseline, list_baselines, resolve_ref, save_baseline  # deferred: heavy

    if args.action == "list":
        for path in list_baselines(args.reports_dir):
            print(f"{path.stem}  {path}")
        return 0
    if not args.name:
        raise UsageError(f"baseline {args.action}: give a name, e.g. energybench baseline {args.action} main")
    if args.action == "delete":
        print(f"deleted baseline {args.name} ({delete_baseline(args.reports_dir, args.name)})")
        return 0
    target = save_baseline(resolve_ref(args.run, args.reports_dir), args.reports_dir, args.name)
    print(f"baseline {args.name} <- {args.run} ({target})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from energybench.results.store import import_runs  # deferred: heavy

    imported, notes = import_runs(args.sources, args.reports_dir)
    for line in notes:
        print(line, file=sys.stderr)
    for path in imported:
        print(f"imported {path}")
    return 0


# -- report ---------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from energybench.report.build import ReportError, build_report  # deferred: heavy

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


def cmd_recommend(args: argparse.Namespace) -> int:
    from energybench.results.recommend import recommend  # deferred: heavy
    from energybench.results.store import load_run, resolve_ref  # deferred: heavy

    run = load_run(resolve_ref(args.run, args.reports_dir))
    for found in recommend(run, args.objective, args.budget):
        print(found.line())
    return 0


def add_recommend_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    found = sub.add_parser(
        "recommend",
        parents=[common],
        help="per model, the measured configuration that meets every quality budget at the least energy or latency",
    )
    found.add_argument("run", nargs="?", default="latest", help="run folder, run id, 'latest' or baseline [latest]")
    found.add_argument("--objective", choices=("energy", "latency"), default="energy", help="what to minimize [energy]")
    found.add_argument("--budget", metavar="SPEC", help="override the quality budget: accuracy:1.0pp or perplexity:5%%")
    found.set_defaults(func=cmd_recommend)


# -- results where teams keep them -------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    """A saved run as Bencher JSON, PyTorch OSS benchmark records, an AI Energy Score table or CSV."""
    from energybench.results.export import export_run  # deferred: heavy
    from energybench.results.store import load_run, resolve_ref, write_file  # deferred: heavy

    run = load_run(resolve_ref(args.run, args.reports_dir))
    text, notes = export_run(run, args.format, args.estimates)
    for line in notes:
        print(f"energybench export: {line}", file=sys.stderr)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_file(args.out, text)
    print(f"energybench export: run {run.run_id} as {args.format} -> {args.out}", file=sys.stderr)
    return 0


def add_export_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from energybench.results.export import FORMATS  # deferred: heavy
    from energybench.results.export_bencher import ESTIMATES  # deferred: heavy

    export = sub.add_parser(
        "export",
        parents=[common],
        help="a run for Bencher, the PyTorch OSS benchmark database or an AI Energy Score table",
    )
    export.add_argument("run", nargs="?", default="latest", help="run folder, run id, 'latest' or baseline [latest]")
    export.add_argument("--format", required=True, choices=tuple(FORMATS), help="the store's format")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")
    export.add_argument(
        "--estimates", choices=ESTIMATES, default="omit", help="bencher: estimated energy left out or marked [omit]"
    )
    export.set_defaults(func=cmd_export)


def cmd_merge(args: argparse.Namespace) -> int:
    """Runs of one commit from several runners into one run saved under --out."""
    from energybench.results.merge import merge_runs  # deferred: heavy
    from energybench.results.store import load_run, save_run, shard_run  # deferred: heavy

    runs = [load_run(shard_run(Path(ref), args.reports_dir)) for ref in args.runs]
    merged = merge_runs(runs)
    folder = save_run(merged, args.out)
    commit = (merged.commit.get("id") or "-")[:10]
    print(
        f"energybench merge: {len(runs)} runs of commit {commit}, {len(merged.records)} records, "
        f"machine {merged.machine.get('fingerprint')} -> {folder}"
    )
    return 0


def add_merge_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    merge = sub.add_parser(
        "merge", parents=[common], help="runs of one commit from several runners (a CI matrix) into one run"
    )
    merge.add_argument("runs", nargs="+", metavar="RUN", help="run folders, run ids, or each runner's reports folder")
    merge.add_argument("--out", type=Path, required=True, metavar="DIR", help="the reports folder to save it in")
    merge.set_defaults(func=cmd_merge)


# -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from energybench.results.compare import FORMATS  # deferred: heavy

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--reports-dir",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="the history: where pytest saved runs [reports]",
    )
    parser = argparse.ArgumentParser(prog="energybench", description="energybench: runs, models and comparisons")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="the model registry").set_defaults(func=cmd_models)
    precisions = sub.add_parser("precisions", help="every precision x backend: where it runs and its implementation")
    precisions.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the device to probe [cpu]")
    precisions.set_defaults(func=cmd_precisions)
    sub.add_parser(
        "options", help="every pytest option, its ini key and default, and every metric (Markdown)"
    ).set_defaults(func=cmd_options)
    sub.add_parser("list", parents=[common], help="saved runs, oldest first, and baselines").set_defaults(func=cmd_list)
    compare = sub.add_parser("compare", parents=[common], help="deltas and verdicts between two runs (A = baseline)")
    compare.add_argument("run_a", help="run folder, run id, 'latest' or baseline name")
    compare.add_argument("run_b", help="run folder, run id, 'latest' or baseline name")
    compare.add_argument("--format", choices=FORMATS, default="table")
    compare.add_argument("--fail-on", metavar="SPEC", help="e.g. latency:+10%%,accuracy:-0.5pp (exit 6 on regression)")
    compare.set_defaults(func=cmd_compare)
    history = sub.add_parser("history", parents=[common], help="one metric over the saved runs")
    history.add_argument(
        "--metric",
        required=True,
        metavar="METRIC",
        help=f"a built-in metric ({', '.join(built_in_metrics())}) or one your saved runs declared",
    )
    history.add_argument("--model")
    history.add_argument("--precision")
    history.add_argument("--format", choices=("table", "csv", "json"), default="table")
    history.set_defaults(func=cmd_history)
    baseline = sub.add_parser("baseline", parents=[common], help="named baselines: save (promote), list, delete")
    baseline.add_argument("action", choices=("save", "list", "delete"))
    baseline.add_argument("name", nargs="?")
    baseline.add_argument("--run", default="latest", help="the run to promote with 'save' [latest]")
    baseline.set_defaults(func=cmd_baseline)
    merge = sub.add_parser("import", parents=[common], help="merge runs from other histories (e.g. CI artifacts)")
    merge.add_argument("sources", nargs="+", type=Path, help="run folders or reports folders")
    merge.set_defaults(func=cmd_import)
    add_report_parser(sub)
    add_ab_parser(sub, common)
    add_recommend_parser(sub, common)
    add_export_parser(sub, common)
    add_merge_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EnergybenchError as error:  # a bug keeps its traceback; a bad input is one line
        print(f"energybench {args.command}: error: {error}", file=sys.stderr)
        return BAD_INPUT
