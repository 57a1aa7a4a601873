"""A pytest plugin for tools/gate_check.py: an injected slowdown of the forward pass.

With ENERGYBENCH_GATE_SLOWDOWN=F (e.g. 1.5), every forward call sleeps (F - 1) x its own
duration after it returns, so the code under test is F x slower at whatever speed the machine
runs at that moment. Load it with ``-p gate_slowdown`` (tools/ on PYTHONPATH).
"""

from __future__ import annotations

import os
import time

from energybench.measure import workloads

FACTOR = float(os.environ.get("ENERGYBENCH_GATE_SLOWDOWN", "1"))
real_forward_call = workloads.forward_call


def slowed_forward_call(*args, **kwargs):
    run = real_forward_call(*args, **kwargs)

    def slowed() -> None:
        start = time.perf_counter()
        run()
        time.sleep((FACTOR - 1.0) * (time.perf_counter() - start))

    return slowed


if FACTOR != 1.0:
    workloads.forward_call = slowed_forward_call
