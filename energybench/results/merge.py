"""Runs of one commit from several runners (a CI matrix: one job per model x precision, or per GPU)
combined into one run, the way pyperf refuses to combine runs whose metadata differ.

Refused, with one line saying why: runs of different commits (or a run with no commit), of a
different energybench version, measured with different settings (anything but what the matrix
shards: models, precisions, backends and metrics; and each runner's own bookkeeping such as its
reports dir), a partial run, the same run twice, or the same model x precision x metric x shape
measured by two runs.

The merged run keeps each record's machine: every record gains ``details["merged_from"]`` (its run
id) and ``details["machine"]`` (its machine fingerprint), and ``machine["runners"]`` lists each
source run's whole machine. Where every runner has the same fingerprint (the same GPU, driver and
libraries), the merged run has that fingerprint, so it compares like any single run; otherwise its
fingerprint is ``mixed-<hash of the fingerprints>``, equal only between merges of the same mix.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from energybench.errors import UsageError
from energybench.results.schema import Run, shape_label
from energybench.results.store import new_run_id

SHARD_AXES = ("models", "precisions", "backends", "metrics", "named_metrics")  # what a matrix may split
PER_RUNNER = ("reports_dir", "save", "save_baseline", "compare", "compare_path", "fail_on", "report")


class MergeRefused(UsageError):
    """Runs that cannot be one result; the message says which and why."""


def check_mergeable(runs: list[Run]) -> None:
    if not runs:
        raise MergeRefused("give the runs to merge: run folders, run ids or reports folders of each runner")
    first = runs[0]
    seen: set[str] = set()
    for run in runs:
        if run.run_id in seen:
            raise MergeRefused(f"run {run.run_id} is given twice; give each runner's run once")
        seen.add(run.run_id)
        if run.partial:
            raise MergeRefused(f"run {run.run_id} is partial ({run.partial_reason}); rerun that runner's job")
        if not run.commit.get("id"):
            why = run.commit.get("reason") or "no commit id"
            raise MergeRefused(f"run {run.run_id} has no commit ({why}); merge needs the commit of every run")
    for run in runs[1:]:
        why = difference(first, run)
        if why:
            raise MergeRefused(f"runs {first.run_id} and {run.run_id} {why}; merge runs of one commit and settings")
    check_disjoint(runs)


def difference(a: Run, b: Run) -> str | None:
    if a.commit.get("id") != b.commit.get("id"):
        return f"are of different commits ({str(a.commit.get('id'))[:10]} vs {str(b.commit.get('id'))[:10]})"
    if bool(a.commit.get("dirty")) != bool(b.commit.get("dirty")):
        return "differ in uncommitted changes (one checkout is dirty)"
    if a.energybench_version != b.energybench_version:
        return f"were saved by energybench {a.energybench_version} and {b.energybench_version}"
    if a.schema_version != b.schema_version:
        return f"have schema versions {a.schema_version} and {b.schema_version}"
    for key in sorted(set(a.options) | set(b.options)):
        if key in SHARD_AXES or key in PER_RUNNER:
            continue
        if a.options.get(key) != b.options.get(key):
            return f"were measured with different settings ({key}: {a.options.get(key)!r} vs {b.options.get(key)!r})"
    for name in sorted(set(a.models) & set(b.models)):
        source_a, source_b = source_of(a.models[name]), source_of(b.models[name])
        if source_a != source_b:
            return f"loaded model {name} from different sources ({source_a} vs {source_b})"
    for name in sorted(set(a.custom_metrics) & set(b.custom_metrics)):
        if a.custom_metrics[name] != b.custom_metrics[name]:
            return f"declare metric {name} differently ({a.custom_metrics[name]} vs {b.custom_metrics[name]})"
    return None


def source_of(model: dict[str, Any]) -> tuple:
    return (model.get("kind"), model.get("checkpoint"), model.get("revision"))


def check_disjoint(runs: list[Run]) -> None:
    """Each model x precision x metric x shape comes from one run: two would be two answers."""
    owner: dict[tuple, str] = {}
    for run in runs:
        for record in run.records:
            key = (*record.series, tuple(sorted(record.shape.items())))
            if key in owner and owner[key] != run.run_id:
                what = "/".join(record.series) + (f" at {shape_label(record.shape)}" if record.shape else "")
                raise MergeRefused(
                    f"{what} was measured by both {owner[key]} and {run.run_id}; shard the matrix so each "
                    "model x precision runs on one runner"
                )
            owner[key] = run.run_id


def merged_machine(runs: list[Run]) -> dict[str, Any]:
    runners = [{"run_id": run.run_id, **run.machine} for run in runs]
    prints = sorted({str(run.machine.get("fingerprint")) for run in runs})
    if len(prints) == 1:
        return {**runs[0].machine, "runners": runners}
    common = {k: v for k, v in runs[0].machine.items() if all(r.machine.get(k) == v for r in runs)}
    mixed = "mixed-" + hashlib.sha256("|".join(prints).encode()).hexdigest()[:12]
    return {**common, "fingerprint": mixed, "runners": runners}


def merged_meters(runs: list[Run]) -> dict[str, Any]:
    """The meters of runners that differ, each named ``<run id>:<meter>`` (the report lists them)."""
    return {
        part: {f"{run.run_id}:{name}": state for run in runs for name, state in (run.meters.get(part) or {}).items()}
        for part in ("open", "absent")
    }


def union(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(v for value in values for v in (value or ())))


def merge_runs(runs: list[Run]) -> Run:
    """One run of every record of ``runs`` (checked first: ``check_mergeable``)."""
    check_mergeable(runs)
    options = dict(runs[0].options)
    for axis in SHARD_AXES:
        if axis in options:
            options[axis] = union([run.options.get(axis) for run in runs])
    options["merged_from"] = [run.run_id for run in runs]
    records = [
        dataclasses.replace(
            record,
            details={**record.details, "merged_from": run.run_id, "machine": run.machine.get("fingerprint")},
        )
        for run in runs
        for record in run.records
    ]
    meters = runs[0].meters if all(run.meters == runs[0].meters for run in runs) else merged_meters(runs)
    return Run(
        run_id=new_run_id(),
        started_at=min(run.started_at for run in runs),
        finished_at=max(run.finished_at for run in runs),
        energybench_version=runs[0].energybench_version,
        machine=merged_machine(runs),
        commit=dict(runs[0].commit),
        options=options,
        models={name: model for run in runs for name, model in run.models.items()},
        records=records,
        meters=meters,
        custom_metrics={name: facts for run in runs for name, facts in run.custom_metrics.items()},
    )
