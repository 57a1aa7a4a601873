"""The ``energybench`` marker's keyword form: ``@pytest.mark.energybench(models=[...], precisions=[...])``
parametrizes a user's own benchmark over model x precision like the built-in suite (whose tests
name one metric: ``@pytest.mark.energybench("latency")``, cased by the session)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from energybench.catalog import ALL_PRECISIONS
from energybench.harness.options import SettingsError
from energybench.harness.session import BenchSession, CaseSpec
from energybench.models.registry import REGISTRY, ModelSourceError, resolve_path

MARKER_KEYWORDS = ("models", "precisions")


@dataclasses.dataclass(frozen=True)
class UserCase(CaseSpec):
    """A case of a user's own benchmark: ``metric`` is the test function's name (a failed or
    skipped test is recorded under it); the metrics it records are its own."""


def is_checkpoint_path(entry: str) -> bool:
    return entry.startswith((".", "/", "~")) or "/" in entry or "\\" in entry


def user_cases(session: BenchSession, test_name: str, marker_kwargs: dict[str, Any], rootdir: Path) -> list[UserCase]:
    """model x precision cases of ``@pytest.mark.energybench(models=..., precisions=...)``.

    What the marker names wins over --model / --precision (marker > command line > ini); what it
    leaves out comes from them. A path is a local checkpoint, checked now like --model-path.
    Raises SettingsError with the line to show."""
    unknown = sorted(set(marker_kwargs) - set(MARKER_KEYWORDS))
    if unknown:
        raise SettingsError(f"unknown marker keyword {', '.join(unknown)}; accepted: {', '.join(MARKER_KEYWORDS)}")
    models = [marker_model(session, entry, rootdir) for entry in names(marker_kwargs, "models")]
    precisions = names(marker_kwargs, "precisions")
    for precision in precisions:
        if precision not in ALL_PRECISIONS:
            raise SettingsError(f"precision {precision!r}: unknown; accepted: {', '.join(ALL_PRECISIONS)}")
    models = models or list(session.settings.models)
    precisions = precisions or list(session.settings.precisions)
    return [UserCase(model, precision, test_name) for model in models for precision in precisions]


def names(marker_kwargs: dict[str, Any], key: str) -> list[str]:
    value = marker_kwargs.get(key)
    if value is None:
        return []
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{key}= must be a list of names, e.g. {key}=[{ALL_PRECISIONS[0]!r}]; got {value!r}")
    return list(value)


def marker_model(session: BenchSession, entry: str, rootdir: Path) -> str:
    """A registered model's name, or a checkpoint folder (resolved and checked now) named by its folder."""
    if not is_checkpoint_path(entry):
        if entry not in REGISTRY:
            raise SettingsError(
                f"model {entry!r}: unknown; accepted: {', '.join(REGISTRY)} or a checkpoint folder path ('./my-model')"
            )
        return entry
    path = Path(entry).expanduser()
    path = path if path.is_absolute() else rootdir / path
    name = path.name
    known = session.sources.get(name)
    if name in REGISTRY or (known is not None and known.checkpoint != str(path.resolve())):
        where = known.checkpoint if known else "a registered model"
        raise SettingsError(f"model {entry!r}: {name!r} already names {where}; rename the folder")
    if known is None:
        try:
            session.sources[name] = resolve_path(name, path, session.settings.task)
        except ModelSourceError as error:
            raise SettingsError(str(error).replace("--model-path", "models=", 1)) from None
    return name


def activate_user_models(session: BenchSession, models: set[str]) -> None:
    """Resolve the registered models the markers name beyond --model (after the session's own)."""
    try:
        for model in sorted(models):
            session.add_model(model)
    except ModelSourceError as error:
        raise SettingsError(str(error)) from error
