"""Figures: both files written, PNG at 300 dpi of the figure size, axes labelled, paper style."""

from __future__ import annotations

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from lfads_core.analysis import plotting, score_figures
from lfads_core.analysis.ground_truth import latent_r2


def check_saved(saved, stem):
    """Both files exist and are non-empty; the PNG has figsize x 300 pixels; returns figure."""
    assert saved.png == stem.with_name(stem.name + ".png")
    assert saved.pdf == stem.with_name(stem.name + ".pdf")
    assert saved.png.stat().st_size > 1000 and saved.pdf.stat().st_size > 1000
    assert saved.pdf.read_bytes()[:5] == b"%PDF-"
    fig = saved.figure
    assert fig is not None
    width_in, height_in = fig.get_size_inches()
    assert width_in in (plotting.SINGLE_COLUMN_IN, plotting.DOUBLE_COLUMN_IN)
    image = matplotlib.image.imread(saved.png)
    assert image.shape[:2] == (round(height_in * 300), round(width_in * 300))
    return fig


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def check_style(fig):
    """Fonts >= 7 pt; no top/right spine on 2-D axes (twin axes keep their right spine)."""
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_text():
            assert text.get_fontsize() >= 7, text.get_text()
    for ax in visible_axes(fig):
        if ax.name == "rectilinear":
            assert not ax.spines["top"].get_visible()


def test_training_curves(tmp_path):
    epochs = np.arange(30)
    log = pd.DataFrame({
        "epoch": epochs, "train_loss": 100 - epochs, "train_recon": 90 - epochs,
        "train_kl_ic": 5 + 0 * epochs, "train_kl_co": 2 + 0.1 * epochs, "train_l2": 0.1,
        "valid_loss": 110 - epochs, "valid_recon": 95 - epochs, "valid_recon_sv": np.nan,
        "valid_kl_ic": 6.0, "valid_kl_co": 2.5, "valid_loss_smooth": 96 - epochs,
        "lr": 4e-3 * 0.95 ** epochs, "kl_ic_weight": np.minimum(1, epochs / 10),
        "kl_co_weight": np.minimum(1, epochs / 10), "time_s": epochs * 1.5})
    log.loc[3, "valid_recon"] = np.nan  # a missing value is skipped, not drawn as a gap error
    csv = tmp_path / "train_log.csv"
    log.to_csv(csv, index=False)
    stem = tmp_path / "figs" / "training"
    fig = check_saved(plotting.plot_training_curves(csv, stem, return_figure=True), stem)
    check_style(fig)
    recon, kl, lr, weights = fig.axes
    assert [ax.get_xlabel() for ax in (recon, kl, lr)] == ["Epoch"] * 3
    assert "nats" in recon.get_ylabel() and "nats" in kl.get_ylabel()
    assert lr.get_ylabel() == "Learning rate" and lr.get_yscale() == "log"
    assert len(recon.lines) == 3 and len(kl.lines) == 4
    # not returned unless asked for
    assert plotting.plot_training_curves(csv, tmp_path / "again").figure is None


def test_raster_with_rates(tmp_path):
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.01, 0.2, (70, 45))  # expected counts per 10 ms bin: 1-20 Hz
    spikes = rng.poisson(rates)
    stem = tmp_path / "raster"
    saved = plotting.plot_raster_with_rates(spikes, rates, 0.01, stem, return_figure=True,
                                            start_s=-0.25)
    fig = check_saved(saved, stem)
    check_style(fig)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Time (s)" and ax.get_ylabel() == "Neuron"
    assert len(ax.lines) == 2 * plotting.MAX_RASTER_NEURONS  # dots + rate per row
    assert ax.get_xlim() == pytest.approx((-0.25, -0.25 + 0.7))
    # the rate lines are in Hz on a common scale: the peak reaches the row top (0.9 + row)
    tops = [line.get_ydata().max() - row for row, line in enumerate(ax.lines[1::2])]
    assert max(tops) == pytest.approx(0.9)
    chosen = plotting.plot_raster_with_rates(spikes, rates, 0.01, tmp_path / "r2",
                                             neurons=[3, 1], return_figure=True)
    assert len(chosen.figure.axes[0].lines) == 4
    with pytest.raises(ValueError, match="time bins x neurons"):
        plotting.plot_raster_with_rates(spikes, rates[:-1], 0.01, tmp_path / "bad")


