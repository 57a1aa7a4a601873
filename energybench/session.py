"""One benchmark session: resolves sources once, owns loaded models, baselines and records,
and saves the run at the end.
"""

from __future__ import annotations

import copy
import datetime as dt
import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energybench import __version__
from energybench.models import REGISTRY, LoadedModel, ModelSource, ModelSourceError, resolve, resolve_path
from energybench.records import Record, Run
from energybench.settings import Settings, SettingsError

QUALITY_METRICS = {"sequence-classification": "accuracy", "causal-lm": "perplexity"}
METRIC_TASKS = {"accuracy": ("sequence-classification",), "perplexity": ("causal-lm",)}


@dataclass(frozen=True)
class Case:
    model: str
    precision: str
    metric: str

    @property
    def id(self) -> str:
        return f"{self.model}-{self.precision}"


@dataclass
class Prepared:
    """A model converted to one precision on one device, ready to run."""

    loaded: LoadedModel
    model: Any
    precision: str
    implementation: str
    details: dict[str, Any]
    device: Any  # torch.device


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
        self.device: Any = None
        self._loaded: dict[str, LoadedModel] = {}
        self._prepared: tuple[tuple[str, str], Prepared] | None = None
        self._quality: dict[tuple[str, str, str], Any] = {}
        self.meter_set: Any = None  # energybench.meters.selection.MeterSet, opened when energy is measured
        self._idle: dict[str, Any] = {}
        self.comparison: Any = None  # energybench.compare.Comparison, when --compare was given
        self.baseline_path: Path | None = None
        self.workers: dict[str, dict[str, Any]] = {}  # xdist: what each worker measured on
        self.study: dict[tuple, Any] = {}  # energybench.study: layer tables, sensitivities, plans
        self.builders: dict[str, Callable[[str], Prepared]] = {}  # precisions built by a study ("mixed")

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
        from energybench.meters import MeterUnavailable
        from energybench.meters.selection import open_meters

        try:
            self.meter_set = open_meters(
                self.settings.meters, self.device, country=self.settings.country, region=self.settings.region,
                rapl_root=None, output_dir=self.settings.reports_dir,
            )  # fmt: skip
        except MeterUnavailable as error:
            raise SettingsError(str(error)) from error

    def idle_reading(self, meter: Any) -> Any:
        """The meter's reading over ``idle_s`` seconds of doing nothing, once per session."""
        import time

        if meter.name not in self._idle:
            meter.start()
            time.sleep(max(self.settings.idle_s, meter.update_period_s * 2))
            self._idle[meter.name] = meter.stop()
        return self._idle[meter.name]

    def close(self) -> None:
        if self.meter_set is not None:
            self.meter_set.close()

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

    def cases(self, metric: str) -> list[Case]:
        tasks = METRIC_TASKS.get(metric)
        models = [m for m in self.settings.models if tasks is None or self.task(m) in (*tasks, None)]
        return [Case(m, p, metric) for m in models for p in self.settings.precisions]

    # -- models ---------------------------------------------------------------------------
    def loaded(self, model: str) -> LoadedModel:
        if model not in self._loaded:
            from energybench.models import load

            self._loaded[model] = load(self.sources[model], progress=self.progress)
        return self._loaded[model]

    def prepared(self, model: str, precision: str) -> Prepared:
        """The converted model for (model, precision), kept until another one is asked for."""
        key = (model, precision)
        if self._prepared is None or self._prepared[0] != key:
            self.release_prepared()
            self._prepared = (key, self.fresh(model, precision))
        return self._prepared[1]

    def fresh(self, model: str, precision: str) -> Prepared:
        """A new converted copy (the fp32 original stays untouched). Raises PrecisionUnsupported."""
        from energybench.precision import convert

        if precision in self.builders:
            return self.builders[precision](model)
        loaded = self.loaded(model)
        converted = convert(copy.deepcopy(loaded.model), precision, self.device)
        return Prepared(loaded, converted.model, precision, converted.implementation, converted.details, self.device)

    def release_prepared(self) -> None:
        self._prepared = None
        gc.collect()
        if self.device is not None and self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    # -- quality and baselines ------------------------------------------------------------
    def quality(self, model: str, precision: str, metric: str) -> Any:
        """Accuracy or perplexity for (model, precision), computed once per session."""
        key = (model, precision, metric)
        if key not in self._quality:
            from energybench import suite
            from energybench.progress import Prefixed

            progress = Prefixed(self.progress, f"{model} {precision}") if self.progress else None
            self._quality[key] = suite.quality(self.prepared(model, precision), metric, self.settings, progress)
        return self._quality[key]

    # -- records and the run --------------------------------------------------------------
    def add(self, record: Record) -> Record:
        self.records.append(record)
        if record.test_id:
            self.recorded_tests.add(record.test_id)
        return record

    def build_run(self, run_id: str) -> Run:
        from energybench.environment import commit_info, machine_info

        models = self.models_summary()
        machine, meters = machine_info(str(self.device or "cpu")), self.meters_summary()
        if self.workers:  # measured by xdist workers: their machine view (GPU, pinning) is the one that counts
            first = self.workers[min(self.workers)]
            machine, meters = dict(first["machine"]), first["meters"]
            machine["workers"] = {w: {"device": o["machine"].get("device"),
                                      "cuda_visible_devices": o["machine"].get("cuda_visible_devices")}
                                  for w, o in sorted(self.workers.items())}  # fmt: skip
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

    def finish(self) -> None:
        """At the end of the session: save the run, promote it to a baseline, compare it (the gate)."""
        from energybench.store import new_run_id, save_baseline, save_run

        if not self.records:
            return
        run = self.build_run(new_run_id())
        if self.settings.save:
            self.saved_path = save_run(run, self.settings.reports_dir)
            if self.settings.save_baseline:
                self.baseline_path = save_baseline(self.saved_path, self.settings.reports_dir,
                                                   self.settings.save_baseline)  # fmt: skip
        if self.settings.compare_path:
            self.comparison = self.compare_with(run)

    def compare_with(self, run: Run) -> Any:
        from energybench.compare import compare_runs, parse_fail_on, render
        from energybench.store import load_run, write_file

        comparison = compare_runs(load_run(self.settings.compare_path), run, parse_fail_on(self.settings.fail_on))
        if self.saved_path:
            write_file(self.saved_path / "comparison.md", render(comparison, "markdown") + "\n")
            write_file(self.saved_path / "comparison.json", render(comparison, "json") + "\n")
        return comparison

    # -- pytest-xdist: workers measure, the controller saves one run --------------------------
    def worker_output(self, worker_id: str) -> dict[str, Any]:
        import json

        from energybench.environment import machine_info

        output = {
            "worker": worker_id,
            "records": [r.to_dict() for r in self.records],
            "models": self.models_summary(),
            "machine": machine_info(str(self.device or "cpu")),
            "meters": self.meters_summary(),
        }
        return json.loads(json.dumps(output, default=str))  # plain types only: execnet carries nothing else

    def merge_worker(self, output: dict[str, Any]) -> None:
        self.records.extend(Record.from_dict(r) for r in output["records"])
        self.workers[output["worker"]] = output

    def write_report(self) -> None:
        """With --report: the figures and HTML page of the run just saved, or why there are none."""
        if not self.settings.report:
            return
        if self.saved_path is None:
            self.report_note = "report not written: no run was saved (nothing measured, or --no-save)"
            return
        from energybench.report.build import ReportError, build_report

        try:
            folder = build_report(self.saved_path, compare=self.settings.compare_path)
            self.report_note = f"report written to {folder / 'index.html'}"
        except ReportError as error:
            self.report_note = f"report not written: {error}"
        except Exception as error:  # noqa: BLE001 - the run is saved; a drawing bug must not hide that
            self.report_note = (f"report not written: {type(error).__name__}: {error} "
                                f"(the run is saved; retry with: energybench report {self.saved_path})")  # fmt: skip


def checkpoint_task(path: Path | None) -> str | None:
    """Best-effort task of a checkpoint folder at collection time; activate() reports any problem."""
    from energybench.models import task_of_checkpoint

    try:
        return task_of_checkpoint(Path(path)) if path else None
    except (OSError, ValueError):
        return None


def resolve_device(requested: str) -> Any:
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise SettingsError(
            "--device cuda: no CUDA device is visible (torch.cuda.is_available() is False); "
            "use --device cpu or auto, or install a CUDA build of torch"
        )
    return torch.device(requested)
