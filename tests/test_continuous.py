"""A continuous recording after the posterior: segments merged back onto the recording's clock
(factors.h5, factors.nwb, pynapple), scores on merged stretches of the scored blocks, figures,
methods text; and the stretches' building blocks on small arrays."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_snakemake, tiny_config, workflow_dir
from lfads_core.analysis.decoding import decode_behavior, lagged
from lfads_core.analysis.ground_truth import smooth_spikes
from lfads_core.analysis.stretches import stretch_view
from lfads_core.merge import covered_runs, merge_segments

TINY_SIMULATION = {"system": "lorenz", "continuous": True, "duration_s": 40.0, "seed": 0,
                   "n_neurons": 30, "heldout_fraction": 0.2}
TINY_SHEET = ("dataset\tnwb\tbehavior\tsegment_length_ms\tsplit_blocks\ttest_fraction\t"
              "fp_bins\ncont\tresources/simulated/cont.nwb\thand_vel\t500\t5\t0.2\t5\n")


def _segments(n_grid=60, n_window=10, overlap=4, starts=(0, 6, 12, 18, 30, 36), dims=2,
              seed=0):
    rng = np.random.default_rng(seed)
    grid = rng.poisson(3.0, (n_grid, dims)).astype(float)
    starts = np.asarray(starts)
    return grid, starts, np.stack([grid[s:s + n_window] for s in starts])


def test_covered_runs_split_at_gaps():
    assert covered_runs([30, 0, 6, 36], 10).tolist() == [[0, 16], [30, 46]]
    assert covered_runs([0, 10], 10).tolist() == [[0, 20]]  # touching: one run
    assert covered_runs([], 10).shape == (0, 2)


def test_stretches_count_every_bin_once_and_never_bridge_a_gap():
    grid, starts, segs = _segments()
    behavior = segs[..., :1] * 2.0
    data = {"attrs": {"segment_length_bins": 10, "segment_overlap_bins": 4, "fp_bins": 0,
                      "t_start_s": 1.0, "bin_width_s": 0.01},
            "train_encod_data": segs, "train_recon_data": segs, "train_behavior": behavior,
            "train_start_bins": starts, "train_block": np.array([0, 0, 0, 0, 1, 1])}
    view, post = stretch_view(data, {"train_rates": segs})
    # two blocks: stretches [0, 28) and [30, 46), padded with NaN to 28 bins
    assert view["train_start_bins"].tolist() == [0, 30]
    assert view["train_lengths"].tolist() == [28, 16]
    np.testing.assert_array_equal(view["train_recon_data"][0], grid[0:28])  # counts exact
    np.testing.assert_array_equal(view["train_recon_data"][1, :16], grid[30:46])
    assert np.isnan(view["train_recon_data"][1, 16:]).all()
    np.testing.assert_allclose(post["train_rates"][1, :16], grid[30:46], rtol=1e-6)
    assert view["attrs"]["fp_bins"] == 0 and view["train_cond_idx"].tolist() == [0, 0]
    # a lag pairs bins within a stretch only: no pair reaches into the other block or padding
    x, y = lagged(view["train_encod_data"], view["train_behavior"], 3)
    ok = np.isfinite(x).all(-1) & np.isfinite(y).all(-1)
    assert ok.sum() == (28 - 3) + (16 - 3)
    # smoothing stops at a stretch's end, as if the stretch were a trial of its own
    smoothed = smooth_spikes(view["train_encod_data"], 2.0)
    np.testing.assert_allclose(smoothed[1, :16], smooth_spikes(grid[None, 30:46], 2.0)[0])
    assert np.isnan(smoothed[1, 16:]).all()


def test_decoding_leaves_out_the_padding():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 40, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]])
    x[2, 25:], y[2, 25:] = np.nan, np.nan  # a shorter stretch
    scores, predictions = decode_behavior({"m": {"train": x[:4], "valid": x[4:]}},
                                          {"train": y[:4], "valid": y[4:]}, ["v"], lag_bins=0,
                                          n_bootstrap=10)
    assert scores["r2"].min() > 0.99


@pytest.fixture(scope="module")
def continuous_run(tmp_path_factory):
    config = yaml.safe_load(tiny_config())
    config["simulations"]["cont"] = TINY_SIMULATION
    config["lfads"]["overrides"]["cont"] = config["lfads"]["overrides"]["tiny"]
    config["evaluation"]["decoding"]["lag_ms"] = 20
    work = workflow_dir(tmp_path_factory.mktemp("continuous"), TINY_SHEET,
                        yaml.safe_dump(config))
    result = run_snakemake(work)  # the default target, all
    return work, result


@pytest.mark.workflow
def test_all_completes_on_a_continuous_recording(continuous_run):
    work, _ = continuous_run
    results = work / "results/cont"
    for name in ("factors.h5", "factors.nwb", "metrics.tsv", "decoding/summary.tsv",
                 "methods.md", "settings.yaml", "figures/raster_rates.png",
                 "figures/decoded_behavior.png", "figures/latents_vs_truth.png"):
        assert (results / name).is_file(), name
    assert (work / "results/summary/metrics.tsv").is_file()


@pytest.mark.workflow
def test_factors_are_the_merged_posterior_on_the_recordings_clock(continuous_run):
    nap = pytest.importorskip("pynapple")
    from lfads_core.nwb.export import load_factors
    from lfads_core.nwb.export_continuous import LfadsContinuousFactors

    work, _ = continuous_run
    results = work / "results/cont"
    meta = json.loads((results / "lfads_input.json").read_text())
    seg = meta["segments"]
    width, t0, n_grid = meta["bin_width_s"], meta["t_start_s"], meta["n_grid_bins"]
    n_window, overlap = seg["length_bins"], seg["overlap_bins"]
    with h5py.File(results / "lfads/default/posterior.h5") as post:
        splits = [s for s in ("train", "valid", "test") if f"{s}_rates" in post]
        starts = [np.rint((np.asarray(meta["window_start_times_s"][s]) - t0) / width)
                  .astype(int) for s in splits]
        expected = {key: merge_segments([post[f"{s}_{key}"][()][:, :n_window] for s in splits],
                                        starts, n_grid, overlap)
                    for key in ("rates", "factors")}
    expected["rates"] = expected["rates"] / np.float32(width)
    h5 = load_factors(results / "factors.h5")
    nwb = load_factors(results / "factors.nwb")
    for out in (h5, nwb):
        assert isinstance(out, LfadsContinuousFactors)
        assert out.rates.shape == (n_grid, len(meta["unit_ids"]))
        np.testing.assert_allclose(out.rates, expected["rates"], rtol=1e-5, equal_nan=True)
        np.testing.assert_allclose(out.factors, expected["factors"], rtol=1e-5, atol=1e-6,
                                   equal_nan=True)
        assert out.t_start_s == pytest.approx(t0) and out.bin_width_s == pytest.approx(width)
        np.testing.assert_allclose(out.timestamps[:2], t0 + np.array([0.5, 1.5]) * width)
        # every block with its split; the gaps are NaN and outside the covered intervals
        assert out.blocks["lfads_split"].tolist() == [b["split"] for b in seg["blocks"]]
        covered = out.covered()
        assert np.isfinite(out.rates[covered]).all() and np.isnan(out.rates[~covered]).all()
        # each covered stretch lies inside its block; only forward bins end one uncovered
        for row in out.intervals.itertuples():
            block = seg["blocks"][row.block]
            assert block["start_s"] - 1e-9 <= row.start_time < row.stop_time \
                <= block["stop_s"] + 1e-9 and row.lfads_split == block["split"]
        assert (~covered).sum() == len(out.intervals) * seg["fp_bins"]
    pd.testing.assert_frame_equal(h5.intervals, nwb.intervals, check_dtype=False)
    objects = nwb.to_pynapple()
    rates = objects["rates"]
    assert isinstance(rates, nap.TsdFrame) and isinstance(objects["blocks"], nap.IntervalSet)
    assert len(rates) == covered.sum() and np.isfinite(rates.values).all()
    np.testing.assert_allclose(rates.t, h5.timestamps[covered])
    assert set(objects["intervals"]["lfads_split"]) == {"train", "valid", "test"}
    test = objects["intervals"][objects["intervals"]["lfads_split"] == "test"]
    assert len(rates.restrict(test)) > 0
    # the NWB series are continuous on the recording's clock: starting time and rate
    from pynwb import NWBHDF5IO
    with NWBHDF5IO(str(results / "factors.nwb"), "r") as io:
        series = io.read().processing["misc"]["lfads_rates"]
        assert series.rate == pytest.approx(1 / width)
        assert series.starting_time == pytest.approx(t0 + width / 2)


@pytest.mark.workflow
def test_metrics_and_decoding_score_merged_stretches_of_the_scored_blocks(continuous_run):
    work, _ = continuous_run
    results = work / "results/cont"
    metrics = pd.read_csv(results / "metrics.tsv", sep="\t")
    assert "psth R2" not in set(metrics["metric"])
    headline = metrics[metrics["split"] == "test"]
    for method, metric in (("lfads", "co-bps"), ("smoothing", "co-bps"), ("lfads", "fp-bps"),
                           ("lfads", "vel R2"), ("smoothing", "vel R2"),
                           ("lfads", "rate R2 (truth)")):
        row = headline[(headline["method"] == method) & (headline["metric"] == metric)]
        assert len(row) == 1 and np.isfinite(row["value"]).all(), (method, metric)
    assert set(headline["seen_by"]) == {"none"}
    summary = json.loads((results / "align/summary.json").read_text())
    n_test_blocks = [b["split"] for b in summary["blocks"]].count("test")
    co = headline[(headline["metric"] == "co-bps")]
    assert (co["n_trials"] == n_test_blocks).all()  # one stretch per block: no gaps here
    # co-bps counts each test bin once: from the merged test counts
    from lfads_core.analysis.evaluation import load_arrays
    from lfads_core.analysis.metrics import bits_per_spike
    data = load_arrays(results / "lfads_input.h5")
    post = load_arrays(results / "lfads/default/posterior.h5")
    view, merged = stretch_view(data, post)
    n_in = int(data["attrs"]["n_heldin"])
    value = bits_per_spike(merged["test_rates"][..., n_in:], view["test_recon_data"][..., n_in:])
    lfads_co = co[co["method"] == "lfads"]["value"].iloc[0]
    assert lfads_co == pytest.approx(value, rel=1e-6)
    # decoding: the test stretches, the lag inside each stretch
    decoding = pd.read_csv(results / "decoding/summary.tsv", sep="\t")
    assert set(decoding["split"]) == {"test"} and (decoding["n_trials"] == n_test_blocks).all()
    with h5py.File(results / "decoding/predictions.h5") as f:
        lengths = f["lengths"][()]
        decoded = f["decoded"][()]
        lag = 4  # 20 ms at 5 ms bins
        for k, n in enumerate(lengths):  # no prediction before the lag or after the stretch
            assert np.isnan(decoded[k, :lag]).all() and np.isfinite(decoded[k, lag:n]).all()
            assert np.isnan(decoded[k, n:]).all()
        assert f["start_times_s"].shape == lengths.shape


@pytest.mark.workflow
def test_methods_text_speaks_of_segments(continuous_run):
    work, _ = continuous_run
    text = (work / "results/cont/methods.md").read_text()
    assert "segments" in text and "overlap" in text and "blocks" in text
    assert "merged" in text
    assert "merged back onto the recording's bin grid" in text
    body = text.split("## References")[0]
    assert "alignment event" not in body and "Each trial's window" not in body
    assert "training trials" not in body and "per trial" not in body
    assert "PSTH R^2 needs trials of repeated conditions and does not apply" in text
