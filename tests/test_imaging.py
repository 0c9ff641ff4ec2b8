"""Calcium imaging through the workflow: ROI traces read from processing/ophys as NeuroConv
writes suite2p output (tests/imaging_files.py), checked like spikes, averaged into bins of
frames, cut into dense windows with NaN kept, trained on and written to factors.nwb on the
imaging clock."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, replace_dataset, run_snakemake, tiny_config, workflow_dir
from imaging_files import FRAME_RATE, write_imaging_nwb
from lfads_core.errors import InputDataError
from lfads_core.fileio import read_table
from lfads_core.nwb.alignment import AlignSettings, align_trials
from lfads_core.nwb.binning import bin_session
from lfads_core.nwb.binning import average_frames
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
from lfads_core.workflow.preflight import check_dataset, check_trace_likelihoods
from lfads_core.workflow.startup import startup_summary

def read_table_tsv(path):
    import pandas as pd

    return pd.read_csv(path, sep="\t")


CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SERIES = "processing/ophys/Fluorescence/Deconvolved"


@pytest.fixture(scope="module")
def imaging(tmp_path_factory):
    """A suite2p-like file (24 ROIs, 4 of them not cells) and its simulated traces."""
    return write_imaging_nwb(tmp_path_factory.mktemp("imaging") / "im.nwb")


@pytest.fixture
def copy(imaging, tmp_path):
    """A fresh copy of the imaging file, to damage."""
    path = tmp_path / "im.nwb"
    path.write_bytes(imaging[0].read_bytes())
    return path


def settings(nwb, **changes):
    """A sheet row of a traces dataset over the workflow's defaults."""
    return {**CONFIG["defaults"], "dataset": "mouse", "nwb": str(nwb), "traces": "Deconvolved",
            "roi_filter": "iscell == 1", "window_start_ms": -200, "window_end_ms": 600,
            **changes}


def ingest(nwb, out, **changes):
    return ingest_nwb(nwb, out, IngestSettings.from_settings(settings(nwb, **changes)))


def refused(nwb, tmp_path, field, *words, **changes):
    """Ingestion and the start-up check both refuse ``nwb`` naming the file and ``field``."""
    out = tmp_path / "out" / "session.h5"
    with pytest.raises(InputDataError) as err:
        ingest(nwb, out, **changes)
    assert err.value.field == field, str(err.value)
    for word in (str(nwb), f"field '{field}'", *words):
        assert word in str(err.value), (word, str(err.value))
    assert not out.exists()
    with pytest.raises(InputDataError) as at_start:
        check_dataset("mouse", settings(nwb, **changes), "config/datasets.tsv", CONFIG)
    assert at_start.value.field == field, str(at_start.value)
    assert "config/datasets.tsv (dataset 'mouse'" in str(at_start.value)
    return str(err.value)


# ------------------------------------------------------------------ ingestion

def test_ingest_picks_the_named_series_and_the_rois_of_roi_filter(imaging, tmp_path):
    nwb, sim = imaging
    summary = ingest(nwb, tmp_path / "session.h5", behavior="hand_vel")
    cells = np.arange(24) % 6 != 5
    with h5py.File(tmp_path / "session.h5", "r") as f:
        assert f.attrs["kind"] == "traces"
        data = f["traces/data"][()]
        times = f["traces/timestamps_s"][()]
        units = read_table(f["units"])
        assert f.attrs["frame_period_s"] == pytest.approx(1 / FRAME_RATE)
        assert list(f["behavior"]) == ["hand_vel"]
    np.testing.assert_array_equal(data, sim["Deconvolved"][:, cells])
    np.testing.assert_allclose(times, sim["timestamps"], atol=1e-9)
    assert len(units) == 24 and units["kept"].tolist() == cells.tolist()
    assert set(units.loc[~cells, "drop_reason"]) == {"roi_filter"}
    assert {"id", "roi_id", "plane", "iscell", "heldout"} <= set(units.columns)
    assert summary["kind"] == "traces" and summary["rois_kept"] == 20
    assert summary["unit_drop_reasons"] == {"roi_filter": 4}


@pytest.mark.parametrize("name, key", [("Fluorescence", "Fluorescence"),
                                       ("DfOverF/RoiResponseSeries", "DfOverF"),
                                       ("Neuropil", "Neuropil")])
