"""The report: tidy frames, each figure on a small hand-built run (what is on the axes), the
"not measured" path, two runs compared, the atomic build, bad input and the CLI."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest

from energybench import cli
from energybench.report import build, draw, figures, layer_figures, tidy
from energybench.report.deltas import delta_frame
from energybench.results import store
from energybench.results.schema import Record
from tests.report_runs import ENERGY_J, LATENCY_S, SIZE_BYTES, make_run

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def no_open_figures():
    import matplotlib.pyplot as plt

    yield
    assert plt.get_fignums() == [], "a test left pyplot figures open"


@pytest.fixture(scope="module")
def run():
    return make_run()


@pytest.fixture(scope="module")
def frame(run):
    return tidy.run_frame(run)


@pytest.fixture(scope="module")
def layers(run):
    return tidy.layer_frame(run)


@pytest.fixture
def low_dpi(monkeypatch):
    monkeypatch.setattr(build, "PNG_DPI", 40)  # the files are the same; only the test gets faster


def texts(figure, gid):
    """The figure's texts with that gid, wrapped lines joined again."""
    found = [*figure.texts, *(t for ax in figure.axes for t in ax.texts)]
    return [" ".join(t.get_text().split()) for t in found if t.get_gid() == gid]


def bar_heights(ax):
    return [p.get_height() for p in ax.patches]


def axis_by_title(figure, title):
    return next(ax for ax in figure.axes if ax.get_title() == title)


# -- tidy -----------------------------------------------------------------------------------
def test_run_frame_has_one_row_per_record_with_run_identity_and_display_units(run, frame):
    assert len(frame) == len(run.records)
    first = frame.iloc[0]
    assert (first.run_id, first.commit, first.fingerprint) == (run.run_id, "0123456789", "abc123def456")
    latency = frame[(frame.metric == "latency") & (frame.precision == "fp32") & (frame.model == "distilbert")].iloc[0]
    assert latency.display_unit == "ms"
    assert latency.display_value == pytest.approx(LATENCY_S[("distilbert", "fp32")] * 1e3)
    assert latency.display_value_lo < latency.display_value < latency.display_value_hi  # IQR from the raw rounds
    throughput = frame[(frame.metric == "throughput") & (frame.precision == "fp32")].iloc[0]
    assert throughput.value_lo < throughput.value < throughput.value_hi
    energy = frame[frame.metric == "energy"].iloc[0]
    assert energy.energy_basis == "estimated" and not isinstance(latency.energy_basis, str)


def test_layer_frame_puts_energy_and_impact_side_by_side(layers):
    types = layers[layers.level == "per_type"].set_index("layer_type")
    assert types.loc["Linear", "energy_j_per_sample"] == pytest.approx(0.05)
    assert types.loc["Linear", "impact_score"] == pytest.approx(0.8)
    assert types.loc["Linear", "energy_basis"] == "apportioned (estimated)"
    per_layer = layers[layers.level == "per_layer"]
    assert len(per_layer) == 6 and per_layer["spearman_rho"].iloc[0] == pytest.approx(0.89)


def test_history_frame_stacks_runs_oldest_first():
    later = make_run("20261124T120000Z-cccccc", started_at="2026-11-24T12:00:00+00:00", layers=False)
    history = tidy.history_frame([later, make_run(layers=False)])
    assert list(history["run_id"].unique()) == ["20261124T100000Z-aaaaaa", "20261124T120000Z-cccccc"]


