"""One benchmark session: resolves sources once, owns loaded models, baselines and records,
and saves the run at the end.
"""

from __future__ import annotations

import copy
import datetime as dt
import gc
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from energybench.catalog import (
    BASELINE_PRECISION,
    CAUSAL_LM,
    DEFAULT_BACKEND,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SEQ_LEN,
    METRICS,
    ONE_REQUEST_METRICS,
    TIMED_METRICS,
    variant,
)
from energybench.harness.options import Settings, SettingsError
from energybench.measure.generation import usage_problem
from energybench.measure.meters import Meter, MeterUnavailable, Reading
from energybench.measure.meters.selection import MeterSet, open_meters
from energybench.measure.quality import Quality, max_positions, quality
from energybench.models.precision import Prepared
from energybench.models.registry import (
    REGISTRY,
    LoadedModel,
    ModelSource,
    ModelSourceError,
    load,
    resolve,
    resolve_path,
    task_of_checkpoint,
)
from energybench.progress import Prefixed
from energybench.results.compare import CompareError, Comparison, compare_runs, metrics_of, parse_fail_on, render
from energybench.results.environment import commit_info, machine_info
from energybench.results.schema import Record, Run, shape_label
from energybench.results.store import load_run, load_runs, new_run_id, save_baseline, save_run, write_file
from energybench.version import __version__


@dataclass(frozen=True)
class CaseSpec:
    """What one test asks for (its ``eb_case`` parameter): model, precision, metric, backend, block, shape."""

    model: str
    precision: str
    metric: str
    backend: str = DEFAULT_BACKEND
    block: int = 1  # timed metrics: which of ``blocks`` passes over the selection this test times
    blocks: int = 1
    batch_size: int | None = None  # shaped metrics: this test's shape (None: not shaped)
    seq_len: int | None = None  # None on a shaped metric: derived from the model (generation's prompt)
    swept: bool = False  # the metric runs at several shapes: the id shows this one

    @property
    def id(self) -> str:
        """``distilbert-int8`` on the default backend (ids unchanged), ``distilbert-onnxruntime-int8`` elsewhere;
        ``-b8x128`` for one shape of a sweep; ``-block2of5`` for a timed metric measured in blocks."""
        block = f"-block{self.block}of{self.blocks}" if self.blocks > 1 else ""
        return f"{self.model}-{variant(self.precision, self.backend)}{self.shape_label}{block}"

    @property
    def shape(self) -> dict[str, int]:
        """The shape this test was asked for ({} when not shaped; a derived prompt length is left out)."""
        given = {"batch_size": self.batch_size, "seq_len": self.seq_len}
        return {name: value for name, value in given.items() if value is not None}

    @property
    def shape_label(self) -> str:
        return f"-{shape_label(self.shape)}" if self.swept else ""


def case_of_test(test_id: str) -> str:
    """A test's node id without its block: the blocks of one case share it."""
    return re.sub(r"-block\d+of\d+\]$", "]", test_id)