def test_factor_trajectories(tmp_path):
    rng = np.random.default_rng(1)
    t = np.linspace(0, 2 * np.pi, 40)
    conditions = np.repeat(np.arange(4), 5)
    base = np.stack([np.cos(t), np.sin(t), 0.3 * np.cos(2 * t)], axis=-1)
    mixing = rng.normal(size=(3, 8))
    factors = np.stack([(base * (1 + c)) @ mixing for c in conditions]) \
        + rng.normal(0, 0.01, (len(conditions), 40, 8))
    stem = tmp_path / "factors"
    fig = check_saved(plotting.plot_factor_trajectories(factors, conditions, stem,
                                                        return_figure=True), stem)
    check_style(fig)
    (ax,) = fig.axes
    assert ax.name == "3d"
    assert ax.get_xlabel().startswith("PC1") and ax.get_zlabel().startswith("PC3")
    assert len(ax.lines) == 2 * 4  # a line and a start dot per condition
    # the PCs of the averages explain all their variance: 3 dimensions were used
    _, labels, explained = plotting.condition_average_pcs(factors, conditions)
    assert list(labels) == [0, 1, 2, 3] and explained.sum() == pytest.approx(1, abs=1e-3)

    flat = plotting.plot_factor_trajectories(factors, conditions, tmp_path / "f2",
                                             n_components=2, return_figure=True)
    (ax2,) = flat.figure.axes
    assert ax2.name == "rectilinear" and ax2.get_ylabel().startswith("PC2")


def test_factor_trajectories_name_the_conditions_and_mark_the_event(tmp_path):
    rng = np.random.default_rng(3)
    conditions = np.repeat(np.arange(4), 3)
    factors = rng.normal(size=(12, 40, 6)) + conditions[:, None, None]
    names, title = plotting.condition_names(
        {"columns": ["choice", "contrast"],
         "values": [["left", 0.5], ["left", 1.0], ["right", 0.5], ["right", None]]})
    assert title == "choice, contrast" and names[3] == "right, NaN"
    stem = tmp_path / "named"
    saved = plotting.plot_factor_trajectories(
        factors, conditions, stem, n_components=2, bin_width_s=0.01, window_start_offset_s=-0.1,
        event="move_onset_time", condition_names=names, condition_title=title,
        return_figure=True)
    fig = check_saved(saved, stem)
    check_style(fig)
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "choice, contrast"
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[:4] == ["left, 0.5", "left, 1.0", "right, 0.5", "right, NaN"]
    assert "move_onset_time (0 s)" in texts and "window start" in texts
    # the event's marker sits on bin 10 (the window starts 100 ms before it) of each condition
    (ax,) = fig.axes
    projected, _, _ = plotting.condition_average_pcs(factors, conditions, 2)
    events = [line for line in ax.lines if line.get_marker() == "^"]
    assert len(events) == 4
    np.testing.assert_allclose([line.get_xdata()[0] for line in events], projected[:, 10, 0])
    # outside the window: no marker
    assert plotting.event_bin(0.5, 0.01, 40) is None and plotting.event_bin(-0.1, 0.01, 40) == 10


def test_many_conditions_get_a_colour_scale_of_their_values(tmp_path):
    rng = np.random.default_rng(4)
    conditions = np.repeat(np.arange(12), 2)
    factors = rng.normal(size=(24, 30, 5)) + conditions[:, None, None] * 0.1
    names, title = plotting.condition_names(
        {"columns": ["angle"], "values": [[30 * k] for k in range(12)]})
    saved = plotting.plot_factor_trajectories(factors, conditions, tmp_path / "many",
                                              condition_names=names, condition_title=title,
                                              return_figure=True)
    colorbar = [ax for ax in saved.figure.axes if ax.get_ylabel() == "angle"]
    assert len(colorbar) == 1 and colorbar[0].get_ylim() == pytest.approx((0, 330))
    # text values: a scale over the conditions, ticks labelled with their values
    names = {k: f"target {k}" for k in range(12)}
    saved = plotting.plot_factor_trajectories(factors, conditions, tmp_path / "text",
                                              condition_names=names, condition_title="target",
                                              return_figure=True)
    (bar,) = [ax for ax in saved.figure.axes if ax.get_ylabel() == "target"]
    assert [t.get_text() for t in bar.get_yticklabels()][0] == "target 0"