# -- figures on the small run ---------------------------------------------------------------
def test_overview_panels_hold_the_run_values(frame):
    figure = figures.overview(frame, "distilbert")
    latency = axis_by_title(figure, "Latency (batch 1)")
    assert bar_heights(latency) == pytest.approx([LATENCY_S[("distilbert", p)] * 1e3 for p in ("fp32", "fp16", "int8")])
    assert [t.get_text() for t in latency.get_xticklabels()] == ["fp32", "fp16", "int8"]
    assert "latency (ms)" in latency.get_ylabel()
    assert len(latency.lines) > 0 or latency.collections  # IQR whiskers
    speedup = axis_by_title(figure, "Speedup vs fp32")
    speedup_int8 = LATENCY_S[("distilbert", "fp32")] / LATENCY_S[("distilbert", "int8")]
    assert bar_heights(speedup)[2] == pytest.approx(speedup_int8)
    energy = axis_by_title(figure, "Energy per item")
    assert bar_heights(energy)[:3] == pytest.approx([ENERGY_J["fp32"], ENERGY_J["fp16"], ENERGY_J["int8"]])
    assert all(p.get_hatch() == draw.ESTIMATED_HATCH for p in energy.patches)
    assert "estimated (hatched)" in [t.get_text() for t in energy.get_legend().get_texts()]
    size = axis_by_title(figure, "Model size")
    assert bar_heights(size) == pytest.approx([SIZE_BYTES[p] / 2**20 for p in ("fp32", "fp16", "int8")])
    assert "bf16: bf16 not on this CPU" in texts(figure, draw.NOT_MEASURED_GID)[0]
    assert "distilbert: embedded (embedded:distilbert-acb1a84d)" in texts(figure, draw.STAMP_GID)[0]


def test_overview_of_a_causal_lm_draws_perplexity(frame):
    figure = figures.overview(frame, "gpt2")
    assert bar_heights(axis_by_title(figure, "Perplexity")) == pytest.approx([105.0, 105.1, 107.5])


def test_speed_quality_tradeoff_places_each_precision(frame):
    figure = figures.speed_quality_tradeoff(frame)
    ax = axis_by_title(figure, "distilbert")
    points = {t.get_text(): t.xy for t in ax.texts}
    assert points["int8"][0] == pytest.approx(10 / 6) and points["int8"][1] == pytest.approx(0.5)
    assert "quality loss vs fp32 (pp" in ax.get_ylabel()
    assert axis_by_title(figure, "gpt2").get_ylabel().startswith("quality loss vs fp32 (%")


def test_accuracy_vs_latency_scatter(frame):
    ax = figures.accuracy_vs_latency(frame).axes[0]
    points = {t.get_text(): t.xy for t in ax.texts}
    assert points["distilbert int8"] == pytest.approx((6.0, 79.5))
    assert "gpt2 fp32" not in points  # perplexity models have no accuracy
    assert ax.get_xlabel().startswith("latency") and ax.get_ylabel() == "accuracy (%)"


def test_metric_bars_and_model_comparison(frame):
    bars_figure = figures.metric_bars(frame)
    accuracy = axis_by_title(bars_figure, "Accuracy")
    assert sorted(h for h in bar_heights(accuracy) if h) == pytest.approx([79.5, 79.7, 80.0, 80.0])
    comparison = figures.model_comparison(frame)
    size = axis_by_title(comparison, "size")
    assert sorted(bar_heights(size)) == pytest.approx([2.0, 2.0, 40 / 14, 40 / 14])
    assert [t.get_text() for t in size.get_legend().get_texts()] == ["distilbert", "gpt2"]


def test_radar_has_one_polar_axis_per_model_with_fp32_at_one(frame):
    figure = figures.radar(frame)
    polar = [ax for ax in figure.axes if ax.name == "polar"]
    assert [ax.get_title() for ax in polar] == ["distilbert", "gpt2"]
    fp32 = next(line for line in polar[0].lines if line.get_label() == "fp32")
    assert np.allclose(fp32.get_ydata(), 1.0)


