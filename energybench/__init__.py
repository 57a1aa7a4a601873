"""energybench: what each numeric precision of a transformer costs and saves.

For pandas users: ``run_frame(ref)`` gives one saved run, ``history_frame()`` every saved run,
as one tidy DataFrame (one row per record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from energybench.version import __version__

__all__ = ["__version__", "history_frame", "run_frame"]


def run_frame(ref: str | Path = "latest", reports_dir: str | Path = "reports") -> Any:
    """One run (run id, run folder, ``latest`` or baseline name) as a tidy pandas DataFrame."""
    from energybench.report import tidy  # deferred: heavy
    from energybench.results.store import load_run, resolve_ref  # deferred: heavy

    return tidy.run_frame(load_run(resolve_ref(str(ref), Path(reports_dir))))


def history_frame(reports_dir: str | Path = "reports") -> Any:
    """Every readable run under ``reports_dir`` as one tidy DataFrame (unreadable runs are skipped)."""
    from energybench.report import tidy  # deferred: heavy
    from energybench.results.store import load_runs  # deferred: heavy

    return tidy.history_frame(load_runs(Path(reports_dir))[0])
