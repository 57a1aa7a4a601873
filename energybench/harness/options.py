"""Parses and validates every energybench option once into a frozen :class:`Settings`.

Precedence: command line > ini (``energybench_*`` keys) > ``[tool.energybench]`` in
pyproject.toml (budgets) > built-in defaults. A bad value raises :class:`SettingsError`
with what was wrong, what is accepted and what to do.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import tomllib

from energybench.catalog import (
    ALL_PRECISIONS,
    CUSTOM_MODEL,
    DEFAULT_ACCURACY_BUDGET_PP,
    DEFAULT_BATCH_SIZE,
    DEFAULT_PERPLEXITY_BUDGET_PCT,
    DEFAULT_SEQ_LEN,
    METERED_METRICS,
    METERS,
    MIXED,
    OPTION_BY_DEST,
    PPL_PROTOCOLS,
    PRECISION_GROUPS,
    SELECTABLE_METRICS,
)
from energybench.errors import UsageError
from energybench.models.registry import REGISTRY

METRICS = SELECTABLE_METRICS  # what --metric accepts
# [tool.energybench]
__all__ = ["METERED_METRICS", "METRICS", "Settings", "SettingsError", "parse"]


def default(dest: str) -> Any:
    """The catalog's default of an option (one place for every default)."""
    return OPTION_BY_DEST[dest].default


class SettingsError(UsageError):
    pass


# The Settings field each option fills, where it is not the option's own dest (a test checks
# that every option in the catalog reaches Settings, so an option added there cannot be dropped here).
SETTING_OF = {
    "model": "models",
    "precision": "precisions",
    "metric": "metrics",
    "backend": "backends",
    "batch_size": "batch_sizes",
    "seq_len": "seq_lens",
    "accuracy_budget": "accuracy_budget_pp",
    "perplexity_budget": "perplexity_budget_pct",
    "energy_budget": "energy_budget_ratio",
    "flips_budget": "flips_budget_pp",
    "kl_budget": "output_kl_budget_nats",
    "no_save": "save",
}


@dataclass(frozen=True)
class Settings:
    """Every option, parsed: no field has a default of its own; :func:`parse` fills each from the
    command line, the ini file or the catalog's default (``energybench.catalog.OPTIONS``)."""

    models: tuple[str, ...]
    precisions: tuple[str, ...]
    metrics: tuple[str, ...]
    named_metrics: tuple[str, ...]  # the metrics --metric names itself (not through 'all')
    backends: tuple[str, ...]
    device: str
    model_source: str
    model_path: Path | None
    task: str | None
    batch_sizes: tuple[int, ...]  # --batch-size as given; () unset: each metric's default
    seq_lens: tuple[int, ...]  # --seq-len as given; () unset: each metric's default
    batch_size: int  # the largest --batch-size (evaluation, layer study, users' own benchmarks)
    seq_len: int  # the first --seq-len
    gen_tokens: int
    max_samples: int | None
    rounds: int
    blocks: int
    warmup_rounds: int
    ppl_context: int | None
    ppl_stride: int | None
    ppl_protocol: str  # catalog.PPL_PROTOCOLS
    accuracy_budget_pp: dict[str, float]
    perplexity_budget_pct: dict[str, float]
    reports_dir: Path
    meters: tuple[str, ...] | str
    energy_min_s: float | None  # None: derived from the sensor's update period
    energy_min_calls: int
    idle_s: float
    country: str
    region: str | None
    impact_samples: int | None  # None: energybench.layers.study.DEFAULT_IMPACT_SAMPLES
    energy_budget_ratio: dict[str, float]
    flips_budget_pp: dict[str, float]  # behaviour budgets: absolute, fp32 against itself is 0
    output_kl_budget_nats: dict[str, float]
    compare: str | None  # the reference as given: run id, path, latest or baseline name
    compare_path: Path | None  # what it resolved to when the session started
    fail_on: str | None
    save_baseline: str | None
    save: bool
    report: bool

    def budget_for(self, metric: str, model: str, precision: str) -> float | None:
        table = {
            "accuracy": self.accuracy_budget_pp,
            "perplexity": self.perplexity_budget_pct,
            "energy": self.energy_budget_ratio,
            "flips": self.flips_budget_pp,
            "output-kl": self.output_kl_budget_nats,
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
    option: str,
    raw: str,
    accepted: tuple[str, ...],
    all_means: tuple[str, ...] | None = None,
    groups: dict[str, tuple[str, ...]] | None = None,
) -> tuple[str, ...]:
    """Comma-separated names; ``all`` (or another group name) stands for its members."""
    groups = {**({"all": all_means} if all_means is not None else {}), **(groups or {})}
    names = tuple(n.strip() for n in str(raw).split(",") if n.strip())
    names = tuple(dict.fromkeys(n for name in names for n in groups.get(name, (name,))))
    unknown = [n for n in names if n not in accepted]
    if unknown or not names:
        extra = "".join(f", {group}" for group in groups)
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


