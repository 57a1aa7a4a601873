"""pytest glue only: options and ini twins, the ``energybench`` marker, fixtures, header and summary.

Nothing heavy is imported at module level, so ``pytest --help`` stays fast.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from energybench.settings import METERED_METRICS, METRICS, SettingsError

SESSION_KEY = pytest.StashKey["Any"]()
GPUS_KEY = pytest.StashKey[list]()
OPTIONS = (
    # (name, metavar, help) -- every option has an ini twin "energybench_<name>"
    ("model", "NAMES", "models, comma-separated or 'all': distilbert, gpt2, bert-base [distilbert]"),
    ("precision", "NAMES", "precisions, comma-separated or 'all': fp32, fp16, bf16, int8; mixed (the layer "
     "study's plan) is opt-in: all,mixed [all]"),
    ("metric", "NAMES", f"metrics, comma-separated or 'all': {', '.join(METRICS)} [all]"),
    ("device", "DEV", "cpu, cuda or auto (cuda when visible) [auto]"),
    (
        "model-source",
        "SRC",
        "auto (hub if reachable or cached, else embedded), hub, embedded, shape-only [auto]",
    ),
    ("model-path", "DIR", "a local fine-tuned checkpoint (save_pretrained folder) to benchmark instead"),
    ("task", "TASK", "task of --model-path when its config does not say: sequence-classification, causal-lm"),
    ("batch-size", "N", "batch size for evaluation, throughput and memory [32]"),
    ("seq-len", "N", "tokens per sequence for latency, throughput and memory [128]"),
    ("max-samples", "N", "quick runs: first N SST-2 sentences / N perplexity windows [all]"),
    ("rounds", "N", "timed rounds per latency/throughput benchmark [30]"),
    ("warmup-rounds", "N", "untimed warm-up rounds before timing [3]"),
    ("ppl-context", "N", "perplexity window length in tokens [model maximum]"),
    ("ppl-stride", "N", "perplexity stride in tokens [context / 2]"),
    (
        "accuracy-budget",
        "SPEC",
        "max accuracy loss vs fp32 in points, e.g. int8=1.0,fp16=0.3 [pyproject / built-in]",
    ),
    (
        "perplexity-budget",
        "SPEC",
        "max perplexity increase vs fp32 in %%, e.g. int8=5,gpt2/fp16=1 [pyproject / built-in]",
    ),
    ("reports-dir", "DIR", "where runs are saved, relative to the rootdir [reports]"),
    ("meters", "SPEC", "power meters: auto (what works here), none, or a list of nvml, rapl, codecarbon [auto]"),
    ("energy-min-s", "SECONDS", "shortest energy window [10 x the sensor update period, at least 2 s]"),
    ("energy-min-calls", "N", "fewest workload calls in an energy window [10]"),
    ("idle-s", "SECONDS", "idle baseline length per meter [3]"),
    ("country", "ISO3", "country for CodeCarbon's carbon intensity, e.g. FRA [USA]"),
    ("region", "NAME", "region within the country for CodeCarbon (e.g. a US state)"),
    ("impact-samples", "N", "layer impact: SST-2 sentences / WikiText-2 windows per ablation [256 / 32]"),
    ("energy-budget", "SPEC", "max energy per item vs fp32 as a ratio, e.g. int8=0.8 (never gated on estimates)"),
    ("compare", "RUN", "compare this session with a saved run: run id, run folder, 'latest' or a baseline name"),
    (
        "fail-on",
        "SPEC",
        "regression limits for --compare, e.g. latency:+10%%,energy:+10%%,accuracy:-0.5pp,perplexity:+2%%",
    ),
    ("save-baseline", "NAME", "also save this session's run as the named baseline (replacing it), e.g. main"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("energybench", "energybench: precision x metric benchmarks of transformers")
    for name, metavar, text in OPTIONS:
        dest = name.replace("-", "_")
        group.addoption(f"--{name}", dest=f"energybench_{dest}", metavar=metavar, default=None, help=text)
        parser.addini(f"energybench_{dest}", f"default for --{name}", default=None)
    group.addoption("--no-save", dest="energybench_no_save", action="store_true", default=False,
                    help="do not save the run under the reports dir")  # fmt: skip
    group.addoption("--report", dest="energybench_report", action="store_true", default=False,
                    help="write the figures and HTML report of the saved run into <run>/report/ [off]")  # fmt: skip
    parser.addini("energybench_report", "default for --report (true/false)", type="bool", default=False)


def raw_options(config: pytest.Config) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for name, _, _ in OPTIONS:
        dest = name.replace("-", "_")
        raw[dest] = config.getoption(f"energybench_{dest}") or config.getini(f"energybench_{dest}") or None
    raw["no_save"] = config.getoption("energybench_no_save")
    raw["report"] = config.getoption("energybench_report") or config.getini("energybench_report")
    return raw


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "energybench(metric): an energybench benchmark of one metric")
    from energybench.settings import parse

    try:
        settings = parse(raw_options(config), config.rootpath)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    try:
        configure_scaleout(config, settings)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    from energybench.session import BenchSession

    config.stash[SESSION_KEY] = BenchSession(settings, config.rootpath, progress=progress_printer(config))


def xdist_worker_count(config: pytest.Config) -> int:
    if hasattr(config, "workerinput"):
        return int(config.workerinput.get("workercount", 1))
    if config.getoption("dist", "no") == "no":
        return 0
    return int(config.getoption("numprocesses", 0) or 0)


def configure_scaleout(config: pytest.Config, settings: Any) -> None:
    """pytest-xdist: check the worker count on the controller, pin each worker to its own GPU."""
    count = xdist_worker_count(config)
    if count == 0:
        return
    from energybench import scaleout

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


def progress_printer(config: pytest.Config) -> Any:
    """Lines (always) and bars (in a terminal, not in CI) that reach the terminal mid-test."""
    import contextlib

    from energybench.progress import TerminalProgress

    def write(message: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"energybench: {message}")

    def uncaptured() -> Any:
        capture = config.pluginmanager.get_plugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()

    return TerminalProgress(write, uncaptured)


def bench_session(config: pytest.Config) -> Any:
    return config.stash[SESSION_KEY]


def metric_of(definition: Any) -> str | None:
    marker = definition.get_closest_marker("energybench")
    return marker.args[0] if marker and marker.args else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "eb_case" not in metafunc.fixturenames:
        return
    metric = metric_of(metafunc.definition)
    if metric not in METRICS:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: mark it @pytest.mark.energybench(<metric>) "
                                f"with a metric in {', '.join(METRICS)}")  # fmt: skip
    session = bench_session(metafunc.config)
    cases = session.cases(metric)
    metafunc.parametrize("eb_case", cases, ids=[c.id for c in cases])


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    bench = bench_session(config)
    selected, deselected = [], []
    for item in items:
        case = case_of(item)
        if metric_of(item) is None and case is None:
            selected.append(item)
        elif case is not None and case.metric in bench.settings.metrics:
            selected.append(item)
        else:
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    order = {p: i for i, p in enumerate(sorted(bench.settings.precisions, key=lambda p: p == "mixed"))}
    metric_order = {m: i for i, m in enumerate(METRICS)}

    def key(item: pytest.Item) -> tuple:
        case = case_of(item)  # group by model and precision so each model is converted once
        return (0, "", 0, 0) if case is None else (1, case.model, order[case.precision], metric_order[case.metric])

    items[:] = sorted(selected, key=key)


def case_of(item: pytest.Item) -> Any:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("eb_case") if callspec else None
    return case if hasattr(case, "metric") else None  # an empty parameter set gives NOTSET


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter prints the collection header
def pytest_collection_finish(session: pytest.Session) -> None:
    cases = [case_of(item) for item in session.items]
    if any(cases):
        try:
            bench_session(session.config).activate(with_energy=any(c and c.metric in METERED_METRICS for c in cases))
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


@pytest.fixture
def eb(request: pytest.FixtureRequest, eb_case: Any) -> Any:
    """The benchmark context of one model x precision x metric case."""
    from energybench.suite import Bench

    return Bench(bench_session(request.config), eb_case, request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    case = case_of(item)
    bench = bench_session(item.config)
    if case is None or item.nodeid in bench.recorded_tests or report.passed:
        return report
    if report.skipped or report.failed:
        from energybench.records import Record

        status = "skipped" if report.skipped else "error"
        reason = skip_reason(report) if report.skipped else failure_line(call)
        source = bench.sources[case.model].to_dict() if case.model in bench.sources else {}
        record = Record(
            model=case.model, precision=case.precision, metric=case.metric, value=None, unit="", status=status,
            reason=reason, device=str(bench.device), test_id=item.nodeid, source=source,
        )  # fmt: skip
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
    bench.finish()
    bench.write_report()
    if bench.comparison is not None and bench.comparison.regressions and session.exitstatus == 0:
        from energybench.compare import REGRESSION_EXIT_STATUS

        session.exitstatus = REGRESSION_EXIT_STATUS


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    bench = config.stash.get(SESSION_KEY, None)
    if bench is None or not bench.records:
        return
    from energybench.summary import summary_table

    terminalreporter.section("energybench summary")
    for line in summary_table(bench.records):
        terminalreporter.write_line(line)
    if bench.saved_path:
        terminalreporter.write_line(f"energybench: run saved to {bench.saved_path}")
    if bench.baseline_path:
        name = bench.settings.save_baseline
        terminalreporter.write_line(f"energybench: baseline {name} saved to {bench.baseline_path}")
    if bench.comparison is not None:
        write_comparison(terminalreporter, bench.comparison, bench.settings.compare)
    if bench.report_note:
        terminalreporter.write_line(f"energybench: {bench.report_note}")


def write_comparison(terminalreporter: Any, comparison: Any, reference: str) -> None:
    from energybench.compare import REGRESSION_EXIT_STATUS, render

    terminalreporter.section(f"energybench comparison with {reference}")
    for line in render(comparison, "table").splitlines():
        terminalreporter.write_line(line)
    for row in comparison.regressions:
        change = f"{row.change_pp:.2f} pp lost" if row.change_pp is not None else f"{row.change_pct:+.2f} %"
        terminalreporter.write_line(
            f"ENERGYBENCH REGRESSION: {row.model} {row.precision} {row.metric} {change} "
            f"breaks {row.limit} ({row.basis})", red=True, bold=True,
        )  # fmt: skip
    if comparison.regressions:
        terminalreporter.write_line(f"energybench: {len(comparison.regressions)} regression(s); "
                                    f"exit status {REGRESSION_EXIT_STATUS} if no test failed")  # fmt: skip
