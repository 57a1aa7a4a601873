"""Records -> tidy DataFrames -> figures (pure functions) -> one HTML page.

``build_report(run, compare=None, out=None)`` is the entry point (``energybench report``).
"""

from __future__ import annotations

from typing import Any


def build_report(*args: Any, **kwargs: Any) -> Any:
    from energybench.report.build import build_report as build  # deferred: heavy

    return build(*args, **kwargs)