def test_containers_and_series_are_named_as_neuroconv_writes_them(imaging, tmp_path, name, key):
    nwb, sim = imaging
    ingest(nwb, tmp_path / "session.h5", traces=name, roi_filter="")
    with h5py.File(tmp_path / "session.h5", "r") as f:
        np.testing.assert_array_equal(f["traces/data"][()], sim[key])


def test_a_missing_series_lists_those_present(imaging, tmp_path):
    message = refused(imaging[0], tmp_path, "processing/ophys/Spikes", traces="Spikes")
    for present in ("Fluorescence/RoiResponseSeries", "Fluorescence/Deconvolved",
                    "Fluorescence/Neuropil", "DfOverF/RoiResponseSeries"):
        assert present in message


def test_a_bad_roi_filter_is_named(imaging, tmp_path):
    message = refused(imaging[0], tmp_path, "roi_filter", "iscell", roi_filter="is_cell == 1")
    assert "failed" in message
    refused(imaging[0], tmp_path, "roi_filter", "iscell > 5", roi_filter="iscell > 5")


def test_heldout_rois_from_the_plane_segmentation(tmp_path):
    heldout = np.arange(24) % 4 == 0
    nwb, _ = write_imaging_nwb(tmp_path / "held.nwb", heldout=heldout)
    found = check_dataset("mouse", settings(nwb), "sheet.tsv", CONFIG)
    assert found["heldout"] == "file"
    assert found["heldout_units"] == int(heldout[np.arange(24) % 6 != 5].sum())
    session, binned, lfads = tmp_path / "s.h5", tmp_path / "b.h5", tmp_path / "in.h5"
    ingest(nwb, session)
    bin_session(session, binned, None, bin_frames=1)
    align_trials(binned, lfads, AlignSettings(window_start_ms=-200, window_end_ms=600),
                 metadata_json=tmp_path / "in.json")
    meta = json.loads((tmp_path / "in.json").read_text())
    assert meta["heldout_mode"] == "file"
    assert sum(meta["heldout"]) == found["heldout_units"]
    assert all(meta["heldout"][-found["heldout_units"]:])  # held-out ROIs come last


def test_planes_with_agreeing_frame_times_are_combined(tmp_path):
    nwb, sim = write_imaging_nwb(tmp_path / "planes.nwb", planes=2, use_timestamps=True,
                                 plane_time_shift_s=0.004)
    ingest(nwb, tmp_path / "s.h5", traces="DeconvolvedPlane0, DeconvolvedPlane1",
           roi_filter="")
    with h5py.File(tmp_path / "s.h5", "r") as f:
        np.testing.assert_array_equal(f["traces/data"][()], sim["Deconvolved"])
        units = read_table(f["units"])
    assert units["plane"].tolist() == ["DeconvolvedPlane0"] * 12 + ["DeconvolvedPlane1"] * 12
    assert units["id"].is_unique  # each plane numbers its ROIs from 0: ids are running numbers


def test_planes_whose_frame_times_disagree_are_refused_by_name(tmp_path):
    nwb, _ = write_imaging_nwb(tmp_path / "planes.nwb", planes=2, use_timestamps=True,
                               plane_time_shift_s=0.02)
    message = refused(nwb, tmp_path, "processing/ophys/Fluorescence/DeconvolvedPlane1",
                      "DeconvolvedPlane0",
                      "frame times", traces="DeconvolvedPlane0,DeconvolvedPlane1")
    assert "half a frame period" in message


# ------------------------------------------------------------------ hostile content

@pytest.fixture
def stamped(tmp_path_factory):
    """An imaging file with frame timestamps (not starting_time and rate)."""
    return write_imaging_nwb(tmp_path_factory.mktemp("stamped") / "im.nwb",
                             use_timestamps=True)[0]


@pytest.mark.parametrize("bad, words", [(np.nan, "not finite"), (np.inf, "not finite")])
def test_non_finite_frame_times(stamped, tmp_path, bad, words):
    with h5py.File(stamped, "r") as f:
        times = f[f"{SERIES}/timestamps"][()]
    times[10] = bad
    replace_dataset(stamped, f"{SERIES}/timestamps", times)
    refused(stamped, tmp_path, f"{SERIES}.timestamps", words)


