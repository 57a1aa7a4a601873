"""pytest glue only: options and ini twins, the ``energybench`` marker, parametrization, header and summary
(the fixtures live in ``energybench.harness.fixtures``, registered here).

Nothing heavy is imported at module level, so ``pytest --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import pytest

from energybench.catalog import ALL_PRECISIONS, BASELINE_PRECISION, METERED_METRICS, OPTIONS, Option
from energybench.catalog import SELECTABLE_METRICS as METRICS
from energybench.harness import fixtures
from energybench.harness import xdist as scaleout
from energybench.harness.fixtures import SESSION_KEY, bench_session
from energybench.harness.options import Settings, SettingsError, parse
from energybench.progress import TerminalProgress

if TYPE_CHECKING:  # heavy (torch): imported where used
    from energybench.harness.session import CaseSpec

GPUS_KEY = pytest.StashKey[list]()
COLLECTION_ERRORS_KEY = pytest.StashKey[int]()
MARKER_ERRORS_KEY = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("energybench", "energybench: precision x metric benchmarks of transformers")
    for option in OPTIONS:
        text = option.help_text().replace("%", "%%")  # argparse formats help with %
        if option.kind == "flag":
            group.addoption(f"--{option.name}", dest=option.ini, action="store_true", default=False, help=text)
            parser.addini(option.ini, f"default for --{option.name} (true/false)", type="bool", default=False)
        else:
            group.addoption(f"--{option.name}", dest=option.ini, metavar=option.metavar, default=None, help=text)
            parser.addini(option.ini, f"default for --{option.name}", default=None)


def raw_options(config: pytest.Config) -> dict[str, Any]:
    """Each option's value as given: command line over ini; None where neither says."""
    return {o.dest: option_value(config, o) for o in OPTIONS}


def option_value(config: pytest.Config, option: Option) -> Any:
    value = config.getoption(option.ini) or config.getini(option.ini)
    return bool(value) if option.kind == "flag" else value or None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(fixtures, "energybench-fixtures")
    config.addinivalue_line(
        "markers",
        "energybench(metric) or energybench(models=[...], precisions=[...]): a built-in benchmark of one "
        "metric, or your own benchmark over model x precision",
    )

    try:
        settings = parse(raw_options(config), config.rootpath)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    try:
        configure_scaleout(config, settings)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    from energybench.harness.session import BenchSession  # deferred: heavy

    config.stash[SESSION_KEY] = BenchSession(settings, config.rootpath, progress=progress_printer(config))


def xdist_worker_count(config: pytest.Config) -> int:
    if hasattr(config, "workerinput"):
        return int(config.workerinput.get("workercount", 1))
    if config.getoption("dist", "no") == "no":
        return 0
    return int(config.getoption("numprocesses", 0) or 0)


def configure_scaleout(config: pytest.Config, settings: Settings) -> None:
    """pytest-xdist: check the worker count on the controller, pin each worker to its own GPU."""
    count = xdist_worker_count(config)
    if count == 0:
        return

    if hasattr(config, "workerinput"):
        gpus = config.workerinput.get("energybench_gpus", [])
        if scaleout.pin_worker(config.workerinput["workerid"], count, gpus) is not None:
            # pytest-benchmark turns itself off under xdist because workers share the CPU; a worker
            # pinned to its own GPU shares nothing, so its timings stay on (and in its own files).
            config._benchmarksession.disabled = False
        return
    gpus = scaleout.visible_gpus(os.environ, scaleout.count_gpus_without_cuda_init)
    if settings.device != "cpu" and gpus:
        scaleout.gpu_for_worker("gw0", count, gpus)
    scaleout.check_cpu_energy(count, settings.metrics, gpus, settings.device)
    scaleout.check_blocks(count, settings.blocks, settings.metrics)
    config.stash[GPUS_KEY] = gpus


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: hand every worker the node's GPU list (the controller never touches CUDA)."""
    node.workerinput["energybench_gpus"] = node.config.stash.get(GPUS_KEY, [])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect a finished worker's records into the one run this session saves."""
    output = getattr(node, "workeroutput", {}).get("energybench")
    if output:
        bench_session(node.config).merge_worker(output)


def progress_printer(config: pytest.Config) -> TerminalProgress:
    """Lines (always) and bars (in a terminal, not in CI) that reach the terminal mid-test."""

    def write(message: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"energybench: {message}")

    def uncaptured() -> AbstractContextManager[object]:
        capture = config.pluginmanager.get_plugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()

    return TerminalProgress(write, uncaptured)