def test_emissions_figures_hatch_estimates(frame):
    horizontal = figures.emissions_bars(frame).axes[0]
    assert sorted(p.get_width() for p in horizontal.patches) == pytest.approx(
        sorted(ENERGY_J[p] * 1.1e-4 for p in ENERGY_J for _ in (0, 1))
    )
    assert all(p.get_hatch() == draw.ESTIMATED_HATCH for p in horizontal.patches)
    reduction = figures.emissions_reduction(frame).axes[0]
    assert (1 - ENERGY_J["int8"] / ENERGY_J["fp32"]) * 100 == pytest.approx(max(bar_heights(reduction)))
    scatter = figures.emissions_vs_size(frame).axes[0]
    assert scatter.get_xlabel() == "model size (MiB)" and len(scatter.collections) == 6


def test_layer_figures_hold_the_layer_records(layers):
    energy = layer_figures.energy_by_layer_type(layers).axes[0]
    assert sorted(bar_heights(energy)) == pytest.approx([0.05, 0.10, 0.15, 0.20])
    assert all(p.get_hatch() == draw.ESTIMATED_HATCH for p in energy.patches)
    impact = layer_figures.impact_by_layer_type(layers).axes[0]
    assert sorted(bar_heights(impact)) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    scatter = layer_figures.energy_vs_impact(layers).axes[0]
    assert len(scatter.collections[0].get_offsets()) == 6
    assert "Spearman rho=0.89, Pearson r=0.93, n=6" in scatter.get_legend().get_texts()[0].get_text()
    heatmap = layer_figures.correlation_heatmap(layers)
    matrix = heatmap.axes[0].images[0].get_array()
    assert np.allclose(np.diag(matrix), 1.0)
    assert "energy / sample" in [t.get_text() for t in heatmap.axes[0].get_xticklabels()]


def test_mixed_plan_predicted_next_to_measured(frame):
    figure = figures.plan_predicted_vs_measured(frame)
    accuracy = axis_by_title(figure, "accuracy loss (pp)")
    assert sorted(bar_heights(accuracy)) == pytest.approx([0.3, 0.4])  # measured 80.0 - 79.7, predicted 0.4
    energy = axis_by_title(figure, "energy saving (%)")
    assert sorted(bar_heights(energy)) == pytest.approx([(1 - 0.42 / 0.50) * 100, 20.0])


def test_history_trend_draws_one_line_per_model_and_precision():
    history = tidy.history_frame(
        [
            make_run(layers=False),
            make_run("20261124T120000Z-cccccc", layers=False, started_at="2026-11-24T12:00:00+00:00", slow=2.0),
        ]
    )
    ax = figures.history_trend(history, "latency").axes[0]
    line = next(line for line in ax.lines if line.get_label() == "distilbert int8")
    assert line.get_ydata() == pytest.approx([6.0, 12.0])
    assert "latency (ms)" in ax.get_ylabel()


# -- the not-measured path ------------------------------------------------------------------
def test_missing_metrics_draw_not_measured_with_the_reason():
    timing = make_run(layers=False).records[0].timing
    lonely = make_run(models=("distilbert",), layers=False)
    lonely.records = [
        Record("distilbert", "fp32", "latency", timing.median_s, "s", timing=timing, source={"kind": "shape-only"}),
        Record(
            "distilbert",
            "fp32",
            "energy",
            None,
            "",
            status="skipped",
            reason="no power meter here",
            source={"kind": "shape-only"},
        ),
    ]
    frame = tidy.run_frame(lonely)
    overview = figures.overview(frame, "distilbert")
    missing = texts(overview, draw.NOT_MEASURED_GID)
    assert "not measured: no power meter here" in missing
    assert any("no size record for distilbert" in m for m in missing)
    assert not axis_by_title(overview, "Energy per item").axison
    assert "distilbert: shape-only" in texts(overview, draw.STAMP_GID)[0]
    layers = tidy.layer_frame(lonely)
    for draw_layers in (
        layer_figures.energy_by_layer_type,
        layer_figures.impact_by_layer_type,
        layer_figures.energy_vs_impact,
        layer_figures.correlation_heatmap,
    ):
        assert any("no " in t and "records in this run" in t for t in texts(draw_layers(layers), draw.NOT_MEASURED_GID))
    for draw_run in (
        figures.model_comparison,
        figures.plan_predicted_vs_measured,
        figures.emissions_bars,
        figures.accuracy_vs_latency,
        figures.radar,
        figures.speed_quality_tradeoff,
    ):
        assert texts(draw_run(frame), draw.NOT_MEASURED_GID), draw_run.__name__