def test_frame_times_going_backwards(stamped, tmp_path):
    with h5py.File(stamped, "r") as f:
        times = f[f"{SERIES}/timestamps"][()]
    times[[20, 21]] = times[[21, 20]]
    refused_times = replace_dataset(stamped, f"{SERIES}/timestamps", times)
    assert refused_times == times.shape
    refused(stamped, tmp_path, f"{SERIES}.timestamps", "not increasing", "frame 21")


def test_negative_frame_times(stamped, tmp_path):
    with h5py.File(stamped, "r") as f:
        times = f[f"{SERIES}/timestamps"][()]
    replace_dataset(stamped, f"{SERIES}/timestamps", times - 5.0)
    refused(stamped, tmp_path, f"{SERIES}.timestamps", "session start")


def test_frame_times_not_matching_the_frames(stamped, tmp_path):
    with h5py.File(stamped, "r") as f:
        times = f[f"{SERIES}/timestamps"][()]
    replace_dataset(stamped, f"{SERIES}/timestamps", times[:-5])
    refused(stamped, tmp_path, f"{SERIES}.timestamps", "samples")


def test_zero_rate(copy, tmp_path):
    with h5py.File(copy, "r+") as f:
        f[f"{SERIES}/starting_time"].attrs["rate"] = 0.0
    refused(copy, tmp_path, f"{SERIES}.starting_time", "rate > 0")


def test_empty_data(copy, tmp_path):
    replace_dataset(copy, f"{SERIES}/data", np.zeros((0, 24), np.float32))
    refused(copy, tmp_path, f"{SERIES}.data", "no frames")


def test_data_of_the_wrong_shape(copy, tmp_path):
    replace_dataset(copy, f"{SERIES}/data", np.zeros((10, 24, 2), np.float32))
    refused(copy, tmp_path, f"{SERIES}.data", "frames x ROIs")


def test_rois_out_of_range(copy, tmp_path):
    rois = np.arange(24)
    rois[3] = 99
    replace_dataset(copy, f"{SERIES}/rois", rois)
    refused(copy, tmp_path, f"{SERIES}.rois", "outside the 24 rows", "99")


def test_rois_of_the_wrong_length(copy, tmp_path):
    replace_dataset(copy, f"{SERIES}/rois", np.arange(20))
    refused(copy, tmp_path, f"{SERIES}.rois", "24 ROI columns")


def test_text_traces(copy, tmp_path):
    replace_dataset(copy, f"{SERIES}/data", np.array([["a"] * 24] * 10, dtype=object),
                    dtype=h5py.string_dtype())
    refused(copy, tmp_path, f"{SERIES}.data", "text")


def test_infinite_values_are_refused_at_ingestion(copy, tmp_path):
    with h5py.File(copy, "r") as f:
        data = f[f"{SERIES}/data"][()]
    data[5, 2] = np.inf
    replace_dataset(copy, f"{SERIES}/data", data)
    with pytest.raises(InputDataError) as err:
        ingest(copy, tmp_path / "s.h5")
    assert err.value.field == f"{SERIES}.data" and "infinite" in str(err.value)


# ------------------------------------------------------------------ frames as bins

def test_average_frames_nan_policy():
    times = np.arange(9) / 30.0
    values = np.arange(9, dtype=np.float32)[:, None].repeat(2, axis=1)
    values[3:6, 0] = np.nan  # every frame of bin 1 of ROI 0
    values[7, 1] = np.nan  # one frame of bin 2 of ROI 1
    mean, counts = average_frames(times, values, -0.5 / 30, 3 / 30, 3)
    np.testing.assert_allclose(mean[:, 0], [1, np.nan, 7])
    np.testing.assert_allclose(mean[:, 1], [1, 4, 7])  # (6 + 8) / 2: the finite frames' mean
    assert counts.tolist() == [[3, 3], [0, 3], [3, 2]]