def metric_of(definition: Any) -> str | None:
    marker = definition.get_closest_marker("energybench")
    return marker.args[0] if marker and marker.args else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "eb_case" not in metafunc.fixturenames:
        return
    definition = metafunc.definition
    marker = definition.get_closest_marker("energybench")
    session = bench_session(metafunc.config)
    if marker is not None and not marker.args:  # a user's own benchmark: models=[...], precisions=[...]
        from energybench.harness.marker import user_cases  # deferred: heavy

        try:
            cases = user_cases(session, definition.originalname, marker.kwargs, metafunc.config.rootpath)
        except SettingsError as error:
            return marker_error(metafunc.config, f"{definition.nodeid}: @pytest.mark.energybench: {error}")
    else:
        metric = metric_of(definition)
        if metric not in METRICS:
            return marker_error(
                metafunc.config,
                f"{definition.nodeid}: mark it @pytest.mark.energybench(<metric>) with a metric in "
                f"{', '.join(METRICS)}, or @pytest.mark.energybench(models=[...], precisions=[...]) for your own",
            )
        cases = session.cases(metric)
    metafunc.parametrize("eb_case", cases, ids=[c.id for c in cases])


def marker_error(config: pytest.Config, line: str) -> None:
    """Kept until collection ends, then one usage error (a line per test), before anything runs."""
    config.stash.setdefault(MARKER_ERRORS_KEY, []).append(line)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    bench = bench_session(config)
    selected, deselected = [], []
    for item in items:
        case = case_of(item)
        if metric_of(item) is None and case is None:
            selected.append(item)
        elif case is not None and (is_user_case(case) or case.metric in bench.settings.metrics):
            selected.append(item)
        else:
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    # fp32 first (the baseline budgets compare with), mixed last (its plan needs the study)
    given = [*bench.settings.precisions, *ALL_PRECISIONS]
    order = {p: (p != BASELINE_PRECISION, p == "mixed", given.index(p)) for p in ALL_PRECISIONS}
    metric_order = {m: i for i, m in enumerate(METRICS)}
    backends = {b: i for i, b in enumerate(bench.settings.backends)}

    def key(item: pytest.Item) -> tuple:
        case = case_of(item)  # group by model and precision so each model is converted once
        if case is None:
            return (0, 0, "", 0, 0, 0)
        # timed metrics run in --blocks passes over the selection: block k of every timing test, then block k+1
        block = getattr(case, "block", 1)
        metric_rank = metric_order.get(case.metric, len(METRICS))
        return (1, block, case.model, backends[case.backend], order[case.precision], metric_rank)

    items[:] = sorted(selected, key=key)


def is_user_case(case: Any) -> bool:
    from energybench.harness.marker import UserCase  # deferred: heavy

    return isinstance(case, UserCase)


def case_of(item: pytest.Item) -> CaseSpec | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("eb_case") if callspec else None
    return case if hasattr(case, "metric") else None  # an empty parameter set gives NOTSET


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter prints the collection header
def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[COLLECTION_ERRORS_KEY] = session.testsfailed  # only collection has failed so far
    marker_errors = session.config.stash.get(MARKER_ERRORS_KEY, [])
    if marker_errors:
        raise pytest.UsageError("\n".join(marker_errors))
    cases = [case_of(item) for item in session.items]
    if any(cases):
        metered = any(c and c.metric in METERED_METRICS for c in cases)
        metered = metered or any("power_meter" in getattr(item, "fixturenames", ()) for item in session.items)
        bench = bench_session(session.config)
        try:
            bench.activate(with_energy=metered)
            bench.check_generation([c for c in cases if c is not None])
            if any(c is not None and is_user_case(c) for c in cases):
                from energybench.harness.marker import activate_user_models  # deferred: heavy

                activate_user_models(bench, {c.model for c in cases if c is not None and c.model not in bench.sources})
        except SettingsError as error:
            raise pytest.UsageError(str(error)) from None


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    bench = bench_session(config)
    if not bench.sources:
        return []
    lines = [f"energybench: device {bench.device}, runs saved to {bench.settings.reports_dir}"]
    lines += [f"energybench: {source.describe()}" for source in bench.sources.values()]
    if bench.meter_set is not None:
        lines += [f"energybench: meter {m.name} on {m.device}" for m in bench.meter_set.meters]
        lines += [f"energybench: meter {name} absent: {why}" for name, why in bench.meter_set.absent.items()]
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    case = case_of(item)
    bench = bench_session(item.config)
    if case is None or item.nodeid in bench.recorded_tests or report.passed:
        return report
    if report.skipped or report.failed:
        from energybench.results.schema import Record  # deferred: heavy

        status = "skipped" if report.skipped else "error"
        reason = skip_reason(report) if report.skipped else failure_line(call)
        source = bench.sources[case.model].to_dict() if case.model in bench.sources else {}
        record = Record(
            model=case.model,
            precision=case.precision,
            metric=case.metric,
            value=None,
            unit="",
            status=status,
            reason=reason,
            device=str(bench.device),
            test_id=item.nodeid,
            source=source,
            backend=case.backend,
            shape=case.shape,
        )
        bench.add(record)
    return report


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)