def timed_key(record: Record) -> tuple[str, ...]:
    return (record.model, record.precision, record.backend, record.metric, case_of_test(record.test_id))


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class BenchSession:
    def __init__(self, settings: Settings, rootdir: Path, progress: Callable[[str], None] | None = None):
        self.settings = settings
        self.rootdir = Path(rootdir)
        self.progress = progress
        self.started_at = utc_now()
        self.sources: dict[str, ModelSource] = {}
        self.records: list[Record] = []
        self.recorded_tests: set[str] = set()
        self.saved_path: Path | None = None
        self.report_note: str | None = None  # where --report wrote the report, or why it did not
        self.device: torch.device | None = None
        self._loaded: dict[str, LoadedModel] = {}
        self._prepared: tuple[tuple[str, str, str], Prepared] | None = None
        self._quality: dict[tuple[str, str, str, str], Quality] = {}
        self._traces: dict[tuple[str, str, str, str], Any] = {}
        self.kernel_paths: dict[
            tuple[Any, ...], Any
        ] = {}  # (model, precision, backend, batch, seq) -> KernelPath  # causal LMs: the quality pass's LMTrace
        self._backends: dict[str, Any] = {}  # name -> energybench.models.backends.Backend, made when first used
        self.meter_set: MeterSet | None = None  # opened when energy is measured
        self._idle: dict[str, Reading] = {}
        self.comparison: Comparison | None = None  # when --compare was given
        self.baseline_path: Path | None = None
        self.partial_reason: str | None = None  # set when the session was interrupted or stopped early
        self.notes: list[str] = []  # lines for the summary (e.g. why no baseline was saved)
        self.workers: dict[str, dict[str, Any]] = {}  # xdist: what each worker measured on
        self.study: dict[tuple, Any] = {}  # energybench.layers.study: layer tables, sensitivities, plans
        self.energy_windows: dict[tuple, Any] = {}  # recorders.energy: the energy tests' windows, for the layer study
        self.timed_blocks: dict[tuple[str, str, str], list[tuple[float, ...]]] = {}  # each block's rounds so far
        self.custom_metrics: dict[str, dict[str, str]] = {}  # the run's own metrics (eb_record): direction, unit
        self.fp32_values: dict[tuple[str, str], float] = {}  # (fp32 test id, name) -> value, for quality_budget
        self.gate_error: str | None = None  # --fail-on named a metric no run declares, or with the wrong sign

    # -- start-up -------------------------------------------------------------------------
    def activate(self, with_energy: bool = False) -> None:
        """Resolve the device, every model source and (for energy) the meters; SettingsError if unusable."""
        if self.device is not None:
            return
        self.device = resolve_device(self.settings.device)
        try:
            for name in self.settings.models:
                self.sources[name] = self.resolve_source(name)
        except ModelSourceError as error:
            raise SettingsError(str(error)) from error
        if with_energy:
            self.open_meters()

    def open_meters(self) -> None:
        try:
            self.meter_set = open_meters(
                self.settings.meters,
                self.device,
                country=self.settings.country,
                region=self.settings.region,
                rapl_root=None,
                output_dir=self.settings.reports_dir,
            )
        except MeterUnavailable as error:
            raise SettingsError(str(error)) from error

    def metered(self, run: Callable[[], None], items: int, what: str) -> tuple[Any, str]:
        """One metered window of ``run`` (``items`` per call, described as ``what``) above this
        session's idle baseline: the energy result and the method line every energy record shows."""
        from energybench.measure import energy  # deferred: heavy

        meters, settings = self.meter_set, self.settings
        assert meters is not None and meters.primary() is not None, "open the meters before metering"
        idle = self.idle_reading(meters.primary())
        result = energy.measure(
            run,
            meters,
            idle,
            items_per_call=items,
            configured_min_s=settings.energy_min_s,
            min_calls=settings.energy_min_calls,
        )
        method = (
            f"{result.method}: {result.primary} on {result.readings[result.primary].device}, "
            f"{result.window_s:.2f} s window over {result.calls} calls of {items} {what}; "
            f"idle baseline {settings.idle_s:.1f} s"
        )
        return result, method

    def meter_absence(self) -> str | None:
        """Why no power meter reads in this session (each absent meter's reason), or None when one does."""
        meters = self.meter_set
        if meters is not None and meters.primary() is not None:
            return None
        absent = "; ".join(f"{k}: {v}" for k, v in (meters.absent if meters else {}).items())
        return absent or "meters not opened"

    def idle_reading(self, meter: Meter) -> Reading:
        """The meter's reading over ``idle_s`` seconds of doing nothing, once per session."""
        if meter.name not in self._idle:
            meter.start()
            time.sleep(max(self.settings.idle_s, meter.update_period_s * 2))
            self._idle[meter.name] = meter.stop()
        return self._idle[meter.name]

    def close(self) -> None:
        if self.meter_set is not None:
            self.meter_set.close()

    def add_model(self, name: str) -> None:
        """A registered model a test's marker names beyond --model; ModelSourceError if unusable."""
        if name not in self.sources:
            self.sources[name] = resolve(REGISTRY[name], self.settings.model_source)

    def resolve_source(self, name: str) -> ModelSource:
        if self.settings.model_path:
            task = self.settings.task or (REGISTRY[name].task if name in REGISTRY else None)
            return resolve_path(name, self.settings.model_path, task)
        return resolve(REGISTRY[name], self.settings.model_source)

    def task(self, model: str) -> str:
        if model in self.sources:
            return self.sources[model].task
        if model in REGISTRY:
            return REGISTRY[model].task
        return self.settings.task or checkpoint_task(self.settings.model_path)

    def cases(self, metric: str) -> list[CaseSpec]:
        """Every test of ``metric``: block x model x backend x precision x shape. A model of another
        task gets tests only where --metric names the metric itself (they skip with the reason)."""
        task = METRICS[metric].task
        named = metric in self.settings.named_metrics
        models = [m for m in self.settings.models if named or task is None or self.task(m) in (task, None)]
        blocks = self.settings.blocks if metric in TIMED_METRICS else 1
        shapes = self.shapes(metric)
        return [
            CaseSpec(m, p, metric, b, block, blocks, batch, seq, swept=len(shapes) > 1)
            for block in range(1, blocks + 1)
            for m in models
            for b in self.settings.backends
            for p in self.settings.precisions
            for batch, seq in shapes
        ]

    def shapes(self, metric: str) -> list[tuple[int | None, int | None]]:
        """(batch size, sequence length) of each test of ``metric``: --batch-size x --seq-len, or the
        metric's defaults (latency and generation at batch 1; generation's prompt from the model)."""
        if not METRICS[metric].shaped:
            return [(None, None)]
        batch = 1 if metric in ONE_REQUEST_METRICS else DEFAULT_BATCH_SIZE
        seq = None if METRICS[metric].records else DEFAULT_SEQ_LEN
        return [(b, q) for b in self.settings.batch_sizes or (batch,) for q in self.settings.seq_lens or (seq,)]

    def check_generation(self, cases: list[CaseSpec]) -> None:
        """--seq-len + --gen-tokens within every generating model's positions, checked once the model is
        loaded and before anything is measured: a SettingsError (one usage line) otherwise."""
        generating = [c for c in cases if c.metric == "generation" and self.task(c.model) == CAUSAL_LM]
        for model in dict.fromkeys(c.model for c in generating):
            try:
                positions = max_positions(self.loaded(model).model)
            except ModelSourceError as error:
                raise SettingsError(str(error)) from error
            for seq_len in dict.fromkeys(c.seq_len for c in generating if c.model == model):
                problem = usage_problem(seq_len, self.settings.gen_tokens, positions)
                if problem:
                    raise SettingsError(f"--metric generation on {model}: {problem}")

    def backend(self, name: str) -> Any:
        """This session's instance of backend ``name`` (it keeps the exported files of the session)."""
        if name not in self._backends:
            from energybench.models.backends import backend  # deferred: heavy

            self._backends[name] = backend(name)
        return self._backends[name]

    # -- models ---------------------------------------------------------------------------
    def loaded(self, model: str) -> LoadedModel:
        if model not in self._loaded:
            self._loaded[model] = load(self.sources[model], progress=self.progress)
        return self._loaded[model]

    def prepared(
        self,
        model: str,
        precision: str,
        build: Callable[[], Prepared] | None = None,
        backend: str = DEFAULT_BACKEND,
    ) -> Prepared:
        """The converted model for (model, precision, backend), kept until another one is asked for.

        ``build`` makes a precision that needs more than a converter (``mixed`` needs its plan).
        """
        key = (model, precision, backend)
        if self._prepared is None or self._prepared[0] != key:
            self.release_prepared()
            self._prepared = (key, build() if build else self.fresh(model, precision, backend))
        return self._prepared[1]

    def fresh(self, model: str, precision: str, backend: str = DEFAULT_BACKEND) -> Prepared:
        """A new converted copy (the fp32 original stays untouched). Raises PrecisionUnsupported."""
        loaded = self.loaded(model)
        runner = self.backend(backend)
        converted = runner.prepare(copy.deepcopy(loaded.model), precision, self.device, loaded)
        details = {"backend": backend, **converted.details}
        return Prepared(loaded, converted.model, precision, converted.implementation, details, self.device)

    def release_prepared(self) -> None:
        self._prepared = None
        gc.collect()
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- quality and baselines ------------------------------------------------------------
    def quality(
        self, model: str, precision: str, metric: str, prepared: Prepared | None = None, backend: str = DEFAULT_BACKEND
    ) -> Quality:
        """Accuracy or perplexity for (model, precision, backend), computed once per session."""
        key = (model, precision, metric, backend)
        if key not in self._quality:
            tap = self.behaviour_tap(model, precision, metric, backend)
            progress = Prefixed(self.progress, f"{model} {variant(precision, backend)}") if self.progress else None
            prepared = prepared or self.prepared(model, precision, backend=backend)
            self._quality[key] = quality(prepared, metric, self.settings, progress, tap=tap)
            if tap is not None:
                self._traces[key] = tap
        return self._quality[key]

    def behaviour_tap(self, model: str, precision: str, metric: str, backend: str) -> Any:
        """Perplexity: the trace that keeps behaviour against fp32 in the same pass. fp32 on the
        default backend keeps the reference (and so runs first); every other case is traced against it."""
        if metric != "perplexity":
            return None  # accuracy keeps its per-sentence predictions itself
        from energybench.measure.behaviour import LMTrace  # deferred: heavy

        if (precision, backend) == (BASELINE_PRECISION, DEFAULT_BACKEND):
            return LMTrace(keep_reference=True)
        self.quality(model, BASELINE_PRECISION, metric)
        reference = self._traces.get((model, BASELINE_PRECISION, metric, DEFAULT_BACKEND))
        return LMTrace(against=reference.reference()) if reference is not None else None

    def trace(self, model: str, precision: str, metric: str, backend: str = DEFAULT_BACKEND) -> Any:
        """The LMTrace of a causal LM's quality pass (None before it ran, or for a classifier)."""
        return self._traces.get((model, precision, metric, backend))

    # -- records and the run --------------------------------------------------------------
    def add(self, record: Record) -> Record:
        if record.metric in TIMED_METRICS:  # one record per case, rewritten by each block (or its skip)
            key = timed_key(record)
            self.records = [r for r in self.records if timed_key(r) != key]
        self.records.append(record)
        if record.test_id:
            self.recorded_tests.add(record.test_id)
        return record

    def build_run(self, run_id: str) -> Run:
        models = self.models_summary()
        machine, meters = machine_info(str(self.device or "cpu")), self.meters_summary()
        if self.workers:  # measured by xdist workers: their machine view (GPU, pinning) is the one that counts
            first = self.workers[min(self.workers)]
            machine, meters = dict(first["machine"]), first["meters"]
            machine["workers"] = {
                w: {
                    "device": o["machine"].get("device"),
                    "cuda_visible_devices": o["machine"].get("cuda_visible_devices"),
                }
                for w, o in sorted(self.workers.items())
            }
            for output in self.workers.values():
                models.update(output["models"])
        return Run(
            run_id=run_id,
            started_at=self.started_at,
            finished_at=utc_now(),
            energybench_version=__version__,
            machine=machine,
            commit=commit_info(self.rootdir),
            options=self.settings.to_dict(),
            models=models,
            records=list(self.records),
            meters=meters,
            partial=self.partial_reason is not None,
            partial_reason=self.partial_reason,
            custom_metrics=dict(self.custom_metrics),
        )

    def meters_summary(self) -> dict[str, Any]:
        if self.meter_set is None:
            return {}
        return {"open": {m.name: m.device for m in self.meter_set.meters}, "absent": dict(self.meter_set.absent)}

    def models_summary(self) -> dict[str, dict[str, Any]]:
        return {name: {**source.to_dict(), **self.model_details(name)} for name, source in self.sources.items()}

    def model_details(self, name: str) -> dict[str, Any]:
        loaded = self._loaded.get(name)
        return {"load_details": loaded.details} if loaded else {}

    def finish(self, partial_reason: str | None = None) -> None:
        """At the end of the session: save the run, promote it to a baseline, compare it (the gate).

        A partial session (``partial_reason``: interrupted, stopped early, collection errors) is
        saved marked as partial and never promoted to a baseline."""
        self.partial_reason = partial_reason
        if not self.records:
            return
        run = self.build_run(new_run_id())
        if self.settings.save:
            self.saved_path = save_run(run, self.settings.reports_dir)
            if self.settings.save_baseline and run.partial:
                self.notes.append(
                    f"baseline {self.settings.save_baseline} NOT replaced: this run is partial ({run.partial_reason})"
                )
            elif self.settings.save_baseline:
                self.baseline_path = save_baseline(
                    self.saved_path, self.settings.reports_dir, self.settings.save_baseline
                )
        if self.settings.compare_path:
            self.comparison = self.compare_with(run)

    def compare_with(self, run: Run) -> Comparison:
        reference = load_run(self.settings.compare_path)
        try:
            limits = parse_fail_on(self.settings.fail_on, metrics_of(reference, run))
        except CompareError as error:
            self.gate_error = str(error)
            limits = {}
        history, _ = load_runs(self.settings.reports_dir)  # the drift band: earlier runs of the same machine
        comparison = compare_runs(reference, run, limits, history)
        if self.saved_path:
            write_file(self.saved_path / "comparison.md", render(comparison, "markdown") + "\n")
            write_file(self.saved_path / "comparison.json", render(comparison, "json") + "\n")
        return comparison

    # -- pytest-xdist: workers measure, the controller saves one run --------------------------
    def worker_output(self, worker_id: str) -> dict[str, Any]:
        output = {
            "worker": worker_id,
            "records": [r.to_dict() for r in self.records],
            "models": self.models_summary(),
            "machine": machine_info(str(self.device or "cpu")),
            "meters": self.meters_summary(),
            "custom_metrics": self.custom_metrics,
        }
        return json.loads(json.dumps(output, default=str))  # plain types only: execnet carries nothing else

    def merge_worker(self, output: dict[str, Any]) -> None:
        from energybench.results.schema import declare_custom_metrics  # deferred: heavy

        declare_custom_metrics(self.custom_metrics, output.get("custom_metrics", {}))  # one declaration per name
        self.custom_metrics.update(output.get("custom_metrics", {}))
        self.records.extend(Record.from_dict(r) for r in output["records"])
        self.workers[output["worker"]] = output

    def write_report(self) -> None:
        """With --report: the figures and HTML page of the run just saved, or why there are none."""
        if not self.settings.report:
            return
        if self.saved_path is None:
            self.report_note = "report not written: no run was saved (nothing measured, or --no-save)"
            return
        self.report_note = render_report(self.saved_path, self.settings.compare_path)


def render_report(run: Path, compare: Path | None) -> str:
    """Draw the report in a child process (``energybench report``): the report stage stays out of
    the harness, and matplotlib's memory out of the benchmark process. Returns the line to show."""
    command = [sys.executable, "-m", "energybench.cli", "report", str(run)]
    command += ["--compare", str(compare)] if compare else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return f"report written to {run / 'report' / 'index.html'}"
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    why = lines[-1].removeprefix("energybench report: ") if lines else f"exit status {done.returncode}"
    return f"report not written: {why} (the run is saved; retry with: energybench report {run})"


def checkpoint_task(path: Path | None) -> str | None:
    """Best-effort task of a checkpoint folder at collection time; activate() reports any problem."""
    try:
        return task_of_checkpoint(Path(path)) if path else None
    except (OSError, ValueError):
        return None


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise SettingsError(
            "--device cuda: no CUDA device is visible (torch.cuda.is_available() is False); "
            "use --device cpu or auto, or install a CUDA build of torch"
        )
    return torch.device(requested)