# -- two runs compared ----------------------------------------------------------------------
def test_two_runs_compared_give_deltas_and_verdicts():
    before = make_run(layers=False)
    after_run = make_run("20261124T120000Z-cccccc", layers=False, slow=1.3)
    after = tidy.run_frame(after_run)
    deltas = delta_frame(before, after_run).set_index(["model", "precision", "metric"])
    latency = deltas.loc[("distilbert", "int8", "latency")]
    assert latency.delta_pct == pytest.approx(30.0) and latency.verdict == "worse"
    assert deltas.loc[("distilbert", "int8", "throughput")].verdict == "worse"
    assert deltas.loc[("distilbert", "int8", "size")].verdict == "same"
    assert deltas.loc[("distilbert", "int8", "energy")].verdict == "worse"
    ax = figures.comparison(deltas.reset_index(), after).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "distilbert int8 latency" in labels
    assert bar_heights(ax) and ax.patches[labels.index("distilbert int8 latency")].get_width() == pytest.approx(30.0)


def test_runs_from_other_machines_are_not_compared_as_like_with_like():
    other = make_run("20261124T120000Z-cccccc", layers=False)
    other.machine = {**other.machine, "fingerprint": "ffffffffffff"}
    deltas = delta_frame(make_run(layers=False), other)
    measured = deltas[deltas["value_a"].notna() & deltas["value_b"].notna()]
    assert set(measured["verdict"]) == {"not comparable"}
    assert all("different machine fingerprint" in note for note in measured["note"])
    shape_only = make_run("20261124T120000Z-cccccc", layers=False)
    shape_only.records = [
        dataclasses.replace(r, source={"kind": "shape-only", "checkpoint": "shape-only:x"}) for r in shape_only.records
    ]
    deltas = delta_frame(make_run(layers=False), shape_only)
    measured = deltas[deltas["value_a"].notna() & deltas["value_b"].notna()]
    assert all("different model source" in note for note in measured["note"])


# -- build_report: files, atomicity, bad input, CLI -----------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    return store.save_run(make_run(models=("distilbert",)), root)


def small_jobs(count=2, fail_at=None):
    def job(i):
        def drawer():
            if i == fail_at:
                raise RuntimeError("figure exploded")
            figure = draw.new_figure(3, 2)
            figure.add_subplot().bar([0], [float(i + 1)])
            return draw.stamp(figure, tidy.run_frame(make_run(layers=False)))

        return build.FigureJob(f"fig-{i}", f"figure {i}", "caption", drawer)

    return [job(i) for i in range(count)]


def test_build_writes_png_svg_and_html_atomically(saved, monkeypatch, low_dpi):
    monkeypatch.setattr(build, "figure_jobs", lambda run, history, baseline: small_jobs())
    folder = build.build_report(saved)
    assert folder == saved / "report"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [build.MARKER, "fig-0.png", "fig-0.svg", "fig-1.png", "fig-1.svg", "index.html"]
    page = (folder / "index.html").read_text()
    assert page.count("data:image/svg+xml;base64,") == 2 and "figure 0" in page
    assert not [p for p in saved.iterdir() if p.name.startswith(".")]


