"""Behaviour against fp32 on the same inputs, from the quality pass itself (no second evaluation).

Aggregate quality hides behaviour: two precisions can score the same while disagreeing on one
sentence in ten. So beside accuracy and perplexity every precision gets, against the fp32 model
on the very inputs of the quality pass:

- classifiers: ``flips``, the share of sentences whose predicted label differs from fp32's, with
  an exact (Clopper-Pearson) binomial CI, and McNemar's lost / gained counts;
- causal LMs: top-1 next-token ``agreement`` with fp32 and ``output-kl``, the mean KL(fp32 || this)
  per scored token in nats, each with a CI that resamples whole windows (tokens of one window are
  not independent);
- ``recovery``: this quality / fp32 quality in % (perplexity: fp32's / this one's, so 100 % is
  fp32 and higher is better), with a paired bootstrap CI (sentences, or windows, resampled together);
- perplexity by position: NLL and perplexity per bucket of the predicted token's position inside
  its window (the context it saw), whose token-weighted sum is the total.

How KL is exact without keeping fp32's logits. Full-vocabulary log-probs for every token of the
WikiText-2 test split do not fit (tokens x vocab: 280 k x 50 k x 2 B = 28 GB for GPT-2). But fp32's
distribution at a token is ``log_softmax(head(h))``, a function of the input ``h`` of its output
layer (d = 768 floats for GPT-2, 128 for the embedded one: 1/65 and 1/32 of the vocabulary). The
fp32 pass (:class:`LMTrace` with ``keep_reference=True``) keeps ``h`` for the scored tokens and a
copy of fp32's output layer; the quantized pass rebuilds fp32's log-probs batch by batch and takes
the full-vocabulary KL exactly (float32). Kept ``h`` is checked on the first batch to rebuild the
pass's own log-probs (``HEAD_CHECK_NATS``); where it does not (a head with logit post-processing),
or where ``h`` would exceed ``REFERENCE_BYTES_CAP``, the reference keeps fp32's top-``TOP_K``
log-probs and its exact entropy instead, and KL is reported as a bracket: the lower bound is the
KL of the top-k + tail-bucket coarsening (data processing inequality), the upper bound bounds the
tail's cross-entropy by its mass times the largest ``-log q``. The record says which (``kl_method``).

Re-running fp32 next to the quantized model on each window would also be exact, but it is a second
fp32 evaluation per precision (the cost this module exists to avoid), so it is not done.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from energybench.stats import binomial_ci, bootstrap_ci

POSITION_EDGES = (0, 128, 512)  # buckets [0, 128), [128, 512), [512, end of window)
REFERENCE_BYTES_CAP = 1 << 30  # fp32's kept head inputs; past this, the top-k bracket
TOP_K = 64
TAIL_EPS = 1e-6  # a top-k tail mass below this is rounding (float32 log-probs), not probability
HEAD_CHECK_NATS = 1e-3  # rebuilt fp32 log-probs must match the pass's own within this
BOOTSTRAP_RESAMPLES = 2000
EXACT_KL = "exact: full-vocabulary KL, fp32's log-probs rebuilt from its kept output-layer inputs (float32)"


# -- statistics --------------------------------------------------------------------------------
def paired_bootstrap_ci(samples: Sequence[Any], statistic: Callable[..., Any], seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(*samples, axis=-1)``, the samples resampled together
    (``energybench.stats.bootstrap_ci``). Percentile, not BCa: with a few discordant sentences
    BCa's correction drew intervals that excluded "no change" where McNemar's exact test did not
    (3 lost / 0 gained of 872, p = 0.25), and its jackknife costs n evaluations (5,000 windows).
    Identical outputs (or degenerate resamples) give the point itself."""
    arrays = tuple(np.asarray(s, dtype=float) for s in samples)
    found = bootstrap_ci(arrays, statistic, paired=True, resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    if found is not None:
        return found
    point = float(statistic(*arrays, axis=-1))
    return (point, point)


def ratio_of_sums(numerators: Any, denominators: Any, axis: int = -1) -> Any:
    return np.sum(numerators, axis=axis) / np.sum(denominators, axis=axis)


# -- classifiers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flips:
    """Sentences whose predicted label differs from fp32's, with McNemar's split of them."""

    flipped: int
    total: int
    flips_pp: float  # flipped / total, in percentage points
    ci95_pp: tuple[float, float]  # exact binomial (sentences are independent draws)
    lost: int  # fp32 right, this one wrong
    gained: int  # fp32 wrong, this one right
    method: str = "exact (Clopper-Pearson) binomial CI over sentences"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flips(
    reference_labels: Sequence[int],
    labels: Sequence[int],
    reference_correct: Sequence[bool],
    correct: Sequence[bool],
) -> Flips:
    """Predicted labels of fp32 and of this precision on the same sentences, in data order."""
    ref, mine = np.asarray(reference_labels), np.asarray(labels)
    ref_ok, ok = np.asarray(reference_correct, dtype=bool), np.asarray(correct, dtype=bool)
    if not (ref.shape == mine.shape == ref_ok.shape == ok.shape) or ref.size == 0:
        raise ValueError(f"flips need the same sentences on both sides: {ref.size} vs {mine.size}")
    flipped = int(np.sum(ref != mine))
    low, high = binomial_ci(flipped, ref.size)
    lost, gained = int(np.sum(ref_ok & ~ok)), int(np.sum(~ref_ok & ok))
    return Flips(flipped, int(ref.size), 100.0 * flipped / ref.size, (100.0 * low, 100.0 * high), lost, gained)


@dataclass(frozen=True)
class Recovery:
    """This precision's quality as a share of fp32's, in % (higher is better, 100 = fp32)."""

    recovery_pct: float
    ci95_pct: tuple[float, float]
    reference_value: float
    value: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy_recovery(reference_correct: Sequence[bool], correct: Sequence[bool], seed: int = 0) -> Recovery:
    """accuracy / fp32 accuracy x 100, CI by a paired bootstrap over sentences."""
    ref, mine = np.asarray(reference_correct, dtype=float), np.asarray(correct, dtype=float)
    if ref.shape != mine.shape or ref.size == 0 or ref.sum() == 0:
        raise ValueError(f"recovery needs the same sentences and a nonzero fp32 accuracy: {ref.size} vs {mine.size}")

    def statistic(a: Any, b: Any, axis: int = -1) -> Any:
        return 100.0 * ratio_of_sums(b, a, axis)

    ci = paired_bootstrap_ci((ref, mine), statistic, seed)
    method = "accuracy / fp32 accuracy; percentile paired bootstrap over sentences"
    return Recovery(float(statistic(ref, mine)), ci, float(ref.mean()), float(mine.mean()), method)


def perplexity_recovery(
    reference_nll: Sequence[float], nll: Sequence[float], tokens: Sequence[int], seed: int = 0
) -> Recovery:
    """fp32 perplexity / this perplexity x 100 from per-window NLL sums over the same tokens;
    CI by a paired bootstrap over windows."""
    ref, mine, counts = (np.asarray(x, dtype=float) for x in (reference_nll, nll, tokens))
    if not (ref.shape == mine.shape == counts.shape) or ref.size == 0:
        raise ValueError(f"recovery needs the same windows on both sides: {ref.size} vs {mine.size}")

    def statistic(a: Any, b: Any, n: Any, axis: int = -1) -> Any:
        return 100.0 * np.exp(ratio_of_sums(a, n, axis) - ratio_of_sums(b, n, axis))

    ci = paired_bootstrap_ci((ref, mine, counts), statistic, seed)
    ppl_ref, ppl = math.exp(ref.sum() / counts.sum()), math.exp(mine.sum() / counts.sum())
    method = "fp32 perplexity / this perplexity; percentile paired bootstrap over windows"
    return Recovery(float(statistic(ref, mine, counts)), ci, ppl_ref, ppl, method)


# -- causal LMs: the trace of one perplexity pass ------------------------------------------------
@dataclass
class WindowTrace:
    """One window's scored tokens: the predicted token's position in the window, its NLL, the argmax
    id, and (against a reference) the per-token KL(fp32 || this), with its upper bound in top-k mode."""

    positions: np.ndarray
    nll: np.ndarray
    argmax: np.ndarray
    kl: np.ndarray | None = None
    kl_upper: np.ndarray | None = None


@dataclass
class LMReference:
    """fp32's side of the behaviour metrics of one model, kept for the session.

    ``mode`` "exact": ``hidden`` holds fp32's output-layer input for each scored token and ``head`` a
    float32 copy of that layer. ``mode`` "top-k": ``top_ids`` / ``top_logprobs`` hold its top-k
    log-probs and ``neg_entropy`` the exact sum p log p of each token; ``reason`` says why."""

    mode: str
    reason: str
    windows: dict[int, WindowTrace]
    head: nn.Module | None = None
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    top_ids: dict[int, torch.Tensor] = field(default_factory=dict)
    top_logprobs: dict[int, torch.Tensor] = field(default_factory=dict)
    neg_entropy: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def kept_bytes(self) -> int:
        kept = [*self.hidden.values(), *self.top_ids.values(), *self.top_logprobs.values(), *self.neg_entropy.values()]
        return sum(t.numel() * t.element_size() for t in kept)

    @property
    def kl_method(self) -> str:
        if self.mode == "exact":
            return EXACT_KL
        return (
            f"bounds: top-{TOP_K} + tail bucket (lower, the value) to a tail mass x max -log q (upper); {self.reason}"
        )


def output_head(model: Any) -> nn.Module | None:
    """The model's output layer (its input determines the logits), or None."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if isinstance(head, nn.Module) else None


class LMTrace:
    """The tap of one perplexity pass (``quality.perplexity(..., tap=trace)``): per scored token its
    position, NLL and argmax; with ``keep_reference`` (the fp32 pass) what :class:`LMReference`
    needs; with ``against`` (any other precision) the per-token KL(fp32 || this) and agreement."""

    def __init__(self, against: LMReference | None = None, keep_reference: bool = False, exact: bool = True) -> None:
        """``exact=False`` (reference side): keep the top-k bracket even where the exact KL fits (it
        costs the comparing passes a gather of k log-probs instead of rebuilding fp32's vocabulary)."""
        if against is not None and keep_reference:
            raise ValueError("a trace either keeps the fp32 reference or compares with it, not both")
        self.against, self.keep_reference, self.exact = against, keep_reference, exact
        self.windows: dict[int, WindowTrace] = {}
        self.mode, self.reason = "exact", ""
        self.head: nn.Module | None = None
        self.kept = LMReference("exact", "", self.windows)
        self._hidden: torch.Tensor | None = None
        self._checked = False
        self._heads: dict[str, nn.Module] = {}

    @contextlib.contextmanager
    def watching(self, model: Any, tokens: int) -> Iterator[None]:
        """Around the pass: hook fp32's output layer (``keep_reference`` only). ``tokens`` bounds the
        scored tokens, so the kept inputs' size is known before the first window."""
        if not self.keep_reference:
            yield
            return
        head = output_head(model)
        width = int(head.weight.shape[1]) if head is not None and getattr(head, "weight", None) is not None else 0
        if not self.exact:
            self.use_top_k("the top-k bracket was asked for (exact=False)")
        elif not width:
            self.use_top_k("the model exposes no output layer to rebuild its log-probs from")
        elif tokens * width * 4 > REFERENCE_BYTES_CAP:
            gib = tokens * width * 4 / 2**30
            self.use_top_k(f"fp32's output-layer inputs would take {gib:.1f} GiB (cap {REFERENCE_BYTES_CAP >> 30} GiB)")
        if self.mode != "exact":
            yield
            return
        self.head = copy.deepcopy(head).float().eval()
        handle = head.register_forward_hook(self._capture)
        try:
            yield
        finally:
            handle.remove()
            self._hidden = None

    def _capture(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._hidden = args[0].detach()

    def use_top_k(self, reason: str) -> None:
        self.mode, self.reason = "top-k", reason
        self.kept.hidden.clear()

    @torch.inference_mode()
    def observe(
        self, windows: Sequence[tuple[int, int, int]], logprobs: torch.Tensor, token_nll: torch.Tensor, batch: Any
    ) -> None:
        """One forward of windows of one length: ``logprobs`` [rows, length - 1, vocab] (float32),
        ``token_nll`` [rows, length - 1]; ``windows`` (begin, end, scored) as the perplexity loop's."""
        for row, (begin, end, target_len) in enumerate(windows):
            length = end - begin
            first = max(length - target_len, 1)  # the perplexity loop's rule: the first token has no prediction
            lp = logprobs[row, first - 1 :]
            trace = WindowTrace(
                np.arange(first, length, dtype=np.int32),
                token_nll[row, first - 1 :].double().cpu().numpy(),
                lp.argmax(-1).to(torch.int32).cpu().numpy(),
            )
            if self.keep_reference:
                self.keep(begin, row, first, length, lp)
            if self.against is not None:
                trace.kl, trace.kl_upper = self.divergence(begin, lp)
            self.windows[begin] = trace

    def keep(self, begin: int, row: int, first: int, length: int, lp: torch.Tensor) -> None:
        if self.mode == "exact" and self._hidden is not None:
            hidden = self._hidden[row, first - 1 : length - 1].float().cpu().clone()
            if not self._checked:
                self._checked = True
                error = float((rebuild(self.head, hidden) - lp.cpu()).abs().max())
                if error > HEAD_CHECK_NATS:
                    self.use_top_k(f"fp32's output layer rebuilt its log-probs only within {error:.2g} nats")
            if self.mode == "exact":
                self.kept.hidden[begin] = hidden
                return
        self.use_top_k(self.reason or "fp32's output-layer inputs were not seen by the hook")
        values, ids = lp.topk(min(TOP_K, lp.shape[-1]), dim=-1)
        self.kept.top_ids[begin] = ids.to(torch.int32).cpu()
        self.kept.top_logprobs[begin] = values.cpu()
        self.kept.neg_entropy[begin] = (lp.double().exp() * lp.double()).sum(-1).cpu()

    def reference(self) -> LMReference:
        """fp32's reference from this (``keep_reference``) pass."""
        if not self.keep_reference or not self.windows:
            raise ValueError("no fp32 reference: run the fp32 perplexity pass with LMTrace(keep_reference=True)")
        self.kept.mode, self.kept.reason = self.mode, self.reason
        self.kept.head = self.head if self.mode == "exact" else None
        return self.kept

    def divergence(self, begin: int, lq: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-token KL(fp32 || this) in nats over the full vocabulary (exact), or its bracket (top-k)."""
        ref = self.against
        if begin not in ref.windows:
            raise ValueError(f"the fp32 reference has no window at token {begin}: run both passes on the same windows")
        if ref.mode == "exact":
            lp = rebuild(self.reference_head(lq.device), ref.hidden[begin].to(lq.device))
            diff = lp - lq
            return torch.linalg.vecdot(lp.exp_(), diff).double().cpu().numpy(), None  # sum p (log p - log q)
        lower, upper = kl_bounds(
            ref.top_ids[begin].to(lq.device), ref.top_logprobs[begin].to(lq.device), ref.neg_entropy[begin], lq
        )
        return lower.cpu().numpy(), upper.cpu().numpy()

    def reference_head(self, device: torch.device) -> nn.Module:
        key = str(device)
        if key not in self._heads:
            self._heads[key] = self.against.head.to(device) if self.against.head is not None else None
        return self._heads[key]


def rebuild(head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """fp32's log-probs from its output layer's inputs (float32)."""
    return torch.log_softmax(head(hidden).float(), dim=-1)


def kl_bounds(
    ids: torch.Tensor, top_lp: torch.Tensor, neg_entropy: torch.Tensor, lq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds of KL(p || q) per token from p's top-k (ids, log-probs), p's exact
    sum p log p and q's full log-probs. Lower: the KL of the coarsening into the top-k tokens and one
    tail bucket (never above the true KL). Upper: the tail's -sum p log q bounded by its mass times
    the largest -log q over the vocabulary. Sums in float64; exact within float32 rounding (~1e-6 nats)."""
    lqk = lq.gather(-1, ids.long()).double()
    lpk = top_lp.double()
    pk = lpk.exp()
    head = (pk * (lpk - lqk)).sum(-1)
    # Tail masses under TAIL_EPS are float32 rounding of log-probs that sum to 1, not mass: zero for p;
    # q's is floored there (a larger q only lowers p log(p / q), so the lower bound stays one).
    p_tail = 1.0 - pk.sum(-1)
    p_tail = torch.where(p_tail > TAIL_EPS, p_tail, 0.0)
    q_tail = (1.0 - lqk.exp().sum(-1)).clamp(min=TAIL_EPS)
    tail_lower = torch.where(p_tail > 0, p_tail * (p_tail.clamp(min=TAIL_EPS).log() - q_tail.log()), 0.0)
    tail_plogp = neg_entropy.to(lq.device) - (pk * lpk).sum(-1)
    tail_upper = tail_plogp - p_tail * lq.min(-1).values.double()
    return (head + tail_lower).cpu(), (head + tail_upper).cpu()


# -- causal LMs: the figures -------------------------------------------------------------------
@dataclass(frozen=True)
class PositionBucket:
    """Scored tokens whose position in the window (the context they saw) is in ``first..last``."""

    first: int
    last: int | None  # inclusive; None: to the end of the window
    tokens: int
    nll_sum: float
    perplexity: float | None  # None: no token in this bucket (a window shorter than ``first``)

    @property
    def label(self) -> str:
        return f"{self.first}-{self.last}" if self.last is not None else f"{self.first}+"


def position_buckets(
    windows: dict[int, WindowTrace], edges: Sequence[int] = POSITION_EDGES
) -> tuple[PositionBucket, ...]:
    """Token-weighted NLL and perplexity per position bucket; the buckets' NLL sums add up to the total."""
    if not windows:
        raise ValueError("no scored tokens: the perplexity pass saw no window")
    positions = np.concatenate([w.positions for w in windows.values()])
    nll = np.concatenate([w.nll for w in windows.values()])
    which = np.searchsorted(np.asarray(edges[1:]), positions, side="right")
    buckets = []
    for index, first in enumerate(edges):
        last = edges[index + 1] - 1 if index + 1 < len(edges) else None
        chosen = nll[which == index]
        total = float(chosen.sum())
        buckets.append(
            PositionBucket(first, last, int(chosen.size), total, math.exp(total / chosen.size) if chosen.size else None)
        )
    return tuple(buckets)


@dataclass(frozen=True)
class LMBehaviour:
    """A causal LM's behaviour against fp32 over the scored tokens of the perplexity pass."""

    tokens: int
    windows: int
    agreement_pct: float  # top-1 next-token agreement with fp32
    agreement_ci95_pct: tuple[float, float]
    output_kl: float  # mean KL(fp32 || this) per scored token, nats (the lower bound in top-k mode)
    output_kl_ci95: tuple[float, float]
    kl_method: str
    output_kl_upper: float | None  # top-k mode: the bracket's upper end
    recovery: Recovery
    by_position: tuple[PositionBucket, ...]
    reference_by_position: tuple[PositionBucket, ...]
    ci_method: str = "percentile bootstrap over windows (a window's tokens are not independent)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lm_behaviour(trace: LMTrace, seed: int = 0, edges: Sequence[int] = POSITION_EDGES) -> LMBehaviour:
    """Agreement, KL, recovery and perplexity by position of a pass traced ``against`` fp32."""
    ref = trace.against
    if ref is None:
        raise ValueError("this trace has no fp32 reference: run the pass with LMTrace(against=reference)")
    begins = sorted(trace.windows)
    if begins != sorted(ref.windows) or any(trace.windows[b].nll.size != ref.windows[b].nll.size for b in begins):
        raise ValueError(
            f"the pass scored {len(begins)} windows, the fp32 reference {len(ref.windows)}: "
            "run both with the same --ppl-context, --ppl-stride and --max-samples"
        )
    mine, theirs = [trace.windows[b] for b in begins], [ref.windows[b] for b in begins]
    counts = np.array([w.nll.size for w in mine], dtype=float)
    agree = np.array([np.sum(a.argmax == b.argmax) for a, b in zip(mine, theirs)], dtype=float)
    kl = np.array([w.kl.sum() for w in mine])

    def percent(num: Any, den: Any, axis: int = -1) -> Any:
        return 100.0 * ratio_of_sums(num, den, axis)

    upper = float(sum(w.kl_upper.sum() for w in mine) / counts.sum()) if ref.mode != "exact" else None
    return LMBehaviour(
        tokens=int(counts.sum()),
        windows=len(begins),
        agreement_pct=float(percent(agree, counts)),
        agreement_ci95_pct=paired_bootstrap_ci((agree, counts), percent, seed),
        output_kl=float(kl.sum() / counts.sum()),
        output_kl_ci95=paired_bootstrap_ci((kl, counts), ratio_of_sums, seed),
        kl_method=ref.kl_method,
        output_kl_upper=upper,
        recovery=perplexity_recovery([w.nll.sum() for w in theirs], [w.nll.sum() for w in mine], counts, seed),
        by_position=position_buckets(trace.windows, edges),
        reference_by_position=position_buckets(ref.windows, edges),
    )