def positive_ints(option: str, raw: Any) -> tuple[int, ...]:
    """A comma-separated list of whole numbers >= 1 (duplicates dropped); () when not given."""
    if raw is None or str(raw).strip() == "":
        return ()
    parts = [part.strip() for part in str(raw).split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise SettingsError(
            f"{option}: {raw!r} is not a list of positive integers; give whole numbers >= 1, comma-separated, "
            "e.g. 1,8,32"
        )
    return tuple(dict.fromkeys(int(part) for part in parts))


def option_value(raw: dict[str, Any], dest: str) -> Any:
    """One option parsed by its catalog kind, the catalog's default where it is not given."""
    option = OPTION_BY_DEST[dest]
    flag, given = f"--{option.name}", raw.get(dest) or option.default
    if option.kind == "names":
        return choice_list(flag, given, option.choices, all_means=option.choices)
    if option.kind == "choice":
        return choice_list(flag, given, option.choices)[0] if given else None
    if option.kind in ("int", "optional-int"):
        return positive_int(flag, given, allow_none=option.kind == "optional-int")
    if option.kind == "ints":
        return positive_ints(flag, given)
    if option.kind == "seconds":
        return positive_float(flag, raw.get(dest), option.default)  # type: ignore[arg-type]
    if option.kind == "flag":
        return bool(given)
    return given or None  # text, path and spec: their own checks follow


def named_metrics(raw: Any) -> tuple[str, ...]:
    """The metrics --metric names one by one ('all' names none of them)."""
    return tuple(n.strip() for n in str(raw or "").split(",") if n.strip() in METRICS)


def timing_blocks(raw: dict[str, Any]) -> int:
    """--blocks: at most --rounds (each block needs a timed round)."""
    blocks = positive_int("--blocks", raw.get("blocks") or default("blocks"))
    rounds = positive_int("--rounds", raw.get("rounds") or default("rounds"))
    if blocks > rounds:
        raise SettingsError(
            f"--blocks {blocks} exceeds --rounds {rounds}: each block needs a round; give --blocks <= --rounds"
        )
    return blocks


def positive_float(option: str, raw: Any, default: float | None) -> float | None:
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(str(raw))
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise SettingsError(f"{option}: {raw!r} is not a positive number of seconds; give a finite number > 0, e.g. 5")
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
    known = codecarbon_countries()
    if known and text.upper() not in known:
        raise SettingsError(
            f"--country: {text!r} is not a country CodeCarbon has a grid carbon intensity for "
            f"(its global_energy_mix.json lists {len(known)} ISO 3166 alpha-3 codes, e.g. USA, FRA, DEU, IND); "
            "give one of those, or CO2 would be the world average labelled as your country"
        )
    return text.upper()


def codecarbon_countries() -> frozenset[str]:
    """The ISO codes CodeCarbon's shipped energy mix knows; empty when CodeCarbon is not installed
    (then no CO2 is computed from the country, so there is nothing to mislabel)."""
    spec = find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    for folder in spec.submodule_search_locations:
        mix = Path(folder) / "data" / "private_infra" / "global_energy_mix.json"
        if mix.is_file():
            return frozenset(json.loads(mix.read_text(encoding="utf-8")))
    return frozenset()


def budget_table(
    option: str, raw: str | dict | None, default: dict[str, float], models: tuple[str, ...] = ()
) -> dict[str, float]:
    """``int8=1.0,gpt2/fp16=0.5`` (or a TOML table) -> {key: limit}, merged over ``default``."""
    table = dict(default)
    if raw is None or raw == "":
        return table
    if not isinstance(raw, (str, dict)):
        raise SettingsError(
            f"{option}: {raw!r} is a {type(raw).__name__}, not a table; write it as a table of "
            "<precision> or <model>/<precision> = <limit>, e.g. { int8 = 1.0, fp16 = 0.3 }"
        )
    items = raw.items() if isinstance(raw, dict) else (p.split("=", 1) for p in str(raw).split(",") if "=" in p)
    for key, value in items:
        model, _, precision = str(key).strip().rpartition("/")
        limit = budget_limit(value)
        if precision not in ALL_PRECISIONS or limit is None:
            raise SettingsError(
                f"{option}: bad entry {key}={value}; expected <precision>=<limit> or <model>/<precision>=<limit> "
                f"with precision in {', '.join(ALL_PRECISIONS)} and a finite limit >= 0"
            )
        known = dict.fromkeys((*REGISTRY, *models, CUSTOM_MODEL))
        if model and model not in known:
            accepted = ", ".join(known)
            raise SettingsError(f"{option}: bad entry {key}={value}: unknown model {model!r}; accepted: {accepted}")
        table[str(key).strip()] = limit
    if isinstance(raw, str) and any("=" not in p for p in raw.split(",") if p.strip()):
        raise SettingsError(f"{option}: {raw!r} is not a list of <precision>=<limit>, e.g. int8=1.0,fp16=0.3")
    return table


def budget_limit(value: Any) -> float | None:
    """A budget's limit as a finite number >= 0, or None (booleans and nan/inf are not limits)."""
    if isinstance(value, bool):
        return None
    try:
        limit = float(value)
    except (TypeError, ValueError):
        return None
    return limit if math.isfinite(limit) and limit >= 0 else None


def pyproject_table(rootdir: Path) -> dict[str, Any]:
    path = Path(rootdir) / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("energybench", {})
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: [tool.energybench] is not valid TOML ({error})") from error
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: tool.energybench is not a table; accepted keys: {', '.join(BUDGET_KEYS)}")
    unknown = sorted(set(table) - set(BUDGET_KEYS))
    if unknown:
        raise SettingsError(
            f"{path}: unknown key(s) in [tool.energybench]: {', '.join(unknown)}; accepted: {', '.join(BUDGET_KEYS)} "
            "(every other setting is an option with an ini twin: `energybench options` lists them)"
        )
    return table


BUDGETS = (  # Settings field, option, [tool.energybench] key (the same), built-in default
    ("accuracy_budget_pp", "--accuracy-budget", DEFAULT_ACCURACY_BUDGET_PP),
    ("perplexity_budget_pct", "--perplexity-budget", DEFAULT_PERPLEXITY_BUDGET_PCT),
    ("energy_budget_ratio", "--energy-budget", {}),
    ("flips_budget_pp", "--flips-budget", {}),
    ("output_kl_budget_nats", "--kl-budget", {}),
)
BUDGET_KEYS = tuple(field for field, _, _ in BUDGETS)  # what [tool.energybench] accepts


def budget_settings(raw: dict[str, Any], tool: dict[str, Any], models: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The quality, behaviour and energy budgets: the command line over ``[tool.energybench]`` over the built-ins."""
    tables = {}
    for field, option, builtin in BUDGETS:
        ini = budget_table(f"[tool.energybench] {field}", tool.get(field), builtin, models)
        tables[field] = budget_table(option, raw.get(option[2:].replace("-", "_")), ini, models)
    return tables


def checkpoint_name(model_path: Path) -> str:
    """A --model-path checkpoint's model name: its folder's name (as the marker names one), lower-case,
    with what is not a letter, digit, '.', '_' or '-' made '-'; ``custom`` when nothing is left."""
    name = re.sub(r"[^a-z0-9._-]+", "-", model_path.resolve().name.lower()).strip("-.")
    return name or CUSTOM_MODEL


def model_names(raw: dict[str, Any], model_path: Path | None) -> tuple[str, ...]:
    """--model, or for a --model-path checkpoint its folder's name; a folder named like a registered
    model is refused (its records would pass for that model's) unless --model says so."""
    if model_path and not raw.get("model"):
        name = checkpoint_name(model_path)
        if name in REGISTRY:
            raise SettingsError(
                f"--model-path {model_path}: the folder name {name!r} is a registered model, so its records would "
                f"pass for the registered {name}; rename the folder, or pass --model {name} to say it is your "
                f"checkpoint of {name}"
            )
        return (name,)
    accepted = (*REGISTRY, CUSTOM_MODEL) if model_path else tuple(REGISTRY)
    return choice_list("--model", raw.get("model") or default("model"), accepted, all_means=tuple(REGISTRY))


def parse(raw: dict[str, Any], rootdir: Path) -> Settings:
    """Build Settings from already-merged raw option values (cli over ini)."""
    tool = pyproject_table(rootdir)
    model_path = Path(raw["model_path"]).expanduser() if raw.get("model_path") else None
    models = model_names(raw, model_path)
    if model_path and len(models) != 1:
        raise SettingsError(f"--model-path applies to one model; got --model {','.join(models)}; name one model")
    source = "path" if model_path else option_value(raw, "model_source")
    if source == "path" and not model_path:
        raise SettingsError("--model-source path needs --model-path DIR (a save_pretrained folder)")
    task = option_value(raw, "task")
    reports = Path(raw.get("reports_dir") or default("reports_dir"))
    reports = reports if reports.is_absolute() else Path(rootdir) / reports
    return Settings(
        models=models,
        precisions=choice_list(
            "--precision", raw.get("precision") or default("precision"), ALL_PRECISIONS, groups=PRECISION_GROUPS
        ),
        metrics=option_value(raw, "metric"),
        named_metrics=named_metrics(raw.get("metric")),
        backends=option_value(raw, "backend"),
        device=option_value(raw, "device"),
        model_source=source,
        model_path=model_path,
        task=task,
        batch_sizes=option_value(raw, "batch_size"),
        seq_lens=option_value(raw, "seq_len"),
        batch_size=max(option_value(raw, "batch_size") or (DEFAULT_BATCH_SIZE,)),
        seq_len=(option_value(raw, "seq_len") or (DEFAULT_SEQ_LEN,))[0],
        gen_tokens=option_value(raw, "gen_tokens"),
        max_samples=option_value(raw, "max_samples"),
        rounds=option_value(raw, "rounds"),
        blocks=timing_blocks(raw),
        warmup_rounds=option_value(raw, "warmup_rounds"),
        ppl_context=option_value(raw, "ppl_context"),
        ppl_stride=option_value(raw, "ppl_stride"),
        ppl_protocol=ppl_protocol(raw),
        reports_dir=writable_reports_dir(reports) if not raw.get("no_save") else reports,
        meters=meter_choice(raw.get("meters")),
        energy_min_s=option_value(raw, "energy_min_s"),
        energy_min_calls=option_value(raw, "energy_min_calls"),
        idle_s=option_value(raw, "idle_s"),
        country=country_code(raw.get("country")),
        region=option_value(raw, "region"),
        impact_samples=option_value(raw, "impact_samples"),
        **budget_settings(raw, tool, models),
        save=not option_value(raw, "no_save"),
        report=option_value(raw, "report"),
        **gate_settings(raw, reports),
    )


def ppl_protocol(raw: dict[str, Any]) -> str:
    """--ppl-protocol; non-overlapping windows have no stride of their own (it is the context)."""
    protocol = choice_list("--ppl-protocol", raw.get("ppl_protocol") or default("ppl_protocol"), PPL_PROTOCOLS)[0]
    if protocol == "non-overlapping" and raw.get("ppl_stride"):
        raise SettingsError(
            "--ppl-stride applies to --ppl-protocol strided; non-overlapping windows step by their context "
            "(--ppl-context): drop --ppl-stride or use --ppl-protocol strided"
        )
    return protocol


def gate_settings(raw: dict[str, Any], reports: Path) -> dict[str, Any]:
    """--compare / --fail-on / --save-baseline, checked before anything runs (the reference is
    resolved now, so ``latest`` means the newest run before this session)."""
    from energybench.results.compare import CompareError, parse_fail_on  # deferred: heavy
    from energybench.results.schema import SchemaError  # deferred: heavy
    from energybench.results.store import RunNotFound, check_baseline_name, load_run, resolve_ref  # deferred: heavy

    ref, fail_on, baseline = raw.get("compare"), raw.get("fail_on"), raw.get("save_baseline")
    try:
        if fail_on is not None and not parse_fail_on(fail_on, strict=False):
            raise CompareError(f"--fail-on {fail_on!r} names no limit; give e.g. latency:+10%,accuracy:-0.5pp")
        if baseline:
            check_baseline_name(baseline)
        path = resolve_ref(ref, reports) if ref else None
        if path is not None:
            load_run(path)  # a corrupt or foreign reference stops the session now, not after measuring
    except (CompareError, RunNotFound) as error:
        raise SettingsError(str(error)) from None
    except SchemaError as error:
        raise SettingsError(f"--compare {ref}: {error}; give a saved run, run id, baseline name or latest") from None
    except ValueError as error:
        raise SettingsError(f"--save-baseline: {error}") from None
    if fail_on and not ref:
        raise SettingsError("--fail-on needs --compare <run id | latest | baseline name> to compare against")
    if baseline and raw.get("no_save"):
        raise SettingsError(f"--save-baseline {baseline} with --no-save: a baseline is a saved run; drop one of them")
    return {"compare": ref, "compare_path": path, "fail_on": fail_on, "save_baseline": baseline}


def writable_reports_dir(reports: Path) -> Path:
    """Check before anything is measured that runs can be saved under ``reports``: it (or the folder
    it would be created in) is a directory this process can write. Nothing is left behind."""
    existing = reports
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fix = "give --reports-dir a folder you can write, or pass --no-save"
    if not existing.is_dir():
        raise SettingsError(f"--reports-dir {reports}: {existing} is not a directory; {fix}")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".energybench-probe-"):
            pass
    except OSError as error:
        raise SettingsError(f"--reports-dir {reports}: cannot write in {existing} ({error.strerror}); {fix}") from None
    return reports
