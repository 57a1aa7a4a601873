"""The GPU verification's Python half: one suite invocation for the script and the workflow, and
the summary it prints from saved runs (NVML cross-check per window, speedups over fp32)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from energybench.measure.energy import truth_check
from energybench.measure.meters import Reading
from energybench.measure.meters.nvml import cross_check
from energybench.results.schema import Record, Run, TimingStats
from energybench.results.store import save_run
from energybench.results.summary import note

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import gpu_verify  # noqa: E402  (tools/ is not a package)


def test_the_gpu_suite_runs_every_gpu_precision_with_nvml_and_judged_energy_windows():
    speed = gpu_verify.suite_args("speed", "cuda")
    assert speed[:5] == ["benchmarks", "--model", "distilbert,gpt2", "--precision", "gpu"]
    assert ["--device", "cuda"] == speed[5:7] and ["--meters", "nvml"] == speed[speed.index("--meters") :][:2]
    assert float(speed[speed.index("--energy-min-s") + 1]) >= 5.0  # the NVML cross-check judges >= 5 s
    assert "shape-only" in speed and "latency,throughput,memory,size,energy" in speed
    quality = gpu_verify.suite_args("quality", "cuda", quick=True)
    assert "embedded" in quality and "accuracy,perplexity" in quality and "--max-samples" in quality


def test_the_dry_run_is_the_same_suite_on_the_cpu_without_meters():
    dry = gpu_verify.suite_args("speed", "cpu")
    assert ["--device", "cpu"] == dry[5:7] and "nvml" not in dry and dry[dry.index("--meters") + 1] == "none"
    with pytest.raises(ValueError, match="unknown step 'energy'; accepted: quality, speed"):
        gpu_verify.suite_args("energy")


def test_the_workflow_and_the_script_take_the_suite_from_the_same_place():
    workflow = (ROOT / ".github" / "workflows" / "gpu-benchmarks.yml").read_text()
    script = (ROOT / "tools" / "gpu_verify.sh").read_text()
    assert "for step in quality speed; do" in workflow
    assert 'tools/gpu_verify.py args "$step" --device cuda' in workflow
    assert "pytest benchmarks" not in workflow  # no second, hand-written invocation
    for step in ("quality", "speed"):
        assert f'tools/gpu_verify.py args {step} --device "$DEVICE"' in script


def test_the_script_refuses_bad_arguments_with_one_line(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_verify.sh"), str(tmp_path), "--device", "tpu"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.strip() == "gpu_verify.sh: --device tpu: accepted: cpu, cuda"


def nvml_reading(counter_j: float, sampled_j: float, window_s: float, flags: list[str]) -> Reading:
    check = cross_check(counter_j, sampled_j, window_s, "instant", 280)
    details = {"cross_check": check, "flags": flags + ([check["reason"]] if check["verdict"] == "unstable" else [])}
    return Reading("nvml", "gpu:0 NVIDIA H100 80GB HBM3", "measured", counter_j, window_s, 2, None, details)


def energy_record(model: str, precision: str, reading: Reading, joules_per_item: float) -> Record:
    details = {"implementation": "torch float32", **truth_check(reading)}
    method = f"measured: nvml on {reading.device}, {reading.duration_s:.2f} s window"
    return Record(
        model, precision, "energy", joules_per_item, "J/sample", method=method, details=details, basis="measured"
    )


def timed_record(model: str, precision: str, metric: str, seconds: float, batch: int) -> Record:
    timing = TimingStats.from_rounds([seconds * (1 + k / 100) for k in (-1, 0, 0, 1)])
    value, unit = (timing.median_s, "s") if metric == "latency" else (batch / timing.median_s, "samples/s")
    shape = {"batch_size": batch, "seq_len": 128}
    return Record(model, precision, metric, value, unit, timing=timing, shape=shape, device="cuda:0")


def test_an_energy_record_keeps_both_numbers_and_is_unstable_when_they_disagree():
    agrees = energy_record("distilbert", "fp32", nvml_reading(1800.0, 1830.0, 6.0, []), 0.01)
    assert agrees.details["cross_check"]["verdict"] == "agrees" and agrees.unstable is None
    clocks = ["sm_clock_mhz changed in the window: 1980 -> 1755"]
    apart = energy_record("distilbert", "fp16", nvml_reading(1000.0, 1080.0, 6.0, clocks), 0.005)
    assert apart.unstable.startswith("unstable: integrated instant power gives 1080.0 J, the energy counter 1000.0 J")
    assert apart.details["flags"] == clocks  # the disagreement is the unstable reason, not repeated as a flag
    assert "UNSTABLE (unstable: integrated" in note(apart) and "flagged: sm_clock_mhz changed" in note(apart)


def run_of(records: list[Record], run_id: str) -> Run:
    machine = {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "cuda": "13.0", "fingerprint": "abc123"}
    return Run(run_id, "2026-01-01T00:00:00+00:00", "", "0.1.0", machine, {}, {}, {}, records)


def test_the_summary_prints_the_cross_check_per_window_and_the_speedups_over_fp32(tmp_path, capsys):
    speed = [
        timed_record("distilbert", "fp32", "latency", 0.004, 1),
        timed_record("distilbert", "fp16", "latency", 0.002, 1),
        timed_record("distilbert", "fp32", "throughput", 0.020, 32),
        timed_record("distilbert", "fp16", "throughput", 0.008, 32),
        energy_record("distilbert", "fp32", nvml_reading(1800.0, 1830.0, 6.0, []), 0.010),
        energy_record("distilbert", "fp16", nvml_reading(1000.0, 1080.0, 6.0, []), 0.004),
        Record("distilbert", "fp8-dyn", "latency", None, "", status="skipped", reason="fp8-dyn needs cc >= 8.9"),
    ]
    speed_path = save_run(run_of(speed, "speed"), tmp_path)
    records = tmp_path / "records.csv"
    status = gpu_verify.main(["summary", str(tmp_path / "missing"), str(speed_path), "--records", str(records)])
    out = capsys.readouterr().out
    assert status == 0 and "(no run at " in out and "Machine: NVIDIA H100 80GB HBM3, torch 2.11.0+cu130" in out
    lines = out.splitlines()
    fp32 = next(line for line in lines if line.split()[:2] == ["distilbert", "fp32"] and "agrees" in line)
    assert fp32.split()[2:7] == ["6.00", "1800.0", "1830.0", "1.0167", "280"]
    assert any("fp16" in line and "unstable: integrated instant power" in line for line in lines)
    speedup = next(line for line in lines if line.split()[:2] == ["distilbert", "fp16"] and "x)" in line)
    assert "2.000 ms (2.00x)" in speedup and "8.000 ms (2.50x)" in speedup and "(2.50x)" in speedup
    assert "distilbert fp8-dyn latency: skipped: fp8-dyn needs cc >= 8.9" in out
    assert records.read_text().count("\n") == len(speed) + 1
