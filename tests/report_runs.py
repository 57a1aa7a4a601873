"""Small hand-built runs of real Record instances for the report tests: two models, three
precisions, every metric, layer records as the layer-records spec describes, and a mixed plan."""

from __future__ import annotations

import dataclasses

from energybench.layers.rows import (
    Correlation,
    ImpactRow,
    ImpactStudy,
    ImpactTypeRow,
    LayerTable,
    Plan,
    TypeRow,
    UnitRow,
    Window,
)
from energybench.results.schema import Budget, Record, Run, TimingStats

SOURCES = {
    "distilbert": {"kind": "embedded", "checkpoint": "embedded:distilbert-acb1a84d"},
    "gpt2": {"kind": "embedded", "checkpoint": "embedded:gpt2-5f0e12aa"},
}
LATENCY_S = {
    ("distilbert", "fp32"): 0.0100,
    ("distilbert", "int8"): 0.0060,
    ("distilbert", "fp16"): 0.0550,
    ("gpt2", "fp32"): 0.0200,
    ("gpt2", "int8"): 0.0120,
    ("gpt2", "fp16"): 0.1000,
}
QUALITY = {
    ("distilbert", "fp32"): 0.80,
    ("distilbert", "int8"): 0.795,
    ("distilbert", "fp16"): 0.80,
    ("gpt2", "fp32"): 105.0,
    ("gpt2", "int8"): 107.5,
    ("gpt2", "fp16"): 105.1,
}
SIZE_BYTES = {"fp32": 40e6, "int8": 14e6, "fp16": 20e6}
ENERGY_J = {"fp32": 0.50, "int8": 0.32, "fp16": 2.40}
LAYER_TYPES = ("Linear", "MultiHeadSelfAttention", "LayerNorm", "Embedding")


def timed(median_s: float, spread: float = 0.05) -> TimingStats:
    rounds = [median_s * (1 + spread * k / 4) for k in (-4, -2, -1, 0, 0, 1, 2, 4)]
    return TimingStats.from_rounds(rounds)


def model_records(model: str, precisions=("fp32", "int8", "fp16"), slow: float = 1.0) -> list[Record]:
    source = SOURCES[model]
    unit = "token" if model == "gpt2" else "sample"
    records = []
    for precision in precisions:
        latency = timed(LATENCY_S[(model, precision)] * slow)
        throughput = timed(LATENCY_S[(model, precision)] * slow * 20)
        common = {"source": source, "device": "cpu"}
        records += [
            Record(
                model,
                precision,
                "latency",
                latency.median_s,
                "s",
                method="pedantic",
                timing=latency,
                shape={"batch_size": 1, "seq_len": 128},
                **common,
            ),
            Record(
                model,
                precision,
                "throughput",
                32 / throughput.median_s,
                f"{unit}s/s",
                method="m",
                timing=throughput,
                **common,
            ),
            Record(model, precision, "size", SIZE_BYTES[precision], "bytes", method="torch.save", **common),
            Record(model, precision, "memory", SIZE_BYTES[precision] * 1.5, "bytes", method="rss", **common),
            quality_record(model, precision, common),
            Record(
                model,
                precision,
                "energy",
                ENERGY_J[precision] * slow,
                f"J/{unit}",
                method="estimated: codecarbon",
                basis="estimated",
                details={"dynamic_per_item_j": ENERGY_J[precision] / 2, "avg_power_w": 30.0, "primary": "codecarbon"},
                **common,
            ),
            Record(
                model,
                precision,
                "co2",
                ENERGY_J[precision] * 1.1e-4,
                f"gCO2eq/{unit}",
                method="energy per item x intensity; estimated: codecarbon",
                basis="estimated",
                **common,
            ),
        ]
    return records


def quality_record(model: str, precision: str, common: dict) -> Record:
    value = QUALITY[(model, precision)]
    metric, unit = ("perplexity", "perplexity") if model == "gpt2" else ("accuracy", "fraction")
    budget = None
    if precision != "fp32":
        base = QUALITY[(model, "fp32")]
        loss, limit, bunit = (
            ((base - value) * 100, 1.0, "pp") if metric == "accuracy" else ((value / base - 1) * 100, 5.0, "%")
        )
        budget = Budget("fp32", base, loss, limit, bunit, loss <= limit)
    return Record(model, precision, metric, value, unit, method="eval", budget=budget, **common)


