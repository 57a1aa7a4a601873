"""Compatibility alias: ``energybench.precision`` is :mod:`energybench.models.precision` (one module)."""

import sys

from energybench.models import precision as _moved

sys.modules[__name__] = _moved
