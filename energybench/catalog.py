"""Every fact declared once: metrics, precisions, meters, devices and options.

Everything else reads these tables: the pytest options and their ini twins, the settings
parser, the comparison's directions, the summary's and the report's units, and the generated
options reference (``docs/options.md``). Adding a metric means one :class:`Metric` here and the
code that measures it. This module imports nothing of energybench and nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Direction = Literal["lower", "higher"]
LossUnit = Literal["pp", "%"]  # accuracy points (x 100 of a fraction) or percent of the baseline
OptionKind = Literal["names", "choice", "int", "ints", "optional-int", "seconds", "spec", "path", "text", "flag"]

SEQUENCE_CLASSIFICATION = "sequence-classification"
CAUSAL_LM = "causal-lm"
TASKS = (SEQUENCE_CLASSIFICATION, CAUSAL_LM)


@dataclass(frozen=True)
class Metric:
    """One measured quantity.

    ``selectable``: a ``--metric`` value with a benchmark of its own (``power`` and ``co2`` are
    recorded by the energy benchmark). ``metered``: its benchmark opens the power meters.
    ``deterministic``: the same model and data give the same number (compared exactly).
    ``energy_like``: a figure with an energy basis (measured / sampled / estimated / apportioned).
    ``comparable``: compared between runs and gated on (``impact`` and ``energy-impact-rho`` are not costs).
    ``timed``: measured in timed rounds, in ``--blocks`` blocks spread over the session.
    ``shaped``: measured at each ``--batch-size`` x ``--seq-len`` shape (a test and a record per shape).
    ``records``: a selectable metric whose benchmark records these metrics instead of one of its own
    name (``generation``); its own name then only labels a skip or an error of the test.
    """

    name: str
    direction: Direction
    unit: str  # the headline value's unit in a record ("J/item" style units are per the workload's item)
    description: str
    task: str | None = None  # only benchmarks of models of this task
    selectable: bool = True
    metered: bool = False
    deterministic: bool = False
    energy_like: bool = False
    comparable: bool = True
    timed: bool = False
    shaped: bool = False
    records: tuple[str, ...] = ()
    custom: bool = False  # declared by a user's benchmark at run time (see MetricTable)
    recorded_by: str = "energy"  # not selectable and in no ``records``: the benchmark that records it
    loss_unit: LossUnit = "%"  # what a loss against a baseline is counted in ("pp": points of a fraction)
    behaviour: bool = False  # measured against fp32 on the same inputs, in the quality pass

    def __post_init__(self) -> None:
        if self.direction not in ("lower", "higher"):
            raise ValueError(f"metric {self.name}: direction {self.direction!r}; accepted: lower, higher")
        if self.loss_unit not in ("pp", "%"):
            raise ValueError(f"metric {self.name}: loss unit {self.loss_unit!r}; accepted: pp, %")

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    def change(self, value: float, baseline: float, unit: LossUnit | None = None) -> float:
        """How the value moved from the baseline, signed as it moved: in points ((value - baseline)
        x 100, for a fraction) or in percent of the baseline; ``unit`` defaults to the loss unit."""
        if (unit or self.loss_unit) == "pp":
            return (value - baseline) * 100.0
        return (value / baseline - 1.0) * 100.0

    def loss(self, value: float, baseline: float, unit: LossUnit | None = None) -> float:
        """How much worse than the baseline, positive = worse, in ``unit`` (default the loss unit):
        accuracy 0.80 against 0.81 loses 1.0 point, perplexity 30.6 against 30.0 loses 2.0 %."""
        if (unit or self.loss_unit) == "pp":  # written out so that no loss reads -0.00
            return (baseline - value) * 100.0 if self.higher_is_better else (value - baseline) * 100.0
        moved = self.change(value, baseline, unit)
        return -moved if self.higher_is_better else moved


GENERATION_RECORDS = ("ttft", "decode-latency", "decode-throughput", "generation-memory", "generation-energy")

METRIC_LIST = (
    Metric(
        "accuracy",
        "higher",
        "fraction",
        "SST-2 validation accuracy (argmax)",
        task=SEQUENCE_CLASSIFICATION,
        deterministic=True,
        loss_unit="pp",
    ),
    Metric(
        "perplexity",
        "lower",
        "perplexity",
        "WikiText-2 test perplexity, token-weighted, by --ppl-protocol (strided HF guide or non-overlapping "
        "GPTQ/AWQ windows); the protocol, context and stride are in the record",
        task=CAUSAL_LM,
        deterministic=True,
    ),
    Metric(
        "latency",
        "lower",
        "s",
        "latency of one call (batch 1 unless --batch-size), median of the timed rounds",
        timed=True,
        shaped=True,
    ),
    Metric("throughput", "higher", "items/s", "items per second at --batch-size", timed=True, shaped=True),
    Metric("memory", "lower", "bytes", "peak memory of one forward pass at --batch-size", shaped=True),
    Metric("size", "lower", "bytes", "serialized size of the converted model", deterministic=True),
    Metric(
        "energy",
        "lower",
        "J/item",
        "energy per item over a metered window, total and above idle",
        metered=True,
        energy_like=True,
        shaped=True,
    ),
    Metric("power", "lower", "W", "average power over the energy window", selectable=False, energy_like=True),
    Metric(
        "co2",
        "lower",
        "gCO2eq/item",
        "energy per item x the grid's carbon intensity",
        selectable=False,
        energy_like=True,
    ),
    Metric(
        "generation",
        "lower",
        "s",
        "greedy decoding of exactly --gen-tokens new tokens with the KV cache, prompts of real WikiText-2 "
        "text: records ttft, decode-latency, decode-throughput, generation-memory and generation-energy",
        task=CAUSAL_LM,
        metered=True,
        comparable=False,
        shaped=True,
        records=GENERATION_RECORDS,
    ),
    Metric("ttft", "lower", "s", "prefill: time to the first token of the batch", task=CAUSAL_LM, selectable=False),
    Metric(
        "decode-latency",
        "lower",
        "s",
        "time per generated token (one decode step of the batch), median of the steps; p90/p99 in details",
        task=CAUSAL_LM,
        selectable=False,
        timed=True,
    ),
    Metric(
        "decode-throughput",
        "higher",
        "tokens/s",
        "generated tokens of the whole batch per second of decoding",
        task=CAUSAL_LM,
        selectable=False,
    ),
    Metric(
        "generation-memory",
        "lower",
        "bytes",
        "peak memory of one generation, KV cache included",
        task=CAUSAL_LM,
        selectable=False,
    ),
    Metric(
        "generation-energy",
        "lower",
        "J/token",
        "energy per generated token over a metered window of decoding only (or of whole generations, labelled so)",
        task=CAUSAL_LM,
        selectable=False,
        energy_like=True,
    ),
    Metric(
        "layer-energy",
        "lower",
        "J/item",
        "per-unit time share and apportioned energy (layer study)",
        metered=True,
        energy_like=True,
    ),
    Metric(
        "impact",
        "higher",
        "nats",
        "per-unit prediction impact (ablation KL), the rows in details; the value is the largest unit's",
        metered=True,
        comparable=False,
    ),
    Metric(
        "energy-impact-rho",
        "higher",
        "rho",
        "Spearman rho between per-unit energy and impact, p-value and CI in details",
        selectable=False,
        recorded_by="impact",
        comparable=False,
    ),
    Metric(
        "flips",
        "lower",
        "fraction",
        "share of SST-2 sentences whose predicted label differs from fp32's, exact binomial CI",
        task=SEQUENCE_CLASSIFICATION,
        selectable=False,
        deterministic=True,
        recorded_by="accuracy",
        behaviour=True,
        loss_unit="pp",
    ),
    Metric(
        "agreement",
        "higher",
        "fraction",
        "top-1 next-token agreement with fp32 over the perplexity tokens, CI over windows",
        task=CAUSAL_LM,
        selectable=False,
        deterministic=True,
        recorded_by="perplexity",
        behaviour=True,
        loss_unit="pp",
    ),
    Metric(
        "output-kl",
        "lower",
        "nats",
        "mean KL(fp32 || this) per perplexity token over the full vocabulary, CI over windows",
        task=CAUSAL_LM,
        selectable=False,
        deterministic=True,
        recorded_by="perplexity",
        behaviour=True,
    ),
    Metric(
        "recovery",
        "higher",
        "fraction",
        "quality / fp32 quality (perplexity: fp32's / this one's), paired bootstrap CI",
        selectable=False,
        deterministic=True,
        recorded_by="accuracy, perplexity",
        behaviour=True,
        loss_unit="pp",
    ),
)
METRICS = {m.name: m for m in METRIC_LIST}
SELECTABLE_METRICS = tuple(m.name for m in METRIC_LIST if m.selectable)
METERED_METRICS = tuple(m.name for m in METRIC_LIST if m.metered)
TIMED_METRICS = tuple(m.name for m in METRIC_LIST if m.timed)
ENERGY_METRICS = tuple(m.name for m in METRIC_LIST if m.energy_like)
QUALITY_METRICS = {m.task: m.name for m in METRIC_LIST if m.task and m.deterministic and not m.behaviour}
BEHAVIOUR_METRICS = tuple(m.name for m in METRIC_LIST if m.behaviour)  # against fp32, in the quality pass

# Shapes (--batch-size x --seq-len) of the shaped metrics when the options leave them unset.
DEFAULT_BATCH_SIZE = 32
DEFAULT_SEQ_LEN = 128
ONE_REQUEST_METRICS = ("latency", "generation")  # batch 1 unless --batch-size is given
PPL_PROTOCOLS = ("strided", "non-overlapping")  # energybench.measure.quality
MAX_GENERATION_PROMPT = 128  # generation's default prompt: model maximum - --gen-tokens, at most this


def custom_metric(name: str, facts: dict[str, str]) -> Metric:
    """The Metric of a user's metric declared as ``{direction, unit, description}`` (a run's
    ``custom_metrics``); a KeyError or ValueError says what the declaration lacks."""
    return Metric(name, facts["direction"], facts["unit"], facts.get("description", ""), selectable=False, custom=True)


def directed(name: str, higher_is_better: bool) -> Metric:
    """A metric known only by its direction (a user's ``quality_budget``, a ``--budget`` on a
    declared metric): enough for the one loss rule, ``Metric.loss``, to judge it."""
    return custom_metric(name, {"direction": "higher" if higher_is_better else "lower", "unit": ""})


class MetricTable:
    """The metrics one run (or the runs of one comparison) knows: the built-ins and its own declarations.

    The built-ins are read from ``METRICS`` at each lookup; the declarations live in the table, so
    two runs (or two sessions in one process) never see each other's metrics."""

    def __init__(self, declared: Iterable[Metric] = ()) -> None:
        self.custom: dict[str, Metric] = {}
        for added in declared:
            self.declare(added)

    @classmethod
    def of(cls, *declarations: dict[str, dict[str, str]]) -> MetricTable:
        """The table of runs' ``custom_metrics`` (name -> direction, unit, description); a ValueError
        (or KeyError) names a declaration that is incomplete or disagrees with another."""
        return cls(custom_metric(name, facts) for declared in declarations for name, facts in declared.items())

    def declare(self, added: Metric) -> Metric:
        """Add a user's metric; the same declaration again is a no-op. A built-in name, or the same
        name with another direction or unit, raises ValueError with the line to show."""
        if added.name in METRICS and not METRICS[added.name].custom:
            raise ValueError(f"metric {added.name!r} is a built-in energybench metric; give your metric another name")
        known = self.custom.setdefault(added.name, added)
        if (known.direction, known.unit) != (added.direction, added.unit):
            raise ValueError(
                f"metric {added.name!r} is already declared as {known.direction} is better in {known.unit!r}; "
                f"got {added.direction} in {added.unit!r}: keep one declaration per name"
            )
        return known

    def get(self, name: str) -> Metric | None:
        return self.custom.get(name) or METRICS.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> Metric:
        """The metric; a KeyError whose text lists the known built-in and custom names."""
        found = self.get(name)
        if found is None:
            raise KeyError(f"unknown metric {name!r}; {self.known()}")
        return found

    def known(self, comparable_only: bool = False) -> str:
        """``known: latency, ...; this run's own: f1`` (the accepted names of an error line)."""
        built_in = [m.name for m in METRICS.values() if not m.custom and (m.comparable or not comparable_only)]
        own = [m.name for m in self.custom.values() if m.comparable or not comparable_only]
        return f"known: {', '.join(built_in)}" + (f"; this run's own: {', '.join(own)}" if own else "")

    def comparable(self) -> tuple[str, ...]:
        """The names compared between runs and gated on: the built-in costs and every declared metric."""
        return tuple(m.name for m in (*METRICS.values(), *self.custom.values()) if m.comparable)

    def higher_is_better(self, name: str) -> bool:
        found = self.get(name)
        return found is not None and found.higher_is_better

    def deterministic(self, name: str) -> bool:
        found = self.get(name)
        return found is not None and found.deterministic


