"""Describes where a run came from: the machine fingerprint and the commit of the code."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    """What makes two runs comparable: hardware, threads and library versions."""
    import torch  # deferred: heavy
    import transformers  # deferred: heavy

    info: dict[str, Any] = {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "device": device,
        "gpu": None,
        "gpu_driver": None,
        "cuda": torch.version.cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_driver"] = nvidia_driver_version()
    info["fingerprint"] = fingerprint(info)
    return info


def fingerprint(info: dict[str, Any]) -> str:
    """A short, stable identity of the hardware and software stack (not the host name)."""
    keys = (
        "system",
        "machine",
        "cpu",
        "cpu_count",
        "torch_threads",
        "torch",
        "transformers",
        "device",
        "gpu",
    )
    text = "|".join(f"{k}={info.get(k)}" for k in keys)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def nvidia_driver_version() -> str | None:
    try:
        import pynvml  # deferred: optional

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else version
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - optional probe, any failure means "unknown"
        return None


def commit_info(path: Path) -> dict[str, Any]:
    """The git commit of the code under test, or why there is none."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        return {
            "id": git("rev-parse", "HEAD"),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "time": git("log", "-1", "--format=%cI"),
        }
    except (OSError, subprocess.SubprocessError) as error:
        return {"id": None, "reason": f"not a git checkout or git unavailable ({type(error).__name__})"}