def test_a_failing_figure_leaves_the_previous_report_untouched(saved, monkeypatch, low_dpi, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("previous")
    (out / build.MARKER).write_text("an earlier report")
    monkeypatch.setattr(build, "figure_jobs", lambda run, history, baseline: small_jobs(3, fail_at=2))
    with pytest.raises(RuntimeError, match="figure exploded"):
        build.build_report(saved, out=out)
    assert [p.name for p in tmp_path.iterdir()] == ["report"] and (out / "index.html").read_text() == "previous"


def test_full_report_png_is_300_dpi(saved, tmp_path):
    from PIL import Image

    jobs = build.figure_jobs(store.load_run(saved), tidy.history_frame([]), None)
    job = next(j for j in jobs if j.name == "overview-distilbert")
    rendered = build.render(job, tmp_path)
    assert rendered.name == "overview-distilbert"
    with Image.open(tmp_path / "overview-distilbert.png") as image:
        dpi = image.info["dpi"]
    assert dpi == pytest.approx((300, 300), abs=0.1)


@pytest.mark.parametrize("case", ["missing", "not-a-run", "no-records", "unwritable", "no-latest", "foreign-out"])
def test_bad_input_is_one_line_and_exit_status_2(case, saved, tmp_path, capsys):
    args = {
        "missing": [str(tmp_path / "nope")],
        "not-a-run": [str(tmp_path)],
        "no-records": [
            str(
                store.save_run(
                    make_run("20261124T130000Z-dddddd", layers=False).__class__(
                        **{**make_run("20261124T130000Z-dddddd").__dict__, "records": []}
                    ),
                    tmp_path / "empty",
                )
            )
        ],
        "unwritable": [str(saved), "--out", str(saved / "run.json" / "report")],
        "no-latest": ["latest", "--reports-dir", str(tmp_path)],
        "foreign-out": [str(saved), "--out", str(saved.parent)],  # the runs folder: never replaced
    }[case]
    assert cli.main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("energybench report: ")
    expected = {
        "missing": "no run folder, run id, baseline or 'latest'",
        "not-a-run": "not a run (no run.json)",
        "no-records": "no records",
        "unwritable": "cannot write the report there",
        "no-latest": "no saved runs",
        "foreign-out": "is not an energybench report folder",
    }[case]
    assert expected in err
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp")]


def test_cli_report_by_run_id_and_latest(saved, monkeypatch, low_dpi, capsys, tmp_path):
    monkeypatch.setattr(build, "figure_jobs", lambda run, history, baseline: small_jobs(1))
    reports = saved.parent.parent
    assert cli.main(["report", saved.name, "--reports-dir", str(reports), "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.strip() == f"energybench: report written to {tmp_path / 'a' / 'index.html'}"
    assert (
        cli.main(
            ["report", "latest", "--reports-dir", str(reports), "--out", str(tmp_path / "b"), "--compare", str(saved)]
        )
        == 0
    )
    assert "comparison-table" in (tmp_path / "b" / "index.html").read_text()


def test_history_takes_earlier_runs_of_the_same_machine_only(tmp_path):
    first = make_run("20261124T080000Z-111111", layers=False, started_at="2026-11-24T08:00:00+00:00")
    elsewhere = make_run("20261124T090000Z-222222", layers=False, started_at="2026-11-24T09:00:00+00:00")
    elsewhere.machine = {**elsewhere.machine, "fingerprint": "another"}
    later = make_run("20261124T230000Z-333333", layers=False, started_at="2026-11-24T23:00:00+00:00")
    current = make_run(layers=False)
    for run in (first, elsewhere, later, current):
        store.save_run(run, tmp_path)
    folder = tmp_path / "runs" / current.run_id
    assert [r.run_id for r in build.history_runs(folder, store.load_run(folder))] == [first.run_id, current.run_id]


@pytest.mark.parametrize(
    "args, ini, expected", [((), "", False), (("--report",), "", True), ((), "energybench_report = true\n", True)]
)
def test_report_option_and_its_ini_twin(pytester, args, ini, expected):
    from energybench.harness.plugin import raw_options

    pytester.makeini("[pytest]\n" + ini)
    assert raw_options(pytester.parseconfig(*args))["report"] is expected
