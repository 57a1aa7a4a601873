"""Meters against realistic fakes: an autospec'd pynvml and a fake powercap tree; CodeCarbon for real."""

from __future__ import annotations

import math
import time
from unittest import mock

import pynvml
import pytest

from energybench.measure import energy
from energybench.measure.meters import MeterUnavailable, Reading, implausible
from energybench.measure.meters import nvml as nvml_meter
from energybench.measure.meters.fake import FakeMeter
from energybench.measure.meters.nvml import NvmlMeter, cross_check, integrate
from energybench.measure.meters.rapl import RaplMeter, Zone, discover, probe
from energybench.measure.meters.selection import MeterSet, open_meters

# -- NVML -------------------------------------------------------------------------------


class FakeGpus:
    """Per-GPU power, an energy counter that advances every `period_s`, clock-event reasons and SM clock.

    `sampled_scale` scales the power that the sensors report against what the counter counts.
    """

    def __init__(self, powers_w=(300.0,), period_s=0.02):
        self.powers_w, self.period_s, self.t0 = list(powers_w), period_s, time.perf_counter()
        self.reasons, self.clock_mhz, self.sampled_scale = 0x0, 1980, 1.0
        self.offset_mj = [0.0] * len(powers_w)

    def index(self, handle):
        return int(handle.removeprefix("gpu"))

    def energy_mj(self, handle):
        i = self.index(handle)
        ticks = math.floor((time.perf_counter() - self.t0) / self.period_s)
        return int(5e9 + self.offset_mj[i] + self.powers_w[i] * ticks * self.period_s * 1000)

    def fields(self, handle, ids):
        """nvmlDeviceGetFieldValues as the driver answers it: NVML_FI_DEV_POWER_INSTANT in mW."""
        values = (pynvml.c_nvmlFieldValue_t * len(ids))()
        for value, (field, scope) in zip(values, ids):
            value.fieldId, value.scopeId = field, scope
            if field == pynvml.NVML_FI_DEV_POWER_INSTANT and self.instant:
                value.nvmlReturn = pynvml.NVML_SUCCESS
                value.value.uiVal = int(self.powers_w[self.index(handle)] * self.sampled_scale * 1000)
            else:
                value.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    def nvml(self, counter=True, instant=True):
        self.instant = instant
        fake = mock.create_autospec(pynvml)
        fake.nvmlDeviceGetCount.return_value = len(self.powers_w)
        fake.nvmlDeviceGetHandleByIndex.side_effect = lambda i: f"gpu{i}"
        fake.nvmlDeviceGetName.return_value = b"NVIDIA H100 80GB HBM3"
        fake.nvmlSystemGetDriverVersion.return_value = "570.86.15"
        fake.nvmlDeviceGetEnforcedPowerLimit.return_value = 700000
        fake.nvmlDeviceGetTemperature.return_value = 41
        fake.nvmlDeviceGetClockInfo.side_effect = lambda h, kind: self.clock_mhz
        fake.nvmlDeviceGetCurrentClocksEventReasons.side_effect = lambda h: self.reasons
        fake.nvmlDeviceGetPowerUsage.side_effect = lambda h: self.powers_w[self.index(h)] * self.sampled_scale * 1000
        fake.nvmlDeviceGetFieldValues.side_effect = self.fields
        if counter:
            fake.nvmlDeviceGetTotalEnergyConsumption.side_effect = self.energy_mj
        else:
            fake.nvmlDeviceGetTotalEnergyConsumption.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return fake


def window(meter, seconds):
    meter.start()
    time.sleep(seconds)
    return meter.stop()


def test_nvml_counter_is_measured_with_the_probed_update_period_and_device_state():
    gpus = FakeGpus(period_s=0.02)
    meter = NvmlMeter(0, nvml=gpus.nvml(), probe_s=0.2)
    assert meter.has_counter and meter.update_period_s == pytest.approx(0.02, rel=0.3)
    reading = window(meter, 0.3)
    assert reading.method == "measured" and reading.device == "gpu:0 NVIDIA H100 80GB HBM3"
    assert reading.avg_power_w == pytest.approx(300, rel=0.2)
    state = reading.details["state_start"]
    assert state == {
        "driver": "570.86.15",
        "power_limit_w": 700.0,
        "temperature_c": 41,
        "sm_clock_mhz": 1980,
        "clock_event_reasons": [],
    }
    assert reading.details["throttled"] == []


