"""Parses and validates every energybench option once into a frozen :class:`Settings`.

Precedence: command line > ini (``energybench_*`` keys) > ``[tool.energybench]`` in
pyproject.toml (budgets) > built-in defaults. A bad value raises :class:`SettingsError`
with what was wrong, what is accepted and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from energybench.catalog import (
    ALL_PRECISIONS,
    CUSTOM_MODEL,
    DEFAULT_ACCURACY_BUDGET_PP,
    DEFAULT_PERPLEXITY_BUDGET_PCT,
    DEVICES,
    METERED_METRICS,
    METERS,
    MIXED,
    MODEL_SOURCES,
    OPTION_BY_DEST,
    PRECISIONS,
    SELECTABLE_METRICS,
    TASKS,
)
from energybench.errors import UsageError
from energybench.models.registry import REGISTRY

METRICS = SELECTABLE_METRICS  # what --metric accepts
__all__ = ["METERED_METRICS", "METRICS", "Settings", "SettingsError", "parse"]


def default(dest: str) -> Any:
    """The catalog's default of an option (one place for every default)."""
    return OPTION_BY_DEST[dest].default


class SettingsError(UsageError):
    pass


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    precisions: tuple[str, ...]
    metrics: tuple[str, ...]
    device: str
    model_source: str
    model_path: Path | None
    task: str | None
    batch_size: int
    seq_len: int
    max_samples: int | None
    rounds: int
    warmup_rounds: int
    ppl_context: int | None
    ppl_stride: int | None
    reports_dir: Path
    save: bool
    accuracy_budget_pp: dict[str, float] = field(default_factory=dict)
    perplexity_budget_pct: dict[str, float] = field(default_factory=dict)
    meters: tuple[str, ...] | str = "auto"
    energy_min_s: float | None = None  # None: derived from the sensor's update period
    energy_min_calls: int = 10
    idle_s: float = 3.0
    country: str = "USA"
    region: str | None = None
    energy_budget_ratio: dict[str, float] = field(default_factory=dict)
    compare: str | None = None  # the reference as given: run id, path, latest or baseline name
    compare_path: Path | None = None  # what it resolved to when the session started
    fail_on: str | None = None
    save_baseline: str | None = None
    impact_samples: int | None = None  # None: energybench.layers.study.DEFAULT_IMPACT_SAMPLES
    report: bool = False

    def budget_for(self, metric: str, model: str, precision: str) -> float | None:
        table = {
            "accuracy": self.accuracy_budget_pp,
            "perplexity": self.perplexity_budget_pct,
            "energy": self.energy_budget_ratio,
        }[metric]
        found = table.get(f"{model}/{precision}", table.get(precision))
        if found is None and precision == MIXED:  # the plan quantizes to int8: int8's budget unless set
            return self.budget_for(metric, model, "int8")
        return found

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["model_path"] = str(self.model_path) if self.model_path else None
        out["reports_dir"] = str(self.reports_dir)
        out["compare_path"] = str(self.compare_path) if self.compare_path else None
        return out


