"""Peak memory in isolation: a fresh spawned process loads only the converted model and runs one forward.

The parent saves the converted model (the ``.onnx`` file ONNX Runtime runs, or the pickled PyTorch
module) and the input batch; the child (``multiprocessing`` spawn: no memory shared with the
benchmark process) imports what unpickling needs, reads its RSS (the baseline), loads the model
(RSS again: the weights), resets the high-water mark (``/proc/self/clear_refs`` = 5, Linux >= 4.0)
and runs the forward pass (VmHWM: the peak; above the loaded RSS: the activations). This is
optimum-benchmark's process-launcher approach; the session's own history (loaded source model,
earlier precisions, allocator reuse) cannot leak into the figure.
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
CHILD_TIMEOUT_S = 600.0
METHOD = (
    "fresh spawned process: VmRSS before and after loading the converted model (weights), VmHWM reset "
    "(clear_refs=5) then read after one forward pass (peak); activations = peak - loaded"
)


def status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} is not in /proc/self/status")


def unavailable_reason(model: Any, device: torch.device) -> str | None:
    if device.type != "cpu":
        return "isolated peak is measured as CPU RSS; on CUDA the in-process allocator peak is the figure"
    if not sys.platform.startswith("linux") or not CLEAR_REFS.exists():
        return "isolated peak needs Linux /proc/self/clear_refs to reset the high-water mark"
    if hasattr(model, "compile_s"):
        return "a torch.compile'd model cannot be reloaded in a fresh process without compiling again (minutes)"
    return None


def measure(model: Any, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, Any]:
    """Peak, weights and activations in bytes, measured in a fresh process; or ``{"reason": ...}``."""
    reason = unavailable_reason(model, device)
    if reason:
        return {"reason": reason}
    with tempfile.TemporaryDirectory(prefix="energybench-isolated-") as folder:
        try:
            kind, path, modules = save_artifact(model, Path(folder))
        except Exception as error:  # a model torch.save cannot pickle: say so, the in-process figure stands
            return {"reason": f"the converted model could not be saved for a fresh process ({type(error).__name__})"}
        inputs = Path(folder) / "batch.pt"
        torch.save({k: v.cpu() for k, v in batch.items()}, inputs)
        return run_child(kind, str(path), str(inputs), modules)


def save_artifact(model: Any, folder: Path) -> tuple[str, Path, list[str]]:
    """(kind, path, modules to import before the baseline) of the converted model saved in ``folder``."""
    if hasattr(model, "session"):  # energybench.models.backends.OrtModel: the file it runs
        return "onnxruntime", model.path, ["onnxruntime"]
    path = folder / "model.pt"
    torch.save(model, path)
    modules = {type(m).__module__ for m in model.modules()}
    modules |= {type(t).__module__ for t in model.state_dict().values() if isinstance(t, torch.Tensor)}
    return "torch", path, sorted(modules)


def run_child(kind: str, path: str, inputs: str, modules: list[str]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=child, args=(kind, path, inputs, modules, torch.get_num_threads(), queue))
    process.start()
    try:
        result = queue.get(timeout=CHILD_TIMEOUT_S)
    except Exception:  # the child died (out of memory, a crash) or hung
        result = {"reason": f"the fresh process ended without a result (exit code {process.exitcode})"}
    process.join(timeout=30)
    if process.is_alive():
        process.kill()
    return result


def child(kind: str, path: str, inputs: str, modules: list[str], threads: int, queue: Any) -> None:
    """In the fresh process: baseline, load, reset the high-water mark, forward, report."""
    try:
        queue.put(measure_here(kind, path, inputs, modules, threads))
    except Exception as error:
        queue.put({"reason": f"the fresh process failed: {type(error).__name__}: {str(error)[:200]}"})


def measure_here(kind: str, path: str, inputs: str, modules: list[str], threads: int) -> dict[str, Any]:

    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    for name in modules:  # imported before the baseline: code is not the model's weights
        importlib.import_module(name)
    batch = torch.load(inputs)
    gc.collect()
    base = status_kib("VmRSS")
    run = load(kind, path, batch)
    gc.collect()
    loaded = status_kib("VmRSS")
    CLEAR_REFS.write_text("5")
    with torch.inference_mode():
        run()
    peak = status_kib("VmHWM")
    return {
        "peak_bytes": (peak - base) * 1024,
        "weights_bytes": (loaded - base) * 1024,
        "activations_bytes": (peak - loaded) * 1024,
        "process_base_bytes": base * 1024,
        "method": METHOD,
    }


def load(kind: str, path: str, batch: dict[str, torch.Tensor]) -> Any:
    if kind == "onnxruntime":
        import onnxruntime as ort  # deferred: optional

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feed = {k: v.numpy() for k, v in batch.items() if k in names}
        return lambda: session.run(None, feed)
    model = torch.load(path, weights_only=False).eval()
    return lambda: model(**batch)
