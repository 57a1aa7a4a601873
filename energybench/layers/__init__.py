"""Stage 3: the layer study: per-unit timing and energy, prediction impact, correlation, mixed plan.

``units`` (hooks and unit rules), ``ablation`` (impact), ``correlate``, ``plan`` (the mixed
precision plan) and ``study`` (one session's study, computed once).
"""

from energybench.layers.units import extend_mapping

__all__ = ["extend_mapping"]