def test_nvml_counter_reset_is_dropped_never_stored():
    gpus = FakeGpus()
    meter = NvmlMeter(0, nvml=gpus.nvml(), probe_s=0.05)
    meter.start()
    time.sleep(0.1)
    gpus.offset_mj[0] = -5e9  # driver reload: the counter restarts near zero
    reading = meter.stop()
    assert reading.energy_j is None and "went backwards" in reading.reason


def test_nvml_counter_wrap_in_uint64_would_also_go_backwards():
    assert implausible(-3.0, 1.0, 0.1).startswith("energy delta -3 J is not positive")


def test_nvml_not_supported_falls_back_to_sampled_power():
    gpus = FakeGpus(powers_w=(250.0,))
    meter = NvmlMeter(0, nvml=gpus.nvml(counter=False), probe_s=0.05)
    assert not meter.has_counter
    reading = window(meter, 0.4)
    assert reading.method == "sampled" and reading.samples >= 5
    assert reading.avg_power_w == pytest.approx(250, rel=0.15)
    assert reading.details["counter"] == "instant power sampling" and "cross_check" not in reading.details


def test_nvml_without_counter_or_power_is_unavailable_with_the_reason():
    fake = FakeGpus().nvml(counter=False, instant=False)
    fake.nvmlDeviceGetPowerUsage.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    with pytest.raises(MeterUnavailable, match="reports neither its energy counter nor its power"):
        NvmlMeter(0, nvml=fake, probe_s=0.05)


def test_nvml_nan_power_gives_none_with_the_reason():
    gpus = FakeGpus()
    fake = gpus.nvml(counter=False, instant=False)
    fake.nvmlDeviceGetPowerUsage.side_effect = lambda h: math.nan
    meter = NvmlMeter(0, nvml=fake, probe_s=0.05)
    reading = window(meter, 0.2)
    assert reading.energy_j is None and "valid power sample" in reading.reason
    assert reading.details["dropped_samples"] >= 3


def test_nvml_window_shorter_than_the_update_period_is_refused():
    meter = NvmlMeter(0, nvml=FakeGpus(period_s=0.1).nvml(), probe_s=0.05)
    meter.update_period_s = 0.1
    reading = window(meter, 0.01)
    assert reading.energy_j is None and "shorter than the sensor update period" in reading.reason


def test_nvml_throttle_event_is_recorded():
    gpus = FakeGpus()
    meter = NvmlMeter(0, nvml=gpus.nvml(), probe_s=0.05)
    meter.start()
    time.sleep(0.1)
    gpus.reasons = 0x20 | 0x4  # sw thermal slowdown + sw power cap
    reading = meter.stop()
    assert reading.details["throttled"] == ["sw_power_cap", "sw_thermal_slowdown"]


def test_two_gpus_are_metered_apart():
    gpus = FakeGpus(powers_w=(100.0, 400.0))
    fake = gpus.nvml()
    zero, one = NvmlMeter(0, nvml=fake, probe_s=0.05), NvmlMeter(1, nvml=fake, probe_s=0.05)
    zero.start(), one.start()
    time.sleep(0.3)
    a, b = zero.stop(), one.stop()
    assert a.device.startswith("gpu:0") and b.device.startswith("gpu:1")
    assert b.energy_j / a.energy_j == pytest.approx(4.0, rel=0.25)


def test_nvml_probe_names_a_missing_gpu_and_a_missing_driver():
    fake = FakeGpus().nvml()
    with pytest.raises(MeterUnavailable, match="GPU index 3 does not exist"):
        NvmlMeter(3, nvml=fake)
    fake.nvmlInit.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    with pytest.raises(MeterUnavailable, match="NVML cannot start"):
        NvmlMeter(0, nvml=fake)


def test_nvml_counter_window_is_cross_checked_against_instant_power(monkeypatch):
    monkeypatch.setattr(nvml_meter, "JUDGED_WINDOW_S", 0.2)  # stands for the 5 s of a real window
    meter = NvmlMeter(0, nvml=FakeGpus(powers_w=(400.0,)).nvml(), probe_s=0.05)
    assert meter.power_source == "instant"
    reading = window(meter, 0.4)
    check = reading.details["cross_check"]
    assert reading.method == "measured" and check["power_source"] == "instant" and check["samples"] >= 5
    assert check["ratio"] == pytest.approx(1.0, abs=0.05) and check["verdict"] == "agrees"
    assert check["counter_j"] == reading.energy_j and reading.details["flags"] == []