def choice_list(
    option: str, raw: str, accepted: tuple[str, ...], all_means: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    names = tuple(n.strip() for n in str(raw).split(",") if n.strip())
    if all_means is not None and "all" in names:
        names = tuple(dict.fromkeys(n for name in names for n in (all_means if name == "all" else (name,))))
    unknown = [n for n in names if n not in accepted]
    if unknown or not names:
        extra = ", all" if all_means is not None else ""
        raise SettingsError(
            f"{option}: unknown value {', '.join(unknown) or repr(raw)}; accepted: {', '.join(accepted)}{extra} "
            "(comma-separated)"
        )
    return tuple(dict.fromkeys(names))


def positive_int(option: str, raw: Any, allow_none: bool = False) -> int | None:
    if allow_none and (raw is None or str(raw).strip() in ("", "none", "all")):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise SettingsError(f"{option}: {raw!r} is not a positive integer; give a whole number >= 1")
    return value


def positive_float(option: str, raw: Any, default: float | None) -> float | None:
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(str(raw))
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SettingsError(f"{option}: {raw!r} is not a positive number of seconds")
    return value


def meter_choice(raw: Any) -> tuple[str, ...] | str:
    text = str(raw or default("meters")).strip()
    if text in ("auto", "none"):
        return text
    try:
        return choice_list("--meters", text, METERS)
    except SettingsError:
        raise SettingsError(f"--meters: {text!r} is not auto, none or a comma list of {', '.join(METERS)}") from None


def country_code(raw: Any) -> str:
    text = str(raw or default("country")).strip()
    if len(text) != 3 or not text.isalpha():
        raise SettingsError(f"--country: {text!r} is not a 3-letter ISO 3166 code (e.g. USA, FRA, DEU)")
    return text.upper()


def budget_table(option: str, raw: str | dict | None, default: dict[str, float]) -> dict[str, float]:
    """``int8=1.0,gpt2/fp16=0.5`` (or a TOML table) -> {key: limit}, merged over ``default``."""
    table = dict(default)
    if not raw:
        return table
    items = raw.items() if isinstance(raw, dict) else (p.split("=", 1) for p in str(raw).split(",") if "=" in p)
    for key, value in items:
        precision = str(key).strip().rpartition("/")[2]
        try:
            limit = float(value)
        except ValueError:
            limit = -1.0
        if precision not in ALL_PRECISIONS or limit < 0:
            raise SettingsError(
                f"{option}: bad entry {key}={value}; expected <precision>=<limit> or <model>/<precision>=<limit> "
                f"with precision in {', '.join(PRECISIONS)} and a limit >= 0"
            )
        table[str(key).strip()] = limit
    if isinstance(raw, str) and any("=" not in p for p in raw.split(",") if p.strip()):
        raise SettingsError(f"{option}: {raw!r} is not a list of <precision>=<limit>, e.g. int8=1.0,fp16=0.3")
    return table


def pyproject_table(rootdir: Path) -> dict[str, Any]:
    path = Path(rootdir) / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("energybench", {})
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: [tool.energybench] is not valid TOML ({error})") from error


def parse(raw: dict[str, Any], rootdir: Path) -> Settings:
    """Build Settings from already-merged raw option values (cli over ini)."""
    tool = pyproject_table(rootdir)
    model_path = Path(raw["model_path"]).expanduser() if raw.get("model_path") else None
    models_raw = raw.get("model") or (CUSTOM_MODEL if model_path else default("model"))
    accepted_models = (*REGISTRY, CUSTOM_MODEL) if model_path else tuple(REGISTRY)
    models = choice_list("--model", models_raw, accepted_models, all_means=tuple(REGISTRY))
    if model_path and len(models) != 1:
        raise SettingsError(f"--model-path applies to one model; got --model {','.join(models)}; name one model")
    source = (
        "path"
        if model_path
        else choice_list("--model-source", raw.get("model_source") or default("model_source"), MODEL_SOURCES)[0]
    )
    if source == "path" and not model_path:
        raise SettingsError("--model-source path needs --model-path DIR (a save_pretrained folder)")
    task = choice_list("--task", raw["task"], TASKS)[0] if raw.get("task") else None
    reports = Path(raw.get("reports_dir") or default("reports_dir"))
    reports = reports if reports.is_absolute() else Path(rootdir) / reports
    return Settings(
        models=models,
        precisions=choice_list(
            "--precision", raw.get("precision") or default("precision"), ALL_PRECISIONS, all_means=PRECISIONS
        ),
        metrics=choice_list("--metric", raw.get("metric") or default("metric"), METRICS, all_means=METRICS),
        device=choice_list("--device", raw.get("device") or default("device"), DEVICES)[0],
        model_source=source,
        model_path=model_path,
        task=task,
        batch_size=positive_int("--batch-size", raw.get("batch_size") or default("batch_size")),
        seq_len=positive_int("--seq-len", raw.get("seq_len") or default("seq_len")),
        max_samples=positive_int("--max-samples", raw.get("max_samples"), allow_none=True),
        rounds=positive_int("--rounds", raw.get("rounds") or default("rounds")),
        warmup_rounds=positive_int("--warmup-rounds", raw.get("warmup_rounds") or default("warmup_rounds")),
        ppl_context=positive_int("--ppl-context", raw.get("ppl_context"), allow_none=True),
        ppl_stride=positive_int("--ppl-stride", raw.get("ppl_stride"), allow_none=True),
        reports_dir=reports,
        save=not raw.get("no_save"),
        accuracy_budget_pp=budget_table(
            "--accuracy-budget",
            raw.get("accuracy_budget"),
            budget_table(
                "[tool.energybench] accuracy_budget_pp", tool.get("accuracy_budget_pp"), DEFAULT_ACCURACY_BUDGET_PP
            ),
        ),
        perplexity_budget_pct=budget_table(
            "--perplexity-budget",
            raw.get("perplexity_budget"),
            budget_table(
                "[tool.energybench] perplexity_budget_pct",
                tool.get("perplexity_budget_pct"),
                DEFAULT_PERPLEXITY_BUDGET_PCT,
            ),
        ),
        meters=meter_choice(raw.get("meters")),
        energy_min_s=positive_float("--energy-min-s", raw.get("energy_min_s"), None),
        energy_min_calls=positive_int("--energy-min-calls", raw.get("energy_min_calls") or default("energy_min_calls")),
        idle_s=positive_float("--idle-s", raw.get("idle_s"), default("idle_s")),
        country=country_code(raw.get("country")),
        region=raw.get("region") or None,
        energy_budget_ratio=budget_table(
            "--energy-budget",
            raw.get("energy_budget"),
            budget_table("[tool.energybench] energy_budget_ratio", tool.get("energy_budget_ratio"), {}),
        ),
        impact_samples=positive_int("--impact-samples", raw.get("impact_samples"), allow_none=True),
        **gate_settings(raw, reports),
        report=bool(raw.get("report")),
    )


def gate_settings(raw: dict[str, Any], reports: Path) -> dict[str, Any]:
    """--compare / --fail-on / --save-baseline, checked before anything runs (the reference is
    resolved now, so ``latest`` means the newest run before this session)."""
    from energybench.results.compare import CompareError, parse_fail_on  # deferred: heavy
    from energybench.results.store import RunNotFound, check_baseline_name, resolve_ref  # deferred: heavy

    ref, fail_on, baseline = raw.get("compare"), raw.get("fail_on"), raw.get("save_baseline")
    try:
        parse_fail_on(fail_on)
        if baseline:
            check_baseline_name(baseline)
        path = resolve_ref(ref, reports) if ref else None
    except (CompareError, RunNotFound) as error:
        raise SettingsError(str(error)) from None
    except ValueError as error:
        raise SettingsError(f"--save-baseline: {error}") from None
    if fail_on and not ref:
        raise SettingsError("--fail-on needs --compare <run id | latest | baseline name> to compare against")
    return {"compare": ref, "compare_path": path, "fail_on": fail_on, "save_baseline": baseline}