def failure_line(call: pytest.CallInfo) -> str:
    if call.excinfo is None:
        return "failed"
    message = str(call.excinfo.value).strip()
    return f"{call.excinfo.typename}: {message.splitlines()[0] if message else ''}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    bench = session.config.stash.get(SESSION_KEY, None)
    if bench is None:
        return
    bench.close()
    config = session.config
    if hasattr(config, "workerinput"):
        config.workeroutput["energybench"] = bench.worker_output(config.workerinput["workerid"])
        return
    bench.finish(partial_reason(session, bench))
    bench.write_report()
    if bench.gate_error is not None:
        bench.notes.append(f"gate not applied: {bench.gate_error}")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    elif bench.comparison is not None and bench.comparison.regressions and session.exitstatus == 0:
        from energybench.results.compare import REGRESSION_EXIT_STATUS  # deferred: heavy

        session.exitstatus = REGRESSION_EXIT_STATUS


def partial_reason(session: pytest.Session, bench: Any) -> str | None:
    """Why this session's run is not the whole suite, or None when it ran to its end."""
    if session.exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop:
        return f"interrupted: {session.shouldstop}" if isinstance(session.shouldstop, str) else "interrupted"
    if session.shouldfail:
        return f"stopped early: {session.shouldfail}" if isinstance(session.shouldfail, str) else "stopped early"
    if session.config.stash.get(COLLECTION_ERRORS_KEY, 0):
        return f"{session.config.stash[COLLECTION_ERRORS_KEY]} error(s) during collection"
    return None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    bench = config.stash.get(SESSION_KEY, None)
    if bench is None or not bench.records:
        return
    from energybench.results.summary import summary_table  # deferred: heavy

    terminalreporter.section("energybench summary")
    for line in summary_table(bench.records):
        terminalreporter.write_line(line)
    if bench.saved_path:
        terminalreporter.write_line(f"energybench: run saved to {bench.saved_path}")
    if bench.baseline_path:
        name = bench.settings.save_baseline
        terminalreporter.write_line(f"energybench: baseline {name} saved to {bench.baseline_path}")
    for note in bench.notes:
        terminalreporter.write_line(f"energybench: {note}", yellow=True)
    if bench.comparison is not None:
        write_comparison(terminalreporter, bench.comparison, bench.settings.compare)
    if bench.report_note:
        terminalreporter.write_line(f"energybench: {bench.report_note}")


def write_comparison(terminalreporter: Any, comparison: Any, reference: str) -> None:
    from energybench.results.compare import REGRESSION_EXIT_STATUS, render  # deferred: heavy

    terminalreporter.section(f"energybench comparison with {reference}")
    for line in render(comparison, "table").splitlines():
        terminalreporter.write_line(line)
    for row in comparison.regressions:
        change = f"{row.change_pp:.2f} pp lost" if row.change_pp is not None else f"{row.change_pct:+.2f} %"
        terminalreporter.write_line(
            f"ENERGYBENCH REGRESSION: {row.model} {row.precision} {row.metric}{' ' + row.shape if row.shape else ''} "
            f"{change} "
            f"breaks {row.limit} ({row.basis})",
            red=True,
            bold=True,
        )
    if comparison.regressions:
        terminalreporter.write_line(
            f"energybench: {len(comparison.regressions)} regression(s); "
            f"exit status {REGRESSION_EXIT_STATUS} if no test failed"
        )