def test_nvml_counter_and_power_apart_over_5_percent_is_unstable_but_kept(monkeypatch):
    monkeypatch.setattr(nvml_meter, "JUDGED_WINDOW_S", 0.2)
    gpus = FakeGpus(powers_w=(400.0,))
    gpus.sampled_scale = 1.2
    reading = window(NvmlMeter(0, nvml=gpus.nvml(), probe_s=0.05), 0.4)
    check = reading.details["cross_check"]
    assert check["verdict"] == "unstable" and check["ratio"] == pytest.approx(1.2, abs=0.06)
    assert reading.energy_j == pytest.approx(400 * reading.duration_s, rel=0.2)  # the counter stays the reading
    assert reading.details["flags"] == [check["reason"]] and "apart, over 5%" in check["reason"]


def test_cross_check_rules():
    assert cross_check(100.0, 104.9, 6.0, "instant", 300)["verdict"] == "agrees"
    unstable = cross_check(100.0, 94.0, 6.0, "instant", 300)
    assert unstable["verdict"] == "unstable" and unstable["ratio"] == pytest.approx(0.94)
    short = cross_check(100.0, 130.0, 4.9, "average_1s", 240)
    assert short["verdict"] == "unjudged" and "not judged: window 4.90 s is under 5 s" in short["reason"]
    assert cross_check(100.0, None, 6.0, None, 0)["reason"] == "no power samples to compare"
    assert cross_check(0.0, 50.0, 6.0, "instant", 300)["reason"] == "counter energy is not positive"


def test_nvml_clock_power_limit_and_throttle_changes_between_the_ends_are_flagged():
    gpus = FakeGpus()
    fake = gpus.nvml()
    meter = NvmlMeter(0, nvml=fake, probe_s=0.05)
    meter.start()
    time.sleep(0.1)
    gpus.clock_mhz, gpus.reasons = 1755, 0x4
    fake.nvmlDeviceGetEnforcedPowerLimit.return_value = 500000
    flags = meter.stop().details["flags"]
    assert flags == [
        "sm_clock_mhz changed in the window: 1980 -> 1755",
        "power_limit_w changed in the window: 700.0 -> 500.0",
        "clock_event_reasons changed in the window: [] -> ['sw_power_cap']",
    ]


def test_nvml_without_the_instant_field_or_the_new_reasons_call_falls_back():
    gpus = FakeGpus(powers_w=(250.0,))
    fake = gpus.nvml(counter=False, instant=False)
    fake.nvmlDeviceGetCurrentClocksEventReasons.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    fake.nvmlDeviceGetCurrentClocksThrottleReasons.return_value = 0x40
    meter = NvmlMeter(0, nvml=fake, probe_s=0.05)
    reading = window(meter, 0.3)
    assert meter.power_source == "average_1s" and reading.details["power_source"] == "average_1s"
    assert reading.method == "sampled" and "cross_check" not in reading.details
    assert reading.avg_power_w == pytest.approx(250, rel=0.15)
    assert reading.details["state_end"]["clock_event_reasons"] == ["hw_thermal_slowdown"]


def test_trapezoid_integration():
    assert integrate([(0.0, 100.0), (1.0, 200.0), (2.0, 200.0)]) == pytest.approx(350.0)
    assert integrate([(0.0, 100.0)]) is None


# -- RAPL -------------------------------------------------------------------------------


def zone(root, name, label, energy_uj, max_uj=262143328850):
    path = root / name
    path.mkdir(parents=True)
    (path / "name").write_text(label + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


@pytest.fixture
def powercap(tmp_path):
    """Two sockets, each with core and dram subzones, and a psys zone that covers everything."""
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)
    zone(root, "intel-rapl:0:1", "dram", 2_000_000)
    zone(root, "intel-rapl:1", "package-1", 3_000_000)
    zone(root, "intel-rapl:1:0", "dram", 4_000_000)
    zone(root, "intel-rapl:2", "psys", 9_000_000)
    return root


def bump(root, name, energy_uj):
    (root / name / "energy_uj").write_text(f"{energy_uj}\n")


def test_rapl_counts_packages_and_dram_never_core_or_psys(powercap):
    assert [z.name for z in discover(powercap)] == ["package-0", "dram", "package-1", "dram"]
    meter = RaplMeter(powercap)
    meter.start()
    for name, uj in {
        "intel-rapl:0": 6_000_000,
        "intel-rapl:0:1": 3_000_000,
        "intel-rapl:1": 7_000_000,
        "intel-rapl:1:0": 5_000_000,
        "intel-rapl:0:0": 99_000_000,
        "intel-rapl:2": 99_000_000,
    }.items():
        bump(powercap, name, uj)
    time.sleep(0.01)
    reading = meter.stop()
    assert reading.method == "measured"
    assert reading.energy_j == pytest.approx(5 + 1 + 4 + 1)  # J: packages + dram, core and psys ignored


