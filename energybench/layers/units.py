"""Per-layer timing with forward hooks, grouped by layer type, with a sum check and FLOPs.

A *unit* is the outermost module matched by a rule of the model's architecture (a whole
attention block, a whole FFN block, a LayerNorm, the embeddings, the head). Units cover every
leaf module (an uncovered leaf is an error, never a silent "other"), and they include the work
done in non-leaf forwards (the attention matmuls and softmax live in the attention module's
own forward, not in a leaf). What no unit covers (residual adds, mask building, pooling glue)
is reported as its own ``unattributed`` row: end-to-end time minus the sum of unit times.

Rules come from a hand mapping (distilbert, gpt2, bert, whose results stay as they were) or, for
any other architecture, from its module structure (``derived_mapping``): attention blocks
(``*Attention``), MLP blocks (``*MLP``), norms (``*RMSNorm``, ``*LayerNorm``), token and position
embeddings, rotary embeddings, dropout and the LM head. So Llama, Qwen2/3, Mistral, Gemma 2/3,
Phi-3, OPT and GPT-NeoX need no mapping written.
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

LAYER_TYPES = ("embeddings", "attention", "ffn", "layernorm", "rotary", "classifier", "lm-head", "dropout")
ABLATIONS = ("skip-residual", "identity", "zero-output", "no-rotation")
UNATTRIBUTED = "unattributed"


class LayerMappingError(UsageError):
    """A bad layer-type mapping or a model it cannot cover; the message says what to fix."""


@dataclass(frozen=True)
class Rule:
    """Modules whose qualified name fully matches ``pattern`` are units of ``layer_type``.

    ``ablation`` says how the unit is removed: ``skip-residual`` (its output is a residual
    branch, zeroing it leaves the skip path alone), ``identity`` (output = input) or
    ``zero-output`` (output set to zeros: nothing better is possible) or ``no-rotation`` (a rotary
    embedding's (cos, sin) set to (1, 0): every position rotated by zero, so attention loses the
    token positions and nothing else).
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


HAND_MAPPED = frozenset(MAPPINGS)  # every other architecture's rules are derived from its structure
STRUCTURE = (
    "attention *Attention, MLP *MLP, norms *RMSNorm/*LayerNorm, embeddings, rotary *RotaryEmbedding, dropout, LM head"
)
ATTENTION = re.compile(r"Attention$")
MLP = re.compile(r"(MLP|FeedForward|MoeBlock)$")
NORM = re.compile(r"(RMSNorm|LayerNorm)$")
ROTARY = re.compile(r"Rotary\w*Embedding$")
EMBEDDING = re.compile(r"Embeddings?$")
ACTIVATION_MODULES = ("torch.nn.modules.activation", "transformers.activations")


def extend_mapping(model_type: str, extra: list[tuple[str, str, str]]) -> None:
    """Add rules for an architecture (checked first), e.g. ``[("my_adapter", "ffn", "zero-output")]``.

    For an architecture without a hand mapping the rules come before those derived from its structure,
    and a derived unit that holds a module a rule of yours names is left out, so yours wins."""
    MAPPINGS[model_type] = [*rules(*extra), *MAPPINGS.get(model_type, [])]


def mapping_for(model: nn.Module) -> list[Rule]:
    """The hand mapping of the model's architecture, or the user's rules and those derived from its structure."""
    kind = model_type(model)
    own = MAPPINGS.get(kind, [])
    return own if kind in HAND_MAPPED else [*own, *derived_mapping(model, own)]


