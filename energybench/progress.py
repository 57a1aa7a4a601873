"""Progress bars for long steps: shown in a terminal, silent in CI logs and pipes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD")


def interactive(stream: TextIO | None = None) -> bool:
    """True on a terminal outside CI; ENERGYBENCH_PROGRESS=0/1 forces it off/on."""
    forced = os.environ.get("ENERGYBENCH_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not any(os.environ.get(v) for v in CI_VARIABLES)


def progress_bar(iterable: Iterable[Any], *, desc: str, total: int | None = None, unit: str = "it",
                 stream: TextIO | None = None) -> Iterable[Any]:  # fmt: skip
    """``iterable`` wrapped in a tqdm bar when interactive, else returned as is."""
    if not interactive(stream):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=stream or sys.stderr, leave=False,
                dynamic_ncols=True)  # fmt: skip
