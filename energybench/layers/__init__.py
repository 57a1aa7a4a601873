"""Stage 3: the layer study: per-unit timing and energy, prediction impact, correlation, mixed plan.

``units`` (hooks and unit rules), ``ablation`` (impact), ``correlate``, ``plan`` (the mixed
precision plan), ``study`` (one session's study, computed once), ``rows`` (its typed results)
and ``flatten`` (those results as table rows for the CSVs and the report).
"""

from __future__ import annotations


def extend_mapping(model_type: str, extra: list[tuple[str, str, str]]) -> None:
    """Add layer-type rules for an architecture (see ``energybench.layers.units.extend_mapping``)."""
    from energybench.layers.units import extend_mapping as extend  # deferred: heavy (torch)

    extend(model_type, extra)


__all__ = ["extend_mapping"]
