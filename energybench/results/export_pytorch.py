"""A run as PyTorch OSS benchmark database records (the v3 format that vLLM, torchao and
ExecuTorch upload to ``benchmark.oss_ci_benchmark_v3``).

The format: "a list of metrics", each ``{benchmark, model, metric, runners, dependencies, inputs}``
with only ``benchmark.name``, ``model.name`` and ``metric.name`` / ``metric.benchmark_values``
required, as documented at https://github.com/pytorch/pytorch/wiki/PyTorch-OSS-benchmark-infra
("Benchmark results format"), and typed by the table's schema,
https://github.com/pytorch/test-infra/blob/main/clickhouse_db_schema/oss_ci_benchmark_v3/schema.sql
(kept in tests/formats/pytorch-oss-benchmark-v3.schema.sql). Every ``extra_info`` there is a
``Map(String, String)``, so its values are written as strings; ``benchmark_values`` is
``Array(Float32)``: here the record's timed rounds in its own unit, or its one value. The commit,
branch, workflow and job fields are filled by test-infra's upload action from the CI run, not here.

Energy estimates are kept, marked ``extra_info.basis = estimated`` and ``gated = false``: a
database keeps them; a regression alert built on it should read those two fields.
"""

from __future__ import annotations

import json
from typing import Any

from energybench.results.export_fields import exported, is_estimate, record_machine, round_values, shape_name
from energybench.results.schema import Record, Run
from energybench.version import __version__

BENCHMARK_NAME = "energybench"
REPO = "energybench"


def strings(values: dict[str, Any]) -> dict[str, str]:
    """An ``extra_info`` map: Map(String, String), without the fields that are not there."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items() if v is not None}


def runner(machine: dict[str, Any]) -> dict[str, Any]:
    """The schema's runner tuple (name, type, cpu_info, cpu_count, gpu_info, gpu_count, extra_info)."""
    gpu = machine.get("gpu")
    return {
        "name": machine.get("node") or "",
        "type": machine.get("gpu") or machine.get("cpu") or "",
        "cpu_info": machine.get("cpu") or "",
        "cpu_count": int(machine.get("cpu_count") or 0),
        "gpu_info": gpu or "",
        "gpu_count": 1 if gpu else 0,
        "extra_info": strings(
            {
                "fingerprint": machine.get("fingerprint"),
                "system": machine.get("system"),
                "release": machine.get("release"),
                "device": machine.get("device"),
                "gpu_driver": machine.get("gpu_driver"),
                "cuda": machine.get("cuda"),
                "cuda_visible_devices": machine.get("cuda_visible_devices"),
                "torch_threads": machine.get("torch_threads"),
            }
        ),
    }


def dependencies(run: Run, machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    commit = run.commit
    code = {"repo": REPO, "branch": commit.get("branch") or "", "sha": commit.get("id") or "", "version": __version__}
    code["extra_info"] = strings({"dirty": commit.get("dirty"), "run_version": run.energybench_version})
    out = {"energybench": code}
    for name in ("torch", "transformers", "python"):
        if machine.get(name):
            out[name] = {"version": str(machine[name])}
    return out


def one_record(run: Run, record: Record) -> dict[str, Any]:
    machine, source, shape = record_machine(run, record), record.source, record.shape
    return {
        "benchmark": {
            "name": BENCHMARK_NAME,
            "mode": "inference",
            "dtype": record.precision,
            "extra_info": strings(
                {"run_id": run.run_id, "test_id": record.test_id, "device": record.device, "method": record.method}
            ),
        },
        "model": {
            "name": record.model,
            "type": source.get("task") or "",
            "backend": record.backend,
            "origins": [source["kind"]] if source.get("kind") else [],
            "extra_info": strings({"checkpoint": source.get("checkpoint"), "revision": source.get("revision")}),
        },
        "inputs": {"input_ids": {"dtype": "int64", "extra_info": strings({"shape": shape_name(record), **shape})}},
        "metric": {
            "name": record.metric,
            "benchmark_values": round_values(record),
            "extra_info": strings(
                {
                    "unit": record.unit,
                    "value": record.value,
                    "status": record.status,
                    "basis": record.basis,
                    "gated": None if record.basis is None else not is_estimate(record),
                    "unstable": record.unstable,
                    "rounds": record.timing.rounds if record.timing else None,
                }
            ),
        },
        "runners": [runner(machine)],
        "dependencies": dependencies(run, machine),
    }


def to_pytorch_oss(run: Run) -> tuple[str, list[str]]:
    """The JSON list of v3 records (one per measured number) and a note per record left out."""
    records, notes = [], []
    for record in run.records:
        if exported(record):
            records.append(one_record(run, record))
        elif record.value is None:
            notes.append(f"left out {record.model}/{record.precision} {record.metric}: not measured ({record.reason})")
    return json.dumps(records, indent=1) + "\n", notes
