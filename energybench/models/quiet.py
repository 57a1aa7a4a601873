"""Silence transformers while energybench loads, saves and tokenizes (it reports its own progress)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info logs and progress bars (loading, saving, long-text notices).

    energybench reports its own progress; these would otherwise interleave with pytest's output.
    """
    from transformers.utils import logging as hf_logging  # deferred: heavy

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
