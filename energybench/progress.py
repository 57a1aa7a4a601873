"""Progress bars for long steps: shown in a terminal, silent in CI logs and pipes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, TextIO

Guard = Callable[[], AbstractContextManager[Any]]  # e.g. "pytest's output capture disabled"
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD")


def interactive(stream: TextIO | None = None) -> bool:
    """True on a terminal outside CI; ENERGYBENCH_PROGRESS=0/1 forces it off/on."""
    forced = os.environ.get("ENERGYBENCH_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not any(os.environ.get(v) for v in CI_VARIABLES)


def progress_bar(
    iterable: Iterable[Any], *, desc: str, total: int | None = None, unit: str = "it", stream: TextIO | None = None
) -> Iterable[Any]:
    """``iterable`` wrapped in a tqdm bar when interactive, else returned as is."""
    if not interactive(stream):
        return iterable
    from tqdm.auto import tqdm  # deferred: heavy

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=stream or sys.stderr, leave=False, dynamic_ncols=True)


class TerminalProgress:
    """What a session reports about long steps: ``progress(message)`` writes a line; ``progress.advance(
    task, done, total)`` moves a bar for that task. Bars are drawn only when :func:`interactive`, so
    CI logs and pipes get the lines alone; ``advance`` says whether a bar is showing.
    """

    def __init__(self, write_line: Callable[[str], None], guard: Guard | None = None, stream: TextIO | None = None):
        self.write_line = write_line
        self.guard = guard or contextlib.nullcontext
        self.stream = stream or sys.__stderr__
        self.bars: dict[str, Any] = {}

    def __call__(self, message: str) -> None:
        with self.guard():
            self.write_line(message)

    def advance(self, task: str, done: int, total: int) -> bool:
        if not interactive(self.stream):
            return False
        from tqdm.auto import tqdm  # deferred: heavy

        with self.guard():
            bar = self.bars.get(task)
            if bar is None:
                bar = self.bars[task] = tqdm(
                    total=total, desc=f"energybench: {task}", file=self.stream, leave=False, dynamic_ncols=True
                )
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
                del self.bars[task]
        return True


def advance(progress: Any, task: str, done: int, total: int) -> bool:
    """Move ``progress``'s bar when it has one (a plain message callback has none)."""
    step = getattr(progress, "advance", None)
    return bool(step and step(task, done, total))


class Prefixed:
    """``progress`` with every message and task name prefixed (``distilbert: step 150/1500 ...``)."""

    def __init__(self, progress: Callable[[str], None], prefix: str):
        self.progress, self.prefix = progress, prefix

    def __call__(self, message: str) -> None:
        self.progress(f"{self.prefix}: {message}")

    def advance(self, task: str, done: int, total: int) -> bool:
        return advance(self.progress, f"{self.prefix}: {task}", done, total)