def test_stitched_sessions_share_one_projection(tmp_path):
    rng = np.random.default_rng(5)
    t = np.linspace(0, 2 * np.pi, 30)
    mixing = rng.normal(size=(2, 6))
    sessions = {}
    for k, name in enumerate(["s_a", "s_b", "s_c"]):
        conditions = np.repeat(np.arange(3 + k), 2)
        base = np.stack([np.cos(t), np.sin(t)], axis=-1)
        sessions[name] = (np.stack([(base * (1 + c)) @ mixing for c in conditions]), conditions)
    stem = tmp_path / "stitched"
    saved = plotting.plot_stitched_factors(sessions, stem, 0.01,
                                           {"s_a": -0.1, "s_b": -0.1, "s_c": -0.2},
                                           event="move_onset_time", group="maze",
                                           return_figure=True)
    fig = check_saved(saved, stem)
    assert fig.get_size_inches()[0] == plotting.DOUBLE_COLUMN_IN
    check_style(fig)
    plane, pc1, pc2 = fig.axes
    colors = {line.get_color() for line in plane.lines if line.get_marker() == "None"}
    assert len(colors) == 3  # one colour per session
    assert len([line for line in plane.lines if line.get_marker() == "None"]) == 3 + 4 + 5
    assert pc1.get_xlabel() == "Time from move_onset_time (s)"
    # s_c's window starts 200 ms before the event: its time axis starts there
    curves = [line for line in pc1.lines if len(line.get_xdata()) == 30]  # not the event line
    assert min(line.get_xdata()[0] for line in curves) == pytest.approx(-0.195)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[:3] == ["s_a (3 cond.)", "s_b (4 cond.)", "s_c (5 cond.)"]
    assert "Stitched model maze" in fig.get_suptitle()
    with pytest.raises(ValueError, match="differ"):
        plotting.plot_stitched_factors({"a": sessions["s_a"],
                                        "b": (sessions["s_b"][0][:, :20], sessions["s_b"][1])},
                                       tmp_path / "bad", 0.01)


def test_decoded_behavior(tmp_path):
    rng = np.random.default_rng(2)
    true = rng.normal(size=(6, 50, 2)).cumsum(axis=1) * 0.01
    decoded = true + rng.normal(0, 0.005, true.shape)
    stem = tmp_path / "decoding"
    saved = score_figures.plot_decoded_behavior(true, decoded, 0.02, ["hand_vel_x", "hand_vel_y"],
                                           stem, n_trials=4, units="m/s", return_figure=True)
    fig = check_saved(saved, stem)
    check_style(fig)
    axes = fig.axes
    assert len(axes) == 2 * 4
    assert axes[0].get_ylabel() == "hand_vel_x (m/s)" and axes[4].get_ylabel() == \
        "hand_vel_y (m/s)"
    assert all(ax.get_xlabel() == "Time (s)" for ax in axes[4:])
    assert np.allclose(axes[1].lines[1].get_ydata(), decoded[1, :, 0])
    with pytest.raises(ValueError, match="names"):
        score_figures.plot_decoded_behavior(true, decoded, 0.02, ["x"], tmp_path / "bad")