def test_bin_frames_average_frames_on_the_imaging_clock(tmp_path):
    nan_frames = [39, 40, 41, 100]  # all of bin 13, one frame of bin 33
    nwb, sim = write_imaging_nwb(tmp_path / "im.nwb", nan_frames=nan_frames)
    ingest(nwb, tmp_path / "s.h5", roi_filter="")
    summary = bin_session(tmp_path / "s.h5", tmp_path / "b.h5", None, bin_frames=3)
    with h5py.File(tmp_path / "b.h5", "r") as f:
        values = f["traces/values"][()]
        t_start, width = f.attrs["t_start_s"], f.attrs["bin_width_s"]
        assert f.attrs["kind"] == "traces" and f.attrs["bin_frames"] == 3
    assert width == pytest.approx(3 / FRAME_RATE)
    # bin k holds frames 3k..3k+2; its centre is the mean of their times
    assert t_start + 0.5 * width == pytest.approx(sim["timestamps"][1])
    n = len(sim["timestamps"]) // 3
    frames = sim["Deconvolved"].astype(np.float64)
    frames[nan_frames] = np.nan
    expected = np.nanmean(frames[:3 * n].reshape(n, 3, -1), axis=1)
    np.testing.assert_allclose(values[:n], expected, rtol=1e-6, equal_nan=True)
    assert np.all(np.isnan(values[13])) and not np.any(np.isnan(values[33]))
    assert summary["nan_bin_fraction"] == pytest.approx(1 / summary["n_bins"])


def test_alignment_cuts_dense_windows_with_nan_kept(tmp_path):
    nwb, sim = write_imaging_nwb(tmp_path / "im.nwb", nan_frames=list(range(30, 60)))
    ingest(nwb, tmp_path / "s.h5", roi_filter="", behavior="hand_vel")
    bin_session(tmp_path / "s.h5", tmp_path / "b.h5", None, bin_frames=2)
    summary = align_trials(tmp_path / "b.h5", tmp_path / "in.h5",
                           AlignSettings(window_start_ms=-200, window_end_ms=600, heldout="none"),
                           metadata_json=tmp_path / "in.json")
    meta = json.loads((tmp_path / "in.json").read_text())
    with h5py.File(tmp_path / "in.h5", "r") as f, h5py.File(tmp_path / "b.h5", "r") as b:
        recon, inds = f["train_recon_data"][()], f["train_inds"][()]
        assert recon.dtype == np.float32 and f["train_encod_data"].dtype == np.float32
        assert recon.shape[1] == 12  # 800 ms snapped to bins of 2 frames (66.7 ms)
        assert f["train_behavior"].shape == (len(inds), 12, 2)
        values = b["traces/values"][()]
        t_start, width = b.attrs["t_start_s"], b.attrs["bin_width_s"]
    starts = np.array(meta["window_start_times_s"]["train"])
    first = np.round((starts - t_start) / width).astype(int)
    np.testing.assert_allclose(starts, t_start + first * width)  # windows on bin edges
    for i in range(len(inds)):
        np.testing.assert_array_equal(recon[i], values[first[i]:first[i] + 12])
    masked = summary["masked_fraction"]
    assert summary["kind"] == "traces" and set(masked) == {"train", "valid"}
    assert 0 < max(masked.values()) < 0.2  # the first trial's window meets the dropped frames
    assert meta["kind"] == "traces" and meta["bin_frames"] == 2
    assert meta["window_end_offset_s"] == pytest.approx(-0.2 + 12 * 2 / FRAME_RATE)


# ------------------------------------------------------------------ start-up

def test_start_up_line_speaks_of_frames(imaging):
    row = settings(imaging[0], bin_frames=2)
    found = {"mouse": check_dataset("mouse", row, "sheet.tsv", CONFIG)}
    line = startup_summary({"mouse": row}, found, {}, {"mouse": ["default"]}, [], None)
    assert "20 ROIs" in line and "bins of 2 frames" in line
    assert "bin_width_ms does not apply to traces" in line and "30 Hz" in line


def test_poisson_with_traces_stops_at_start_up(imaging):
    datasets = {"mouse": settings(imaging[0])}
    lfads = {("mouse", "default"): {"model": {"likelihood": "poisson"}}}
    with pytest.raises(InputDataError) as err:
        check_trace_likelihoods(datasets, {"mouse": ["mouse"]}, lfads)
    assert err.value.field == "lfads.model.likelihood" and "gamma" in str(err.value)
    check_trace_likelihoods(datasets, {"mouse": ["mouse"]},
                            {("mouse", "default"): {"model": {"likelihood": "gamma"}}})


