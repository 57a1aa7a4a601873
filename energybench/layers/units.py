"""Per-layer timing with forward hooks, grouped by layer type, with a sum check and FLOPs.

A *unit* is the outermost module matched by a rule of the model's architecture (a whole
attention block, a whole FFN block, a LayerNorm, the embeddings, the head). Units cover every
leaf module (an uncovered leaf is an error, never a silent "other"), and they include the work
done in non-leaf forwards (the attention matmuls and softmax live in the attention module's
own forward, not in a leaf). What no unit covers (residual adds, mask building, pooling glue)
is reported as its own ``unattributed`` row: end-to-end time minus the sum of unit times.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from energybench.errors import UsageError
from energybench.layers.rows import HookOverhead, LayerTable, SumCheck, TypeRow, UnitRow
from energybench.measure.workloads import synchronize

LAYER_TYPES = ("embeddings", "attention", "ffn", "layernorm", "classifier", "lm-head", "dropout")
ABLATIONS = ("skip-residual", "identity", "zero-output")
UNATTRIBUTED = "unattributed"


class LayerMappingError(UsageError):
    """A bad layer-type mapping or a model it cannot cover; the message says what to fix."""


@dataclass(frozen=True)
class Rule:
    """Modules whose qualified name fully matches ``pattern`` are units of ``layer_type``.

    ``ablation`` says how the unit is removed: ``skip-residual`` (its output is a residual
    branch, zeroing it leaves the skip path alone), ``identity`` (output = input) or
    ``zero-output`` (output set to zeros: nothing better is possible).
    """

    pattern: str
    layer_type: str
    ablation: str

    def __post_init__(self) -> None:
        if self.layer_type not in LAYER_TYPES:
            raise LayerMappingError(
                f"layer mapping: unknown layer type {self.layer_type!r} for {self.pattern!r}; "
                f"accepted: {', '.join(LAYER_TYPES)}"
            )
        if self.ablation not in ABLATIONS:
            raise LayerMappingError(
                f"layer mapping: unknown ablation {self.ablation!r} for {self.pattern!r}; "
                f"accepted: {', '.join(ABLATIONS)}"
            )
        try:
            re.compile(self.pattern)
        except re.error as error:
            raise LayerMappingError(f"layer mapping: {self.pattern!r} is not a regular expression ({error})") from None


def rules(*rows: tuple[str, str, str]) -> list[Rule]:
    return [Rule(*row) for row in rows]


MAPPINGS: dict[str, list[Rule]] = {
    "distilbert": rules(
        (r"distilbert\.embeddings", "embeddings", "zero-output"),
        (r".*\.layer\.\d+\.attention", "attention", "skip-residual"),  # LN(x + attn(x)): zero branch = skip
        (r".*\.layer\.\d+\.ffn", "ffn", "skip-residual"),
        (r".*\.(sa|output)_layer_norm", "layernorm", "identity"),
        (r"pre_classifier|classifier", "classifier", "zero-output"),
        (r"dropout", "dropout", "identity"),
    ),
    "gpt2": rules(
        (r"transformer\.(wte|wpe)", "embeddings", "zero-output"),
        (r"transformer\.drop", "dropout", "identity"),
        (r".*\.h\.\d+\.attn", "attention", "skip-residual"),  # x + attn(ln_1(x))
        (r".*\.h\.\d+\.mlp", "ffn", "skip-residual"),
        (r".*\.h\.\d+\.ln_\d|transformer\.ln_f", "layernorm", "identity"),
        (r"lm_head", "lm-head", "zero-output"),
    ),
    "bert": rules(
        (r"bert\.embeddings", "embeddings", "zero-output"),
        (r".*\.attention\.self", "attention", "zero-output"),  # feeds output.dense: zeroing it is not a skip
        (r".*\.attention\.output\.dense", "attention", "skip-residual"),  # LN(x + dense(h))
        (r".*\.intermediate", "ffn", "zero-output"),
        (r".*\.layer\.\d+\.output\.dense", "ffn", "skip-residual"),
        (r".*LayerNorm", "layernorm", "identity"),
        (r".*dropout", "dropout", "identity"),
        (r"bert\.pooler|classifier", "classifier", "zero-output"),
    ),
}


def extend_mapping(model_type: str, extra: list[tuple[str, str, str]]) -> None:
    """Add rules for an architecture (checked first), e.g. ``[("my_adapter", "ffn", "zero-output")]``."""
    MAPPINGS[model_type] = [*rules(*extra), *MAPPINGS.get(model_type, [])]


@dataclass(frozen=True)
class Unit:
    name: str
    layer_type: str
    ablation: str
    module: nn.Module = field(repr=False, compare=False)


def model_type(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", type(model).__name__))


def units(model: nn.Module, mapping: list[Rule] | None = None) -> list[Unit]:
    """The outermost matched modules of ``model``; LayerMappingError if a leaf is left uncovered."""
    kind = model_type(model)
    mapping = mapping if mapping is not None else MAPPINGS.get(kind)
    if mapping is None:
        raise LayerMappingError(
            f"layers: no layer-type mapping for architecture {kind!r}; known: "
            f"{', '.join(MAPPINGS)}; add one with energybench.layers.extend_mapping"
        )
    found: list[Unit] = []
    for name, module in model.named_modules():
        if any(name.startswith(u.name + ".") for u in found):
            continue
        rule = next((r for r in mapping if name and re.fullmatch(r.pattern, name)), None)
        if rule is not None:
            found.append(Unit(name, rule.layer_type, rule.ablation, module))
        elif name and not list(module.children()) and not is_quantization_glue(module):
            raise LayerMappingError(
                f"layers: leaf module {name!r} ({type(module).__name__}) of {kind} matches no "
                "layer-type rule; add one with energybench.layers.extend_mapping"
            )
    return found


def is_quantization_glue(module: nn.Module) -> bool:
    return type(module).__name__ in ("Identity", "QuantStub", "DeQuantStub")


class Timer:
    """Start/stop marks per unit: CUDA events on GPU, ``perf_counter_ns`` on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.name = "cuda-events" if self.cuda else "perf_counter_ns"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter_ns()

    def elapsed_s(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1e3 if self.cuda else (end - start) / 1e9


@dataclass
class Profile:
    """Raw per-unit times of ``passes`` hooked passes and their end-to-end times."""

    timer: str
    unit_s: dict[str, float]
    calls: dict[str, int]
    end_to_end_s: list[float]  # the hooked passes
    without_hooks_s: list[float]  # the interleaved passes without hooks


@contextmanager
def hooked(model_units: list[Unit], device: torch.device) -> Iterator[Callable[[], dict[str, float]]]:
    """Hooks on every unit while inside; removed on exit, also on error. Yields a ``collect()``."""
    timer = Timer(device)
    marks: list[tuple[str, Any, Any]] = []
    open_marks: dict[str, Any] = {}
    handles = []

    def before(name: str) -> Callable[..., None]:
        return lambda module, args: open_marks.__setitem__(name, timer.mark())

    def after(name: str) -> Callable[..., None]:
        return lambda module, args, output: marks.append((name, open_marks.pop(name), timer.mark()))

    try:
        for unit in model_units:
            handles.append(unit.module.register_forward_pre_hook(before(unit.name)))
            handles.append(unit.module.register_forward_hook(after(unit.name)))

        def collect() -> dict[str, float]:
            if timer.cuda:
                torch.cuda.synchronize()
            totals: dict[str, float] = {}
            for name, start, end in marks:
                totals[name] = totals.get(name, 0.0) + timer.elapsed_s(start, end)
            marks.clear()
            return totals

        yield collect
    finally:
        for handle in handles:
            handle.remove()


def profile(
    model: nn.Module, run: Callable[[], None], device: torch.device, passes: int, model_units: list[Unit] | None = None
) -> Profile:
    """Run ``run`` (which synchronizes itself) ``passes`` times with hooks on every unit, each hooked pass
    next to one without hooks, so the overhead compares passes under the same (noisy) machine load."""
    model_units = model_units if model_units is not None else units(model)
    unit_s = {u.name: 0.0 for u in model_units}
    calls = {u.name: 0 for u in model_units}
    hooked_s: list[float] = []
    plain_s: list[float] = []
    run()  # warm-up
    for _ in range(passes):
        plain_s.append(timed(run, device))
        with hooked(model_units, device) as collect:
            hooked_s.append(timed(run, device))
            for name, seconds in collect().items():
                unit_s[name] += seconds
                calls[name] += 1
    return Profile(Timer(device).name, unit_s, calls, hooked_s, plain_s)


def timed(run: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def flops_per_unit(model: nn.Module, run: Callable[[], None], model_units: list[Unit]) -> tuple[dict[str, int], int]:
    """FLOPs of one pass per unit and in total, from ``torch.utils.flop_counter.FlopCounterMode``."""
    with FlopCounterMode(display=False) as counter:
        run()
    counts = counter.get_flop_counts()
    by_name = {key.partition(".")[2]: sum(ops.values()) for key, ops in counts.items() if "." in key}
    return {u.name: int(by_name.get(u.name, 0)) for u in model_units}, int(counter.get_total_flops())


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def table(
    prof: Profile,
    model_units: list[Unit],
    flops: dict[str, int],
    total_flops: int,
    items_per_pass: int,
    energy_per_item_j: float | None,
) -> LayerTable:
    """Per unit and per layer type rows and the sum check; energy is the window's × time share."""
    passes = len(prof.end_to_end_s)
    total_s = sum(prof.end_to_end_s)
    per_item = passes * items_per_pass

    def row(seconds: float) -> dict[str, float | None]:
        share = seconds / total_s
        energy = energy_per_item_j * share if energy_per_item_j is not None else None
        return {"time_s_per_sample": seconds / per_item, "share": share, "energy_j_per_sample": energy}

    per_layer = [
        UnitRow(layer=u.name, layer_type=u.layer_type, calls=prof.calls[u.name], **row(prof.unit_s[u.name]))
        for u in model_units
    ]
    layers_s = sum(prof.unit_s.values())
    per_type = []
    for kind in dict.fromkeys(u.layer_type for u in model_units):
        names = [u.name for u in model_units if u.layer_type == kind]
        per_type.append(
            TypeRow(
                layer_type=kind,
                calls=sum(prof.calls[n] for n in names),
                **row(sum(prof.unit_s[n] for n in names)),
                flops_per_sample=sum(flops[n] for n in names) / items_per_pass,
            )
        )
    outside = max(total_s - layers_s, 0.0)
    per_type.append(
        TypeRow(
            layer_type=UNATTRIBUTED,
            calls=passes,
            **row(outside),
            flops_per_sample=max(total_flops - sum(flops.values()), 0) / items_per_pass,
        )
    )
    ratio = layers_s / total_s
    sum_check = SumCheck(layers_s=layers_s, end_to_end_s=total_s, ratio=ratio, within_10pct=abs(ratio - 1) <= 0.1)
    return LayerTable(per_layer=per_layer, per_type=per_type, timer=prof.timer, sum_check=sum_check)


def hook_overhead(prof: Profile, batch_size: int) -> HookOverhead:
    with_s, without_s = median(prof.end_to_end_s), median(prof.without_hooks_s)
    return HookOverhead(
        with_hooks_s=with_s,
        without_hooks_s=without_s,
        overhead_pct=(with_s / without_s - 1.0) * 100.0,
        batch_size=batch_size,
    )
