"""The fixtures a benchmark asks for, registered by the plugin: ``eb``, ``eb_model``, ``power_meter``,
``layer_profile``, ``quality_budget`` and ``eb_record``. Each builds its object from
``energybench.harness.user_api`` (imported when a test first asks, so ``pytest --help`` stays light)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # heavy (torch): imported where used
    from energybench.harness.session import BenchSession, CaseSpec
    from energybench.harness.user_api import Eb, EbModel, LayerProfile, MetricRecorder, PowerMeter, QualityBudget

SESSION_KEY = pytest.StashKey["BenchSession"]()


def bench_session(config: pytest.Config) -> BenchSession:
    """The session the plugin keeps in ``config.stash``."""
    return config.stash[SESSION_KEY]


@pytest.fixture
def eb(request: pytest.FixtureRequest, eb_case: CaseSpec) -> Eb:
    """The benchmark context of one model x precision x metric case."""
    from energybench.harness.user_api import Eb  # deferred: heavy

    case = Eb(bench_session(request.config), eb_case, request.node.nodeid)
    case.require_task()
    return case


@pytest.fixture
def eb_model(eb: Eb) -> EbModel:
    """The case's loaded, converted model: .model, .tokenizer, .source, .implementation, .precision, .device."""
    from energybench.harness.user_api import EbModel  # deferred: heavy

    return EbModel(eb)


@pytest.fixture
def power_meter(eb: Eb) -> PowerMeter:
    """power_meter.measure(run, items=N): energy per item, power and CO2 records of this test."""
    from energybench.harness.user_api import PowerMeter  # deferred: heavy

    return PowerMeter(eb)


@pytest.fixture
def layer_profile(eb: Eb, eb_model: EbModel) -> LayerProfile:
    """layer_profile(run, items=N): the per-unit time / share / FLOPs table of the model."""
    from energybench.harness.user_api import LayerProfile  # deferred: heavy

    return LayerProfile(eb, eb_model)


@pytest.fixture
def quality_budget(eb: Eb, eb_model: EbModel) -> QualityBudget:
    """quality_budget.check(name, value, higher_is_better=..., limit="1pp"): against this test's fp32 value."""
    from energybench.harness.user_api import QualityBudget  # deferred: heavy

    return QualityBudget(eb, eb_model)


@pytest.fixture
def eb_record(eb: Eb) -> MetricRecorder:
    """eb_record(name, value, unit=..., higher_is_better=...): one number of your own metric, saved in the run."""
    from energybench.harness.user_api import MetricRecorder  # deferred: heavy

    return MetricRecorder(eb)