def test_rapl_wraparound_through_max_energy_range(powercap):
    meter = RaplMeter(powercap)
    meter.start()
    bump(powercap, "intel-rapl:0", 262143328850 - 1_000_000)  # 262 kJ later, near the top
    meter.poll()
    bump(powercap, "intel-rapl:0", 2_000_000)  # wrapped past max_energy_range_uj
    time.sleep(0.01)
    reading = meter.stop()
    assert reading.details["wraps"] == 1
    assert reading.details["zones"]["package-0"] == pytest.approx((262143328850 - 1_000_000 + 1_000_000) / 1e6 + 1.0)


def test_rapl_polls_fast_enough_for_the_smallest_range(tmp_path):
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 0, max_uj=65_532_610_987)
    assert RaplMeter(root).poll_s < 65_532.610987 / 5000 / 2  # two polls per wrap at 5 kW


def test_rapl_permission_denied_says_how_to_fix(powercap, monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied", str(self.path / "energy_uj"))

    monkeypatch.setattr(Zone, "read_uj", denied)
    reason = probe(powercap)
    assert "permission denied reading" in reason and "run as root" in reason and "--meters codecarbon" in reason
    with pytest.raises(MeterUnavailable, match="permission denied"):
        RaplMeter(powercap)


def test_rapl_absent_tree(tmp_path):
    assert "no powercap tree" in probe(tmp_path / "nothing")


def test_rapl_unchanged_counter_is_none_not_zero(powercap):
    meter = RaplMeter(powercap)
    meter.start()
    time.sleep(0.01)
    reading = meter.stop()
    assert reading.energy_j is None and "not positive" in reading.reason


# -- selection, the window, CodeCarbon ---------------------------------------------------


def test_auto_records_why_meters_are_absent_and_named_meters_are_errors():
    import torch

    found = open_meters("auto", torch.device("cpu"), country="FRA", region=None, rapl_root=None, output_dir=None)
    assert "nvml" in found.absent and "CPU, not a GPU" in found.absent["nvml"]
    with pytest.raises(MeterUnavailable, match="--meters nvml: the benchmark device is the CPU"):
        open_meters(("nvml",), torch.device("cpu"), country="FRA", region=None, rapl_root=None, output_dir=None)


def test_window_repeats_until_long_and_many_enough_and_subtracts_idle():
    calls = []
    meters = MeterSet([FakeMeter(power_w=50.0)])
    idle = FakeMeter(power_w=10.0)
    idle.start()
    time.sleep(0.05)
    result = energy.measure(
        lambda: calls.append(1), meters, idle.stop(), items_per_call=4, configured_min_s=0.2, min_calls=10
    )
    assert result.window_s >= 0.2 and result.calls >= 10 and result.items == 4 * result.calls
    assert result.avg_power_w == pytest.approx(50.0)
    assert result.per_item_j == pytest.approx(50.0 * result.window_s / result.items)
    assert result.dynamic_per_item_j == pytest.approx(40.0 * result.window_s / result.items, rel=1e-3)
    assert result.co2_per_item_g is None  # no CodeCarbon: no intensity, no made-up CO2


def test_default_window_is_many_sensor_periods_and_seconds_long():
    assert energy.min_window_s(0.1, None) == 2.0  # NVML ~100 ms -> 2 s floor
    assert energy.min_window_s(1.0, None) == 10.0  # 1 s power averaging -> 10 s
    assert energy.min_window_s(1.0, 0.5) == 0.5  # the user's choice wins, and is recorded


def test_reading_rejects_missing_energy_without_reason():
    with pytest.raises(ValueError, match="needs a reason"):
        Reading("x", "d", "measured", None, 1.0)


def test_codecarbon_for_real_is_labelled_estimated_and_stores_its_intensity(tmp_path, monkeypatch):
    pytest.importorskip("codecarbon")
    from energybench.measure.meters.codecarbon import CodeCarbonMeter

    monkeypatch.chdir(tmp_path)
    meter = CodeCarbonMeter("FRA", output_dir=tmp_path / "out")
    reading = window(meter, 2.2)
    assert reading.method == "estimated"  # no RAPL here: CPU is TDP x load, RAM a constant
    assert reading.energy_j > 0 and reading.details["carbon_intensity_kg_per_kwh"] > 0
    assert reading.details["co2_kg"] == pytest.approx(
        reading.energy_j / 3.6e6 * reading.details["carbon_intensity_kg_per_kwh"], rel=1e-6
    )
    assert list(tmp_path.iterdir()) == [] or [p.name for p in tmp_path.iterdir()] == ["out"]
