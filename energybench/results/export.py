"""``energybench export``: a saved run in the formats of the stores teams already run.

``bencher`` (Bencher Metric Format JSON), ``pytorch-oss`` (the PyTorch OSS benchmark database's v3
records), ``ai-energy-score`` (GPU Wh per 1,000 queries by phase, CSV) and ``csv`` (the run's own
records.csv). Each format's module cites the published documentation it follows; the tests check
the output against the published schema or example kept in tests/formats/.
"""

from __future__ import annotations

from collections.abc import Callable

from energybench.errors import UsageError
from energybench.results.export_bencher import ESTIMATES, to_bencher
from energybench.results.export_energy_score import to_ai_energy_score
from energybench.results.export_pytorch import to_pytorch_oss
from energybench.results.schema import Run
from energybench.results.store import records_csv

Exporter = Callable[[Run], tuple[str, list[str]]]
FORMATS: dict[str, Exporter] = {
    "bencher": to_bencher,
    "pytorch-oss": to_pytorch_oss,
    "ai-energy-score": to_ai_energy_score,
    "csv": lambda run: (records_csv(run.records), []),
}


def export_run(run: Run, fmt: str, estimates: str = "omit") -> tuple[str, list[str]]:
    """The run as text in ``fmt`` and one note per thing left out (for stderr)."""
    if fmt not in FORMATS:
        raise UsageError(f"export format {fmt!r}: accepted {', '.join(FORMATS)}")
    if estimates not in ESTIMATES:
        raise UsageError(f"--estimates {estimates!r}: accepted {', '.join(ESTIMATES)}")
    if run.partial:
        raise UsageError(
            f"run {run.run_id} is partial ({run.partial_reason}): a shared store keeps complete runs; "
            "export a complete run, or rerun the suite"
        )
    if fmt == "bencher":
        return to_bencher(run, estimates)
    return FORMATS[fmt](run)