# ------------------------------------------------------------------ the workflow

TINY_MODEL = {"model": {"ic_enc_dim": 16, "ci_enc_dim": 8, "con_dim": 8, "co_dim": 2,
                        "ic_dim": 8, "gen_dim": 16, "fac_dim": 4, "likelihood": "gamma"},
              "training": {"max_epochs": 2, "batch_size": 8, "posterior_samples": 2}}


def test_workflow_trains_on_traces_and_writes_factors_on_the_imaging_clock(tmp_path):
    from pynwb import NWBHDF5IO

    from lfads_core.nwb.export import load_factors

    nwb, sim = write_imaging_nwb(tmp_path / "im.nwb", nan_frames=[200, 201, 202, 900])
    sheet = ("dataset\tnwb\ttraces\troi_filter\tbin_frames\twindow_start_ms\twindow_end_ms\t"
             "behavior\tcondition_columns\n"
             f"mouse\t{nwb}\tDfOverF/RoiResponseSeries\tiscell == 1\t1\t-200\t600\thand_vel\t"
             "condition\n")
    config = yaml.safe_load(tiny_config())
    config["lfads"]["overrides"] = {"mouse": TINY_MODEL}
    work = workflow_dir(tmp_path, sheet, yaml.safe_dump(config))
    result = run_snakemake(work)
    assert "bins of 1 frame (33.33 ms at 30 Hz; bin_width_ms does not apply" in result.stdout
    results = work / "results" / "mouse"
    # the default target scores traces: held-out ROI prediction, vel R^2, PSTH R^2
    metrics = read_table_tsv(results / "metrics.tsv")
    rows = set(zip(metrics["method"], metrics["metric"]))
    for method in ("lfads", "smoothing"):
        for metric in ("heldout_ll_gain", "heldout_r2", "vel R2", "psth R2"):
            assert (method, metric) in rows, (method, metric, rows)
    assert "co-bps" not in set(metrics["metric"])
    assert np.isfinite(metrics["value"]).all() and set(metrics["split"]) == {"valid"}
    decoding = read_table_tsv(results / "decoding" / "summary.tsv")
    assert {"lfads_rates", "smoothed_traces", "binned_traces"} <= set(decoding["method"])
    methods = (results / "methods.md").read_text()
    assert "ROI" in methods and "frame" in methods and "zero-inflated" not in methods
    assert "Gamma observation model of each ROI's values" in methods
    assert (results / "figures" / "method_comparison.png").is_file()
    assert (results / "settings.yaml").is_file()
    assert "mouse" in set(read_table_tsv(work / "results" / "summary" / "metrics.tsv")["dataset"])
    assert (results / "figures" / "training_curves.png").is_file()
    log = (results / "lfads" / "default" / "train_log.csv").read_text().splitlines()
    assert len(log) == 3 and "nan" not in log[-1].lower()
    align = json.loads((results / "align" / "summary.json").read_text())
    assert align["kind"] == "traces" and "masked_fraction" in align

    with NWBHDF5IO(str(results / "factors.nwb"), "r") as io:
        out = io.read()
        rates = out.processing["misc"]["lfads_rates"]
        stamps = np.asarray(rates.timestamps[:])
        assert rates.unit == "n.a."  # the traces' own unit, not Hz
        windows = out.processing["misc"]["lfads_windows"].to_dataframe()
        assert np.isfinite(np.asarray(rates.data[:])).all()
    # with bin_frames 1 every time stamp is a frame time of the recording
    frame = np.round(stamps * FRAME_RATE).astype(int)
    np.testing.assert_allclose(stamps, sim["timestamps"][frame], atol=1e-9)
    assert len(windows) == 40
    loaded = load_factors(results / "factors.nwb")
    assert loaded.units["rates"] == "n.a." and loaded.info["kind"] == "traces"
    assert loaded.rates.shape == (40, 24, 20)
    pytest.importorskip("pynapple")
    objects = loaded.to_pynapple()
    np.testing.assert_allclose(objects["rates"].t, np.sort(stamps))


# ------------------------------------------------------------------ trace metrics

