"""One benchmark case in a running session: its prepared model, its input batch and shape, and how
it skips and records. Every recorder (``energybench.harness.recorders``) measures through one."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from functools import cached_property
from typing import Any

import pytest
import torch

from energybench import data
from energybench.catalog import BASELINE_PRECISION, METRICS, variant
from energybench.harness.options import Settings
from energybench.harness.session import BenchSession, CaseSpec
from energybench.measure import workloads
from energybench.measure.quality import eval_text, max_positions
from energybench.models.precision import PrecisionUnsupported, Prepared
from energybench.models.registry import ModelSource
from energybench.results.schema import Record


class Case:
    """One model x precision x metric (x backend x shape) test of a session.

    ``build`` makes a precision that a converter alone cannot (``mixed``: from the layer study's
    plan); it raises PrecisionUnsupported, which skips the test with the reason."""

    def __init__(
        self, session: BenchSession, spec: CaseSpec, test_id: str, build: Callable[[Case], Prepared] | None = None
    ):
        self.session, self.spec, self.test_id, self.build = session, spec, test_id, build
        self.settings: Settings = session.settings
        self.source: ModelSource = session.sources[spec.model]

    @cached_property
    def prepared(self) -> Prepared:
        spec = self.spec
        build = (lambda: self.build(self)) if self.build is not None else None
        try:
            return self.session.prepared(spec.model, spec.precision, build, backend=spec.backend)
        except PrecisionUnsupported as error:
            self.skip(f"{self.label} on {self.session.device}: {error}")

    def release_for_fresh(self) -> None:
        """Free the session's prepared model before a memory figure of a fresh copy, unless the copy
        is made from it (a built precision: ``mixed``)."""
        if self.build is None:
            self.session.release_prepared()

    def fresh(self) -> Prepared:
        """A new converted copy of this case's model (memory figures). A precision a converter alone
        cannot make (``mixed``, built from the layer study's plan) is a deep copy of the built one."""
        spec = self.spec
        if self.build is None:
            return self.session.fresh(spec.model, spec.precision, spec.backend)
        built = self.prepared
        return dataclasses.replace(built, model=copy.deepcopy(built.model))

    @property
    def label(self) -> str:
        """The precision as run by this case's backend: ``int8``, ``onnxruntime-int8-static``."""
        return variant(self.spec.precision, self.spec.backend)

    @property
    def device(self) -> torch.device:
        return self.session.device

    @property
    def is_causal_lm(self) -> bool:
        return self.source.task == "causal-lm"

    @property
    def batch_size(self) -> int:
        """This test's batch size: its shape's, else the largest --batch-size (unshaped tests, users' own)."""
        return self.spec.batch_size or self.settings.batch_size

    @property
    def seq_len(self) -> int:
        return self.spec.seq_len or self.settings.seq_len

    def shape(self, batch_size: int, prepared: Prepared | None = None, seq_len: int | None = None) -> dict[str, int]:
        model = (prepared or self.prepared).model
        return {"batch_size": batch_size, "seq_len": min(seq_len or self.seq_len, max_positions(model))}

    def items(self, shape: dict[str, int]) -> int:
        """Items in one pass of ``shape``: tokens for causal LMs, sequences otherwise (energy is per item)."""
        return shape["batch_size"] * shape["seq_len"] if self.is_causal_lm else shape["batch_size"]

    def fp32_test_id(self) -> str:
        """The node id of the same test at fp32 (same model, same other parameters)."""
        base, bracket, params = self.test_id.partition("[")
        fp32 = dataclasses.replace(self.spec, precision=BASELINE_PRECISION)
        return base + bracket + params.replace(self.spec.id, fp32.id, 1)

    def input_batch(
        self, batch_size: int, prepared: Prepared | None = None, seq_len: int | None = None
    ) -> dict[str, torch.Tensor]:
        """A fixed-shape batch of real tokens (random ids for shape-only models)."""
        prepared = prepared or self.prepared
        shape = self.shape(batch_size, prepared, seq_len)
        tokenizer = prepared.loaded.tokenizer
        ids = None
        if tokenizer is not None:
            if self.is_causal_lm:
                texts = eval_text(prepared)[0].split("\n")
            else:
                texts = [sentence for sentence, _ in data.sst2("validation")[0]]
            ids = workloads.text_token_ids(tokenizer, texts, shape["batch_size"] * shape["seq_len"])
        return workloads.fixed_batch(ids, vocab_size=prepared.model.config.vocab_size, **shape)

    # -- what a case needs, or it skips with the reason ----------------------------------------
    def require_task(self) -> None:
        """A metric of another task (asked for by name): a skip with the reason, not an error."""
        metric = self.spec.metric
        task = METRICS[metric].task if metric in METRICS else None
        if task is not None and self.source.task not in (task, None):
            self.skip(f"{metric} needs a {task} model; {self.spec.model} is a {self.source.task} model")

    def require_trained_weights(self) -> None:
        if self.source.kind == "shape-only":
            self.skip(f"{self.spec.metric} is meaningless on shape-only models (random weights)")

    def require_hooks(self) -> None:
        """The layer study hooks nn.Modules: only eager and compile run them."""
        backend = self.spec.backend
        if not self.session.backend(backend).runs_hooks():
            self.skip(
                f"the layer study needs forward hooks on PyTorch modules; the {backend} backend runs "
                "no PyTorch modules (use --backend eager or compile)"
            )

    def skip(self, reason: str) -> None:
        self.record(None, "", "", status="skipped", reason=reason)
        pytest.skip(reason)

    def record(self, value: float | None, unit: str, method: str, metric: str | None = None, **fields: Any) -> Record:
        """A record of this case (its model, precision, backend, shape, source, test id) added to the session."""
        prepared = self.__dict__.get("prepared")
        details = dict(fields.pop("details", {}))
        if prepared is not None:
            details = {"implementation": prepared.implementation, **prepared.details, **details}
        spec = self.spec
        record = Record(
            model=spec.model,
            precision=spec.precision,
            metric=metric or spec.metric,
            value=value,
            unit=unit,
            method=method,
            device=str(self.device),
            source=self.source.to_dict(),
            test_id=self.test_id,
            details=details,
            backend=spec.backend,
            **{"shape": spec.shape, **fields},
        )
        return self.session.add(record)