def layer_records(model: str = "distilbert") -> list[Record]:
    per_type = [
        TypeRow(t, calls=2, time_s_per_sample=1e-3 * (i + 1), share=(i + 1) / 10, energy_j_per_sample=0.05 * (i + 1))
        for i, t in enumerate(LAYER_TYPES)
    ]
    per_layer = [
        UnitRow(f"layer.{i}", LAYER_TYPES[i % 4], 1, 1e-4 * i, 0.05 * i, energy_j_per_sample=0.01 * (i + 1))
        for i in range(6)
    ]
    impact_layers = [
        ImpactRow(
            row.layer,
            row.layer_type,
            ablation="skip-residual",
            kl_mean=0.02 * (i + 1),
            kl_ci95_lo=0.01 * i,
            kl_ci95_hi=0.03 * i,
            quality_delta=0.5 * i,
            impact_score=0.1 * (i + 1) ** 1.2,
            int8_quality_delta=0.1 * i,
            energy_j_per_sample=row.energy_j_per_sample,
            share=row.share,
        )
        for i, row in enumerate(per_layer)
    ]
    impact_types = [
        ImpactTypeRow(t, 1, 0.1 * (i + 1), 0.3 * i, 0.2 * (4 - i), 0.05 * (i + 1), (i + 1) / 10)
        for i, t in enumerate(LAYER_TYPES)
    ]
    stats = Correlation(6, "energy_j_per_sample", 0.93, 0.01, 0.5, 0.99, 0.89, 0.02, 0.3, 0.98)
    plan = Plan(1.0, ["layer.1", "layer.2"], "int8", -0.4, 0.4, 20.0).to_dict()
    window = Window("codecarbon", "estimated", 0.5)
    common = {"source": SOURCES[model], "device": "cpu"}
    return [
        Record(
            model,
            "fp32",
            "layer-energy",
            0.5,
            "J/sample",
            method="apportioned",
            basis="apportioned",
            timing=timed(0.02),
            details=LayerTable(per_layer, per_type, "perf_counter_ns", meter=window).to_dict(),
            **common,
        ),
        Record(
            model,
            "fp32",
            "impact",
            max(r.impact_score for r in impact_layers),
            "nats",
            method="largest per-unit impact score",
            details=ImpactStudy(
                64, "KL", impact_layers, impact_types, {"per_layer": stats, "per_type": stats}, Plan.from_dict(plan)
            ).to_dict(),
            **common,
        ),
        Record(
            model,
            "fp32",
            "energy-impact-rho",
            0.89,
            "rho",
            method="Spearman rho",
            details={"correlation": {"per_layer": dataclasses.asdict(stats), "per_type": dataclasses.asdict(stats)}},
            **common,
        ),
        Record(
            model,
            "mixed",
            "accuracy",
            0.797,
            "fraction",
            method="eval",
            details={"plan": plan, "predicted_quality_delta": -0.4},
            **common,
        ),
        Record(
            model,
            "mixed",
            "energy",
            0.42,
            "J/sample",
            method="estimated: codecarbon",
            basis="estimated",
            details={"plan": plan},
            **common,
        ),
    ]


def make_run(
    run_id: str = "20261124T100000Z-aaaaaa",
    models=("distilbert", "gpt2"),
    layers: bool = True,
    started_at: str = "2026-11-24T10:00:00+00:00",
    slow: float = 1.0,
) -> Run:
    records = [r for m in models for r in model_records(m, slow=slow)]
    records += layer_records() if layers else []
    records.append(
        Record(
            "distilbert",
            "bf16",
            "latency",
            None,
            "",
            status="skipped",
            reason="bf16 not on this CPU",
            source=SOURCES["distilbert"],
        )
    )
    machine = {"fingerprint": "abc123def456", "cpu": "Test CPU", "cpu_count": 2, "torch": "2.13.0"}
    return Run(
        run_id,
        started_at,
        started_at,
        "0.1.0",
        machine,
        {"id": "0123456789abcdef", "dirty": False},
        {"rounds": 8},
        {m: SOURCES[m] for m in models},
        records,
    )
