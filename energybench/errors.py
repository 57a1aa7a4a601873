"""One error hierarchy: what the user can fix (UsageError) and what is wrong with data (DataError).

The pytest plugin turns a UsageError into ``pytest.UsageError`` and the CLI into one line on
stderr with exit status 2; anything else is a bug and keeps its traceback. Each message says
what was wrong, what is accepted and what to do.
"""

from __future__ import annotations


class EnergybenchError(Exception):
    """The base of every error energybench raises on purpose."""


class UsageError(EnergybenchError, ValueError):
    """A bad setting, name, source, meter, reference or file argument: the user can fix the input."""


class DataError(EnergybenchError, ValueError):
    """A saved run, baseline or shipped data file that is corrupt, of an unknown schema or mismatched."""


class Unsupported(EnergybenchError):
    """A combination this machine cannot run (a precision on a device): a skip with the reason, not a failure."""
