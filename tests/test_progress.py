"""Progress: bars in a terminal, plain lines (and no bar) in CI logs and pipes."""

from __future__ import annotations

import io

from energybench.progress import Prefixed, TerminalProgress, advance, interactive, progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_in_ci_or_a_pipe(monkeypatch):
    monkeypatch.delenv("ENERGYBENCH_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "true")
    assert not interactive(FakeTerminal())
    monkeypatch.delenv("CI")
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD"):
        monkeypatch.delenv(name, raising=False)
    assert interactive(FakeTerminal()) and not interactive(io.StringIO())
    items = [1, 2]
    assert progress_bar(items, desc="x", stream=io.StringIO()) is items


def test_terminal_progress_draws_a_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    lines, terminal = [], FakeTerminal()
    progress = Prefixed(TerminalProgress(lines.append, stream=terminal), "distilbert")
    assert advance(progress, "training", 5, 10) and "energybench: distilbert: training" in terminal.getvalue()
    assert advance(progress, "training", 10, 10)
    progress("built")
    assert lines == ["distilbert: built"]
    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "0")
    assert not advance(progress, "training", 1, 10)
    assert not advance(lines.append, "training", 1, 10)  # a plain callback has no bar