from lfads_core.analysis import metrics as M  # noqa: E402


def _signal(rng, shape=(40, 30, 5)):
    t = np.arange(shape[1])
    phase = rng.uniform(0, 2 * np.pi, (shape[0], 1, shape[2]))
    return np.sin(2 * np.pi * t[None, :, None] / 15 + phase)


def test_trace_metrics_of_the_null_are_zero():
    """The constant training mean of each ROI is the null itself: gain 0, for every family."""
    rng = np.random.default_rng(0)
    s = _signal(rng)
    data = {"gaussian": 2 + s + 0.5 * rng.standard_normal(s.shape),
            "gamma": rng.gamma(4.0, np.exp(s) / 4.0),
            "zig": np.where(rng.random(s.shape) < 0.3 * (1 + s) / 2, 0.5 + rng.gamma(2.0, 0.5, s.shape), 0.0)}
    for likelihood, x in data.items():
        train, test = x[:30], x[30:]
        null = np.broadcast_to(np.nanmean(train, axis=(0, 1)), test.shape)
        null_train = np.broadcast_to(np.nanmean(train, axis=(0, 1)), train.shape)
        if likelihood == "zig":  # the zig null's mean: event fraction x (s_min + event mean)
            null = np.broadcast_to(M.trace_null("zig", train)[0], test.shape)
            null_train = np.broadcast_to(M.trace_null("zig", train)[0], train.shape)
        gain = M.heldout_ll_gain(likelihood, null, test, null_train, train)
        assert abs(gain) < 1e-9, (likelihood, gain)


def test_a_perfect_gaussian_predictor_gains_its_known_information():
    """Signal variance S, noise variance N: the true mean gains 0.5 log2(1 + S/N) bits per
    entry over the constant null; its R^2 is S / (S + N)."""
    rng = np.random.default_rng(1)
    s = _signal(rng, (400, 60, 4))  # variance 1/2
    noise = 0.5
    x = 3 + s + noise * rng.standard_normal(s.shape)
    gain = M.heldout_ll_gain("gaussian", 3 + s[300:], x[300:], 3 + s[:300], x[:300])
    expected = 0.5 * np.log2(1 + 0.5 / noise ** 2)
    assert gain == pytest.approx(expected, abs=0.02)
    assert M.trace_r2(3 + s[300:], x[300:]) == pytest.approx(0.5 / (0.5 + noise ** 2), abs=0.02)
    assert M.trace_r2(x, x) == 1.0


@pytest.mark.parametrize("likelihood", ["gamma", "zig", "gaussian"])
def test_the_true_mean_beats_the_null_and_a_wrong_one(likelihood):
    rng = np.random.default_rng(2)
    s = _signal(rng, (200, 30, 4))
    mean = np.exp(s)
    if likelihood == "gamma":
        x = rng.gamma(5.0, mean / 5.0)
    elif likelihood == "zig":
        q = 0.4 * mean / mean.max()
        x = np.where(rng.random(s.shape) < q, 0.2 + rng.gamma(3.0, 1 / 3.0, s.shape), 0.0)
        mean = q * (0.2 + 1.0)
    else:
        x = mean + 0.3 * rng.standard_normal(s.shape)
    right = M.heldout_ll_gain(likelihood, mean[150:], x[150:], mean[:150], x[:150])
    wrong = M.heldout_ll_gain(likelihood, mean[150:][:, ::-1], x[150:], mean[:150][:, ::-1],
                              x[:150])
    assert right > 0.05 and wrong < right, (right, wrong)
    assert M.heldout_ll_gain_sem(likelihood, mean[150:], x[150:], mean[:150], x[:150], 50, 0) > 0


