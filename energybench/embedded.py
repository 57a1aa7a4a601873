"""Compatibility alias: ``energybench.embedded`` is :mod:`energybench.models.embedded` (one module)."""

import sys

from energybench.models import embedded as _moved

sys.modules[__name__] = _moved
