"""Check: the report of a full run renders in <= 30 s (figures as PNG at 300 DPI + SVG, and the page).

    python tools/report_timing.py [RUN] [--compare RUN] [--reports-dir reports] [--repeat 3]

Builds the report of RUN (a run folder, a run id or 'latest') into a temporary folder, REPEAT
times, and prints the figure count, the page size and the median wall time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from energybench.report.build import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="latest")
    parser.add_argument("--compare", default=None)
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    seconds = []
    with tempfile.TemporaryDirectory() as scratch:
        for n in range(args.repeat):
            out = Path(scratch) / f"report-{n}"
            start = time.perf_counter()
            build_report(args.run, compare=args.compare, out=out, reports_dir=args.reports_dir)
            seconds.append(time.perf_counter() - start)
            figures = len(list(out.glob("*.png")))
            size_mib = (out / "index.html").stat().st_size / 2**20
            print(f"build {n + 1}: {seconds[-1]:.1f} s, {figures} figures (PNG + SVG), index.html {size_mib:.1f} MiB")
    print(f"median {statistics.median(seconds):.1f} s over {len(seconds)} builds (target <= 30 s)")


if __name__ == "__main__":
    main()