def metric(name: str) -> Metric:
    """The declared metric; a KeyError names the accepted ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; accepted: {', '.join(METRICS)}") from None


@dataclass(frozen=True)
class UnitDisplay:
    factor: float
    unit: str
    decimals: int


# How a record's unit is shown (terminal summary, HTML tables and figure axes).
UNIT_DISPLAY = {
    "fraction": UnitDisplay(100.0, "%", 2),
    "perplexity": UnitDisplay(1.0, "", 2),
    "s": UnitDisplay(1e3, "ms", 3),
    "bytes": UnitDisplay(1 / 2**20, "MiB", 2),
}


def format_value(value: float | None, unit: str) -> str:
    """A value in its display unit: ``0.8073`` fraction -> ``80.73 %``; ``None`` -> ``-``."""
    if value is None:
        return "-"
    display = UNIT_DISPLAY.get(unit)
    if display is None:
        return f"{value:.4g} {unit}".rstrip()
    return f"{value * display.factor:.{display.decimals}f} {display.unit}".rstrip()


# How an energy figure was obtained (the record's ``basis``), strongest first.
BASES = ("measured", "sampled", "estimated", "apportioned")
GATED_BASES = ("measured", "sampled")  # estimates are shown, never gated on

# Names and notes only: energybench.models.precision holds the converters (and imports torch).
# Each note says how the precision is implemented; the record's ``implementation`` says exactly.
PRECISION_NOTES = {
    "fp32": "torch float32: the baseline",
    "fp16": "torch float16 cast of weights and activations (CPU too, through slow kernels)",
    "bf16": "torch bfloat16 cast of weights and activations (CUDA needs compute capability >= 8.0)",
    "int8": "torch.ao dynamic int8 PTQ of every nn.Linear (GPT-2 Conv1D converted first); CPU only",
    "int8-wo": "torchao Int8WeightOnlyConfig(PerRow): int8 weights, bf16 activations on CUDA (fp32 on CPU)",
    "int8-dyn": "torchao Int8DynamicActivationInt8WeightConfig(PerRow): int8 x int8 matmuls; "
    "torch.compile'd on CUDA (torchao's fast path, compute capability >= 8.0), eager on CPU",
    "int4-wo": "torchao Int4WeightOnlyConfig(group 128, tile_packed_to_4d): tinygemm int4 kernel, bf16; "
    "CUDA with compute capability >= 8.0; on CPU torchao's CPU layout (Int4OpaqueTensor, bf16)",
    "fp8-dyn": "torchao Float8DynamicActivationFloat8WeightConfig(PerRow): e4m3 through torch._scaled_mm, bf16; "
    "CUDA with compute capability >= 8.9",
    "int8-static": "static int8 (activations and weights), calibrated on a seeded subset of the SST-2 train split: "
    "ONNX Runtime quantize_static (QDQ, per-channel, MinMax) on the onnxruntime backend",
    "int4-hqq": "HQQ 4-bit, calibration-free (half-quadratic qparams), group 128, on the int4-wo kernels (torchao "
    "int4_choose_qparams_algorithm='hqq'): CPU and CUDA >= 8.0, bf16",
    "int4-gptq": "GPTQ 4-bit weights (W4A16, group 128, symmetric) by llm-compressor, calibrated on a seeded "
    "WikiText-2 valid subset (size, sha256 and calibration time in the record); runs its fake-quantized weights",
    "nf4-bnb": "bitsandbytes NF4 weights (Linear4bit, bf16 compute), every Linear but the LM head; CUDA only",
    "int8-bnb": "bitsandbytes LLM.int8() weights (Linear8bitLt, threshold 6.0), every Linear but the LM head; "
    "CUDA only",
    "kv4-quanto": "fp32 weights, the KV cache in 4 bits (transformers QuantizedCache, quanto backend, group 64, "
    "residual 128): generation decodes and perplexity scores through it",
    "kv4-hqq": "fp32 weights, the KV cache in 4 bits (transformers QuantizedCache, HQQ backend, group 64, "
    "residual 128): generation decodes and perplexity scores through it",
}
PRECISIONS = tuple(PRECISION_NOTES)
TORCHAO_PRECISIONS = ("int8-wo", "int8-dyn", "int4-wo", "fp8-dyn", "int4-hqq")  # `backends` extra (torchao)
GPTQ_PRECISIONS = ("int4-gptq",)  # the `gptq` extra (llm-compressor)
BNB_PRECISIONS = ("nf4-bnb", "int8-bnb")  # the `bnb` extra (bitsandbytes), CUDA
KV_PRECISIONS = ("kv4-quanto", "kv4-hqq")  # the `llm` extra (optimum-quanto, hqq): KV-cache quantization
# The operators whose presence in a profiled call proves the precision ran quantized kernels
# (fnmatch patterns over torch.profiler operator names and ONNX Runtime op types;
# energybench.measure.kernels). A precision that declares some and ran none is a `fallback`.
# torchao's int8-wo runs int8 weights cast to float + aten::mm in eager (a fallback by this rule);
# its fused kernel exists only once torch.compile'd, or as aten::_weight_int8pack_mm.
ORT_INTEGER_MATMULS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QGemm")
PROOF_OPERATORS = {
    "int8": ("quantized::linear_dynamic", *ORT_INTEGER_MATMULS),
    "int8-wo": ("aten::_weight_int8pack_mm",),
    "int8-dyn": ("aten::_int_mm", "*int_mm*"),
    "int4-wo": ("aten::_weight_int4pack_mm*",),
    "fp8-dyn": ("aten::_scaled_mm", "*scaled_mm*"),
    "int8-static": ("QLinearMatMul", "QLinearConv", *ORT_INTEGER_MATMULS),
    "int4-hqq": ("aten::_weight_int4pack_mm*",),  # HQQ's qparams on torchao's int4 kernels
    "int4-gptq": ("aten::_weight_int4pack_mm*",),  # GPTQ's weights packed for the same kernels
    "nf4-bnb": ("bitsandbytes::*4bit*",),  # bitsandbytes' torch.library ops (gemv_4bit, dequantize_4bit)
    "int8-bnb": ("bitsandbytes::int8*",),  # int8_linear_matmul, int8_vectorwise_quant
    # kv4-*: fp32 weights; what is quantized is the KV cache of generation, whose record names the cache class
}
MIXED = "mixed"  # opt-in (not in "all"): it costs a layer study of the fp32 model first
ALL_PRECISIONS = (*PRECISIONS, MIXED)
BASELINE_PRECISION = "fp32"
# Names that stand for several precisions in --precision. "all" is the classic CPU set (the main
# job); "gpu" is what a CUDA GPU runs (torch.ao int8 is CPU only; its GPU counterparts are torchao's).
PRECISION_GROUPS = {
    "all": ("fp32", "fp16", "bf16", "int8"),
    "gpu": ("fp32", "fp16", "bf16", "int8-wo", "int8-dyn", "int4-wo", "fp8-dyn"),
    # what an LLM deployer chooses between on a CPU (bitsandbytes is CUDA only: add nf4-bnb,int8-bnb on a GPU)
    "llm": ("fp32", "int8", "int8-wo", "int4-wo", "int4-hqq", "int4-gptq", "kv4-quanto", "kv4-hqq"),
}

METERS = ("nvml", "rapl", "codecarbon")
DEVICES = ("auto", "cpu", "cuda")
MODEL_SOURCES = ("auto", "hub", "path", "embedded", "shape-only")
# the registry (energybench.models.registry) holds their specs
MODELS = ("distilbert", "gpt2", "bert-base", "smollm2", "smollm2-360m")
CUSTOM_MODEL = "custom"  # the name of a --model-path checkpoint that is not named after a registered model

INT8, INT4, FP8 = ("int8", "int8-wo", "int8-dyn", "int8-static", "int8-bnb"), ("int4-wo",), ("fp8-dyn",)
INT4 = (*INT4, "int4-hqq", "int4-gptq", "nf4-bnb", *KV_PRECISIONS)

# Backends: what runs the converted model. Names and notes only: energybench.models.backends holds
# the classes (they import onnxruntime / torch._dynamo only when used).
BACKEND_NOTES = {
    "eager": "PyTorch eager: the model as converted, called directly (today's path)",
    "compile": "torch.compile (Inductor), the sequence dimension dynamic; compile time recorded as its own "
    "number, never in latency",
    "onnxruntime": "exported to ONNX (torch.onnx.export, dynamo, opset 18) and run by ONNX Runtime on its CPU "
    "execution provider (CUDA provider where present)",
}
BACKENDS = tuple(BACKEND_NOTES)
DEFAULT_BACKEND = "eager"
BACKENDS_EXTRA = "install energybench[backends] (pip install 'energybench[backends]')"


def variant(precision: str, backend: str) -> str:
    """A precision as run by a backend: ``int8`` on eager (the default backend keeps its old name),
    ``onnxruntime-int8-static`` elsewhere (test ids, summaries and report labels)."""
    return precision if backend == DEFAULT_BACKEND else f"{backend}-{precision}"


DEFAULT_ACCURACY_BUDGET_PP = {"fp16": 0.3, "bf16": 0.3, **dict.fromkeys(INT8 + FP8, 1.0), **dict.fromkeys(INT4, 2.0)}
DEFAULT_PERPLEXITY_BUDGET_PCT = {
    "fp16": 1.0,
    "bf16": 1.0,
    **dict.fromkeys(INT8 + FP8, 5.0),
    **dict.fromkeys(INT4, 10.0),
}


@dataclass(frozen=True)
class Option:
    """One command-line option (``--name``) with its ini twin (``energybench_<dest>``).

    ``default`` is what the settings parser uses when neither is given (``None``: not set, or
    derived as ``default_text`` says); the help text shows ``default_text`` in brackets.
    """

    name: str
    kind: OptionKind
    help: str
    metavar: str | None = None
    default: str | int | float | bool | None = None
    default_text: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def ini(self) -> str:
        return f"energybench_{self.dest}"

    def help_text(self) -> str:
        shown = self.default_text if self.default_text is not None else self.default
        return self.help + (f" [{shown}]" if shown not in (None, "", False) else "")


OPTIONS = (
    Option(
        "model",
        "names",
        f"models, comma-separated or 'all': {', '.join(MODELS)}",
        "NAMES",
        "distilbert",
        choices=MODELS,
    ),
    Option(
        "precision",
        "names",
        f"precisions, comma-separated: {', '.join(PRECISIONS)}; or a group: "
        + "; ".join(f"{name} = {','.join(members)}" for name, members in PRECISION_GROUPS.items())
        + f"; {MIXED} (the layer study's plan) is opt-in: all,{MIXED}",
        "NAMES",
        "all",
        choices=ALL_PRECISIONS,
    ),
    Option(
        "backend",
        "names",
        f"backends that run the model, comma-separated or 'all': {', '.join(BACKENDS)}",
        "NAMES",
        DEFAULT_BACKEND,
        choices=BACKENDS,
    ),
    Option(
        "metric",
        "names",
        f"metrics, comma-separated or 'all': {', '.join(SELECTABLE_METRICS)}",
        "NAMES",
        "all",
        choices=SELECTABLE_METRICS,
    ),
    Option("device", "choice", "cpu, cuda or auto (cuda when visible)", "DEV", "auto", choices=DEVICES),
    Option(
        "model-source",
        "choice",
        "auto (hub if reachable or cached, else embedded), hub, embedded, shape-only",
        "SRC",
        "auto",
        choices=MODEL_SOURCES,
    ),
    Option("model-path", "path", "a local fine-tuned checkpoint (save_pretrained folder) to benchmark instead", "DIR"),
    Option(
        "task",
        "choice",
        "task of --model-path when its config does not say: " + ", ".join(TASKS),
        "TASK",
        choices=TASKS,
    ),
    Option(
        "batch-size",
        "ints",
        "batch sizes, comma-separated (each a shape of its own test): throughput, memory, energy, latency and "
        "generation run at each; the first is also the evaluation batch",
        "N[,N...]",
        default_text="32; latency and generation 1",
    ),
    Option(
        "seq-len",
        "ints",
        "tokens per sequence, comma-separated (each a shape of its own test): forward metrics' inputs and "
        "generation's prompt",
        "N[,N...]",
        default_text="128; generation: model maximum - --gen-tokens, at most 128",
    ),
    Option(
        "gen-tokens",
        "int",
        "new tokens each generation decodes greedily (exactly, no early stop)",
        "N",
        32,
    ),
    Option(
        "max-samples",
        "optional-int",
        "quick runs: first N SST-2 sentences / N perplexity windows",
        "N",
        default_text="all",
    ),
    Option("rounds", "int", "timed rounds per latency/throughput benchmark, split evenly over --blocks", "N", 30),
    Option(
        "blocks",
        "int",
        "latency/throughput are timed in N blocks, one per pass over the selection (interleaved with the "
        "other timing tests); the comparison tests block medians, so minute-scale drift counts as noise",
        "N",
        5,
    ),
    Option("warmup-rounds", "int", "untimed warm-up rounds before timing", "N", 3),
    Option("ppl-context", "optional-int", "perplexity window length in tokens", "N", default_text="model maximum"),
    Option("ppl-stride", "optional-int", "perplexity stride in tokens", "N", default_text="context / 2"),
    Option(
        "ppl-protocol",
        "choice",
        "perplexity protocol: strided (HF perplexity guide: sliding windows, half-context stride unless set) or "
        "non-overlapping (GPTQ/AWQ papers: side-by-side windows of the context, 2048 where the model allows, "
        "the tail dropped); records of different protocols are never compared",
        "NAME",
        "strided",
        choices=PPL_PROTOCOLS,
    ),
    Option(
        "accuracy-budget",
        "spec",
        "max accuracy loss vs fp32 in points, e.g. int8=1.0,fp16=0.3",
        "SPEC",
        default_text="pyproject / built-in",
    ),
    Option(
        "perplexity-budget",
        "spec",
        "max perplexity increase vs fp32 in %, e.g. int8=5,gpt2/fp16=1",
        "SPEC",
        default_text="pyproject / built-in",
    ),
    Option(
        "flips-budget",
        "spec",
        "max share of SST-2 sentences whose label differs from fp32's, in points, e.g. int8=1.0 (none by default)",
        "SPEC",
        default_text="pyproject / none",
    ),
    Option(
        "kl-budget",
        "spec",
        "max mean KL(fp32 || this) per WikiText-2 token, in nats, e.g. int8=0.01,int4-wo=0.05 (none by default)",
        "SPEC",
        default_text="pyproject / none",
    ),
    Option("reports-dir", "path", "where runs are saved, relative to the rootdir", "DIR", "reports"),
    Option(
        "meters",
        "spec",
        f"power meters: auto (what works here), none, or a list of {', '.join(METERS)}",
        "SPEC",
        "auto",
        choices=METERS,
    ),
    Option(
        "energy-min-s",
        "seconds",
        "shortest energy window",
        "SECONDS",
        default_text="10 x the sensor update period, at least 2 s",
    ),
    Option("energy-min-calls", "int", "fewest workload calls in an energy window", "N", 10),
    Option("idle-s", "seconds", "idle baseline length per meter", "SECONDS", 3.0, default_text="3"),
    Option("country", "text", "country for CodeCarbon's carbon intensity (ISO 3166 alpha-3), e.g. FRA", "ISO3", "USA"),
    Option("region", "text", "region within the country for CodeCarbon (e.g. a US state)", "NAME"),
    Option(
        "impact-samples",
        "optional-int",
        "layer impact: SST-2 sentences / WikiText-2 windows per ablation",
        "N",
        default_text="256 / 32",
    ),
    Option(
        "energy-budget",
        "spec",
        "max energy per item vs fp32 as a ratio, e.g. int8=0.8 (never gated on estimates)",
        "SPEC",
    ),
    Option(
        "compare",
        "text",
        "compare this session with a saved run: run id, run folder, 'latest' or a baseline name",
        "RUN",
    ),
    Option(
        "fail-on",
        "spec",
        "regression limits for --compare, e.g. latency:+10%,energy:+10%,accuracy:-0.5pp,perplexity:+2%",
        "SPEC",
    ),
    Option(
        "save-baseline", "text", "also save this session's run as the named baseline (replacing it), e.g. main", "NAME"
    ),
    Option("no-save", "flag", "do not save the run under the reports dir", default=False),
    Option(
        "report",
        "flag",
        "write the figures and HTML report of the saved run into <run>/report/",
        default=False,
        default_text="off",
    ),
)
OPTION_BY_DEST = {o.dest: o for o in OPTIONS}


def recorded_by(name: str) -> str:
    """The selectable metric whose benchmark records ``name`` (``energy`` records power and co2)."""
    return next((m.name for m in METRIC_LIST if name in m.records), METRICS[name].recorded_by)


def options_reference() -> str:
    """The options reference (``docs/options.md``), generated so it cannot drift from the code."""
    lines = [
        "# Options reference",
        "",
        "Generated from `energybench/catalog.py` by `energybench options`; a test checks",
        "that this file matches. Every option has an ini twin (`energybench_<name>` in `[pytest]` /",
        "`[tool.pytest.ini_options]`). Precedence: command line > ini > `[tool.energybench]` > default.",
        "",
        "| option | ini key | value | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for o in OPTIONS:
        shown = o.default_text if o.default_text is not None else o.default
        value = o.metavar or "(flag)"
        lines.append(f"| `--{o.name}` | `{o.ini}` | {value} | {'' if shown is None else shown} | {o.help} |")
    lines += ["", "## Precisions", "", "| precision | implementation |", "|---|---|"]
    lines += [f"| `{name}` | {note} |" for name, note in PRECISION_NOTES.items()]
    lines += [f"| `{name}` (group) | {', '.join(members)} |" for name, members in PRECISION_GROUPS.items()]
    lines += ["", "## Backends", "", "| backend | what runs the model |", "|---|---|"]
    lines += [f"| `{name}` | {note} |" for name, note in BACKEND_NOTES.items()]
    lines += [
        "",
        "## Metrics",
        "",
        "| metric | direction | unit | task | metered | what |",
        "|---|---|---|---|---|---|",
    ]
    for m in METRIC_LIST:
        name = f"`{m.name}`" if m.selectable else f"`{m.name}` (recorded by `{recorded_by(m.name)}`)"
        task = m.task or "any"
        lines.append(
            f"| {name} | {m.direction} is better | {m.unit} | {task} | {'yes' if m.metered else ''} | {m.description} |"
        )
    return "\n".join(lines) + "\n"