@pytest.mark.parametrize("likelihood", ["gamma", "zig", "gaussian"])
def test_nan_entries_are_left_out_of_every_trace_metric(likelihood):
    """NaN entries change nothing: a trial of NaN added, or entries set to NaN in both the
    data and a copy whose values there are garbage, score alike."""
    rng = np.random.default_rng(3)
    s = _signal(rng, (60, 30, 3))
    x = np.where(rng.random(s.shape) < 0.5, rng.gamma(3.0, np.exp(s) / 3.0), 0.0) \
        if likelihood == "zig" else rng.gamma(3.0, np.exp(s) / 3.0)
    mean = np.exp(s) * (0.5 if likelihood == "zig" else 1.0)
    train, test, m_train, m_test = x[:40], x[40:], mean[:40], mean[40:]
    base = M.heldout_ll_gain(likelihood, m_test, test, m_train, train)
    r2 = M.trace_r2(m_test, test)
    padded = np.concatenate([test, np.full((1,) + test.shape[1:], np.nan)])
    m_padded = np.concatenate([m_test, np.full((1,) + test.shape[1:], 7.0)])
    assert M.heldout_ll_gain(likelihood, m_padded, padded, m_train, train) == pytest.approx(base)
    assert M.trace_r2(m_padded, padded) == pytest.approx(r2)
    # NaN in the training values: the same as those entries missing from the fit
    holes = train.copy()
    holes[0, :5] = np.nan
    gain = M.heldout_ll_gain(likelihood, m_test, test, m_train, holes)
    assert np.isfinite(gain)
    psth = M.trace_psth_r2(m_test, np.arange(20) % 2, x, np.arange(60) % 2, 1.0)
    x_nan = x.copy()
    x_nan[:, 3] = np.nan
    assert np.isfinite(M.trace_psth_r2(m_test, np.arange(20) % 2, x_nan, np.arange(60) % 2, 1.0))
    assert np.isfinite(psth)


def test_the_trace_smoothing_baseline_fills_missing_frames():
    rng = np.random.default_rng(4)
    s = _signal(rng, (50, 30, 6))
    x = 2 + s + 0.1 * rng.standard_normal(s.shape)
    x[:, 10] = np.nan  # a dropped frame in every trial
    heldin, heldout = M.trace_smoothing_baseline(x[:40, :, :4], x[:40, :, 4:], x[40:, :, :4],
                                                 1.0, [0.01, 1.0, 100.0])
    assert np.isfinite(heldin).all() and np.isfinite(heldout).all()
    assert heldout.shape == (10, 30, 2)
    filled = M.fill_missing(x[:2])
    np.testing.assert_allclose(filled[:, 10], (x[:2, 9] + x[:2, 11]) / 2)


# ------------------------------------------------------------------ simulated imaging

def test_the_simulated_imaging_recording_ingests(tmp_path):
    """The simulation's imaging option writes suite2p-like series from Lorenz-driven spikes
    (calcium kernel, noise, 30 Hz) that ingestion reads, with the ground truth kept."""
    from lfads_core.nwb.simulate import calcium_kernel, imaging_traces, simulate_session, \
        simulate_to_nwb

    params = {"imaging": True, "n_neurons": 12, "n_conditions": 2, "trials_per_condition": 4,
              "frame_rate_hz": 30.0}
    session = simulate_to_nwb(params, tmp_path / "sim.nwb")
    kernel = calcium_kernel(30.0, 0.05, 0.4)
    assert kernel.max() == pytest.approx(1.0, abs=0.05) and kernel[0] == 0
    traces = imaging_traces(session)
    assert traces["Deconvolved"].min() >= 0 and (traces["Deconvolved"] == 0).mean() > 0.5
    assert traces["spike_counts"].sum() == sum(len(t) for t in session.spike_times)
    summary = ingest(tmp_path / "sim.nwb", tmp_path / "session.h5", behavior="hand_vel",
                     roi_filter="", traces="Deconvolved")
    assert summary["rois_kept"] == 12 and summary["frame_rate_hz"] == pytest.approx(30.0)
    assert set(summary["ground_truth"]) == {"latents", "rates"}
    with h5py.File(tmp_path / "session.h5", "r") as f:
        np.testing.assert_allclose(f["traces/data"][()], traces["Deconvolved"], rtol=1e-6)
        assert f["units/heldout"][()].sum() == session.heldout.sum()
    for name in ("Fluorescence", "DfOverF/RoiResponseSeries", "Neuropil"):
        ingest(tmp_path / "sim.nwb", tmp_path / f"{name.replace('/', '_')}.h5",
               roi_filter="", traces=name)
    with pytest.raises(ValueError, match="calcium_rise_s"):
        simulate_session({"imaging": True, "calcium_rise_s": 0.5, "calcium_decay_s": 0.4})