def test_method_comparison(tmp_path):
    table = pd.DataFrame({
        "method": ["LFADS", "smoothing", "GPFA", "LFADS", "smoothing", "GPFA"],
        "metric": ["rate R2", "rate R2", "rate R2", "vel R2", "vel R2", "vel R2"],
        "value": [0.8, 0.5, 0.6, 0.9, 0.6, np.nan],
        "err": [0.02, np.nan, 0.03, 0.01, 0.05, np.nan]})
    stem = tmp_path / "comparison"
    fig = check_saved(score_figures.plot_method_comparison(table, stem, return_figure=True), stem)
    check_style(fig)
    left, right = fig.axes
    assert left.get_ylabel() == "rate R2" and right.get_ylabel() == "vel R2"
    assert [t.get_text() for t in left.get_xticklabels()] == ["LFADS", "smoothing", "GPFA"]
    assert [p.get_height() for p in left.patches] == pytest.approx([0.8, 0.5, 0.6])
    assert any(t.get_text() == "n/a" for t in right.texts)  # the missing score is marked
    single = score_figures.plot_method_comparison(table[table.metric == "vel R2"],
                                             tmp_path / "one", return_figure=True)
    assert single.figure.get_size_inches()[0] == plotting.SINGLE_COLUMN_IN
    with pytest.raises(ValueError, match="several rows"):
        score_figures.plot_method_comparison(pd.concat([table, table]), tmp_path / "bad")
    with pytest.raises(ValueError, match="lacks column"):
        score_figures.plot_method_comparison(table.drop(columns="err"), tmp_path / "bad")


def test_dataset_summary(tmp_path):
    table = pd.DataFrame({
        "dataset": ["a", "a", "b", "b", "a", "b", "c"],
        "method": ["lfads", "smoothing", "lfads", "smoothing", "lfads", "lfads", "lfads"],
        "metric": ["co-bps", "co-bps", "co-bps", "co-bps", "vel R2", "vel R2", "co-bps"],
        "value": [0.3, 0.2, 0.25, 0.1, 0.9, 0.8, 0.4],
        "err": [np.nan] * 4 + [0.01, 0.02, np.nan]})
    stem = tmp_path / "summary"
    fig = check_saved(score_figures.plot_dataset_summary(table, stem, return_figure=True), stem)
    check_style(fig)
    left, right = visible_axes(fig)
    assert left.get_ylabel() == "co-bps" and right.get_ylabel() == "vel R2"
    assert [t.get_text() for t in left.get_xticklabels()] == ["a", "b", "c"]
    # one bar per (dataset, method) present: lfads in a, b, c, smoothing in a and b
    assert sorted(p.get_height() for p in left.patches) == pytest.approx(
        [0.1, 0.2, 0.25, 0.3, 0.4])
    assert [p.get_height() for p in right.patches] == pytest.approx([0.9, 0.8])
    lfads_colour = left.patches[0].get_facecolor()
    assert right.patches[0].get_facecolor() == lfads_colour  # one colour per method
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lfads", "smoothing"]
    with pytest.raises(ValueError, match="lacks column"):
        score_figures.plot_dataset_summary(table.drop(columns="dataset"), tmp_path / "bad")


def test_latents_vs_truth(tmp_path):
    rng = np.random.default_rng(3)
    latents = rng.normal(size=(12, 30, 3)).cumsum(axis=1)
    latents = (latents - latents.mean()) / latents.std()
    factors = latents @ rng.normal(size=(3, 10)) + 0.5 + rng.normal(0, 0.3, (12, 30, 10))
    stem = tmp_path / "latents"
    saved = score_figures.plot_latents_vs_truth(factors[:8], latents[:8], factors[8:],
                                           latents[8:], 0.01, stem, return_figure=True)
    fig = check_saved(saved, stem)
    check_style(fig)
    axes = visible_axes(fig)
    assert len(axes) == 3
    assert all(ax.get_xlabel() == "Time in window (s)" for ax in axes)
    r2 = [float(ax.get_title().split("= ")[1]) for ax in axes]
    expected = latent_r2(factors[:8], latents[:8], factors[8:], latents[8:])
    assert np.mean(r2) == pytest.approx(expected, abs=0.01)
    assert min(r2) > 0.5
    # truth bins that are NaN (outside the simulated trial) are left out, not fatal
    latents_nan = latents.copy()
    latents_nan[:, :2] = np.nan
    score_figures.plot_latents_vs_truth(factors[:8], latents_nan[:8], factors[8:], latents_nan[8:],
                                   0.01, tmp_path / "nan")