def derived_mapping(model: nn.Module, first: list[Rule] | None = None) -> list[Rule]:
    """One rule per unit, read off the module structure (outermost match wins). ``first``'s modules are left
    to ``first``; the other parts of a block that holds one keep the block's type (``zero-output``).
    Leaves it cannot place are left uncovered, so ``units`` names them."""
    names = [name for name, _ in model.named_modules() if name]
    claimed = [n for n in names if any(re.fullmatch(r.pattern, n) for r in first or [])]
    heads = {id(m): kind for m, kind in io_modules(model)}
    derived: list[Rule] = []
    taken: list[str] = []
    split: list[tuple[str, str]] = []  # (block, its layer type) of blocks a user rule reaches into
    for name, module in model.named_modules():
        if not name or any(name.startswith(t + ".") for t in taken):
            continue
        kind = heads.get(id(module)) or structural_kind(module) or loose_kind(model, name, module)
        if any(c == name or c.startswith(name + ".") for c in claimed):
            split += [(name, kind[0])] if kind else []
            continue
        block = next((k for n, k in reversed(split) if name.startswith(n + ".")), None)
        if kind is None and block and not list(module.children()):
            kind = block, "zero-output"
        if kind is not None:
            derived.append(Rule(re.escape(name), *kind))
            taken.append(name)
    return derived


def io_modules(model: nn.Module) -> list[tuple[nn.Module, tuple[str, str]]]:
    """The token embedding and the LM head, as the model itself names them."""
    found = []
    for getter, kind in (("get_input_embeddings", "embeddings"), ("get_output_embeddings", "lm-head")):
        try:
            module = getattr(model, getter)() if hasattr(model, getter) else None
        except (NotImplementedError, AttributeError):
            module = None
        if isinstance(module, nn.Module):
            found.append((module, (kind, "zero-output")))
    return found


def structural_kind(module: nn.Module) -> tuple[str, str] | None:
    """(layer type, ablation) from the module's class: a pre-norm (or post-norm) residual branch is skipped."""
    cls = type(module).__name__
    if ROTARY.search(cls):
        return "rotary", "no-rotation"
    if ATTENTION.search(cls):
        return "attention", "skip-residual"  # x + attn(norm(x)): a zero branch leaves the skip path
    if MLP.search(cls):
        return "ffn", "skip-residual"
    if NORM.search(cls):
        return "layernorm", "identity"
    if isinstance(module, nn.Embedding) or EMBEDDING.search(cls):
        return "embeddings", "zero-output"  # token or learned position embeddings
    if isinstance(module, nn.Dropout) or cls.endswith("Dropout"):
        return "dropout", "identity"
    return None


def loose_kind(model: nn.Module, name: str, module: nn.Module) -> tuple[str, str] | None:
    """An FFN written out in its decoder layer (OPT: fc1, activation, fc2 beside the attention block):
    the projection back to the model's width is the residual branch, the others feed it. A projection
    may hold children (torch.ao's int8 Linear holds its packed weights)."""
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    if not any(ATTENTION.search(type(child).__name__) for child in parent.children()):
        return None
    if type(module).__module__ in ACTIVATION_MODULES and not list(module.children()):
        return "ffn", "identity"
    if hasattr(module, "out_features"):
        width = getattr(getattr(model, "config", None), "hidden_size", None)
        return ("ffn", "skip-residual") if module.out_features == width else ("ffn", "zero-output")
    return None


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
    derived = mapping is None and kind not in HAND_MAPPED
    mapping = mapping if mapping is not None else mapping_for(model)
    found: list[Unit] = []
    for name, module in model.named_modules():
        if any(name.startswith(u.name + ".") for u in found):
            continue
        rule = next((r for r in mapping if name and re.fullmatch(r.pattern, name)), None)
        if rule is not None:
            found.append(Unit(name, rule.layer_type, rule.ablation, module))
        elif name and not list(module.children()) and not is_quantization_glue(module):
            how = f"its structure ({STRUCTURE}) does not say" if derived else "no layer-type rule matches"
            raise LayerMappingError(
                f"layers: leaf module {name!r} ({type(module).__name__}) of {kind}: {how} which layer type it is; "
                f"add a rule with energybench.layers.extend_mapping({kind!r}, [(pattern, layer_type, ablation)])"
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
