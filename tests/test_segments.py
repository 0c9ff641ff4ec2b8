"""Continuous recordings cut into overlapping segments: tiling of the observed time, the split
by blocks of time, start-up errors, the simulated continuous recording and a real workflow run
on it."""

import json

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, run_snakemake, tiny_config, workflow_dir, write_test_nwb
from lfads_core.errors import InputDataError
from lfads_core.nwb.alignment import AlignSettings
from lfads_core.nwb.binning import bin_session
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
from lfads_core.nwb.segments import (align_windows, block_labels, check_split_counts, segment_bins,
                                     segment_recording, tile)
from lfads_core.nwb.simulate import simulate_session, simulate_to_nwb
from lfads_core.workflow.preflight import check_dataset
from lfads_core.workflow.startup import _dataset_line

CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SHEET = "config/datasets.tsv"
WIDTH = 0.005
# Observed time with two gaps: [0, 20) s, [23.3, 45) s and [45.5, 60) s.
OBSERVED = [[0.0, 20.0], [23.3, 45.0], [45.5, 60.0]]


def settings_for(nwb, **changes):
    return {**CONFIG["defaults"], "dataset": "lab", "nwb": str(nwb), "segment_length_ms": 500,
            **changes}


def fails(nwb, field, *words, **changes):
    """The start-up check fails naming the sheet, the dataset, the field and ``words``."""
    with pytest.raises(InputDataError) as err:
        check_dataset("lab", settings_for(nwb, **changes), SHEET, CONFIG)
    message = str(err.value)
    assert err.value.field == field, message
    for word in (SHEET, "dataset 'lab'", f"field '{field}'", *words):
        assert word in message, (word, message)
    return message


@pytest.fixture
def gapped(tmp_path):
    """A recording without trials: 5 units observed over OBSERVED, 2-D behaviour at 1 kHz."""
    rng = np.random.default_rng(0)
    spikes = [np.sort(np.concatenate([rng.uniform(a, b, int(8 * (b - a))) for a, b in OBSERVED]))
              for _ in range(5)]
    spikes[0] = np.append(spikes[0], 59.9995)  # the recording (its last spike) ends at 60 s
    t = np.arange(0, 60.5, 1e-3)
    return write_test_nwb(tmp_path / "gapped.nwb", spike_times=spikes, with_trials=False,
                          obs_intervals=[OBSERVED] * 5, heldout=[0, 0, 0, 0, 1],
                          behavior={"hand_vel": np.column_stack([np.sin(t), np.cos(t)])})


def aligned(nwb, tmp_path, **changes):
    """Ingest, bin and align ``nwb`` as a continuous dataset: (summary, metadata, file)."""
    settings = settings_for(nwb, behavior="hand_vel", **changes)
    ingest_nwb(nwb, tmp_path / "session.h5", IngestSettings.from_settings(settings))
    bin_session(tmp_path / "session.h5", tmp_path / "binned.h5", settings["bin_width_ms"] / 1e3)
    summary = align_windows(tmp_path / "binned.h5", tmp_path / "lfads_input.h5",
                            AlignSettings.from_settings(settings), tmp_path / "lfads_input.json")
    metadata = json.loads((tmp_path / "lfads_input.json").read_text())
    return summary, metadata, tmp_path / "lfads_input.h5"


def segment_spans(metadata):
    """Each split's segments as (start, stop) on the recording's clock, forward bins included."""
    seg = metadata["segments"]
    length = (seg["length_bins"] + seg["fp_bins"]) * metadata["bin_width_s"]
    return {split: np.array([[t, t + length] for t in starts])
            for split, starts in metadata["window_start_times_s"].items()}


def test_tiling_covers_each_stretch_and_ends_on_its_last_bin():
    assert tile(0, 100, 20, 15).tolist() == [0, 15, 30, 45, 60, 75, 80]
    assert tile(0, 95, 20, 15).tolist() == [0, 15, 30, 45, 60, 75]
    assert tile(3, 20, 20, 15).tolist() == []  # shorter than one segment


def test_segments_never_bridge_a_gap(gapped, tmp_path):
    summary, metadata, path = aligned(gapped, tmp_path, fp_bins=4)
    spans = np.concatenate(list(segment_spans(metadata).values()))
    inside = [any(a - 1e-9 <= s and e <= b + 1e-9 for a, b in OBSERVED) for s, e in spans]
    assert all(inside), spans[~np.array(inside)]
    # every observed bin is in a segment (each stretch of a block is longer than a segment)
    bins = np.zeros(int(60 / WIDTH), bool)
    for s, e in spans:
        bins[round(s / WIDTH):round(e / WIDTH)] = True
    for a, b in OBSERVED:
        assert bins[int(np.ceil(a / WIDTH - 1e-6)):int(b / WIDTH)].all()
    assert not bins[round(20.0 / WIDTH):round(23.3 / WIDTH)].any()  # the gaps stay empty
    assert not bins[round(45.0 / WIDTH):round(45.5 / WIDTH)].any()
    seg = metadata["segments"]
    assert (seg["length_bins"], seg["overlap_bins"], seg["step_bins"], seg["fp_bins"]) == \
        (100, 20, 80, 4)
    with h5py.File(path) as f:
        assert f["train_recon_data"].shape[1:] == (104, 5)
        assert f["train_encod_data"].shape[1:] == (100, 4)
        assert f["train_behavior"].shape[1:] == (100, 2)
        assert f.attrs["segment_length_bins"] == 100 and f.attrs["segment_overlap_bins"] == 20
        inds = np.sort(np.concatenate([f[f"{s}_inds"][()] for s in metadata["trial_ids"]]))
    assert inds.tolist() == list(range(summary["segments_in_recording"]))
    n = sum(len(v) for v in metadata["window_start_times_s"].values())
    assert n == summary["train_segments"] + summary["valid_segments"] + summary["test_segments"]


def test_split_is_by_blocks_and_training_never_sees_a_held_bin(gapped, tmp_path):
    summary, metadata, _ = aligned(gapped, tmp_path, test_fraction=0.2, split_blocks=5,
                                   fp_bins=2, segment_overlap_ms=250)
    blocks = metadata["segments"]["blocks"]
    assert [b["split"] for b in blocks].count("valid") == 1
    assert [b["split"] for b in blocks].count("test") == 1
    assert summary["blocks"] == blocks and summary["split_blocks"] == 5
    # blocks are contiguous, in time order, of equal observed time (to a bin)
    assert all(a["stop_s"] <= b["start_s"] for a, b in zip(blocks, blocks[1:]))
    observed = [b["observed_s"] for b in blocks]
    assert max(observed) - min(observed) <= WIDTH + 1e-9
    spans = segment_spans(metadata)
    for split, starts in metadata["segments"]["block"].items():
        for (s, e), k in zip(spans[split], starts):
            assert blocks[k]["split"] == split
            assert blocks[k]["start_s"] - 1e-9 <= s and e <= blocks[k]["stop_s"] + 1e-9
    held = np.concatenate([spans["valid"], spans["test"]])
    for s, e in spans["train"]:
        assert not np.any((held[:, 0] < e - 1e-9) & (s < held[:, 1] - 1e-9)), (s, e)
    # the same seed, the same blocks; another seed, others
    again = segment_recording(np.array(OBSERVED), 0.0, WIDTH, 12001, 100, 50, 2, 5, 0.2, 0.2, 0,
                              "x")
    assert [b["split"] for b in again.blocks] == [b["split"] for b in blocks]
    other = [segment_recording(np.array(OBSERVED), 0.0, WIDTH, 12001, 100, 50, 2, 5, 0.2, 0.2,
                               seed, "x").blocks for seed in range(1, 6)]
    assert any([b["split"] for b in o] != [b["split"] for b in blocks] for o in other)


def test_startup_counts_segments_as_alignment_cuts_them(gapped, tmp_path):
    found = check_dataset("lab", settings_for(gapped, behavior="hand_vel", fp_bins=4), SHEET,
                          CONFIG)
    summary, _, _ = aligned(gapped, tmp_path, fp_bins=4)
    assert (found["train"], found["valid"], found["test"]) == \
        (summary["train_segments"], summary["valid_segments"], summary["test_segments"])
    line = _dataset_line("lab", settings_for(gapped, fp_bins=4), found)
    assert f"segments {found['train']} train, {found['valid']} valid, 0 test" in line
    assert "split by 10 blocks of time" in line
    assert "segments of 500 ms overlapping by 100 ms (100 bins of 5 ms + 4 forward, " \
           "overlap 20 bins)" in line


def test_segment_and_overlap_must_be_whole_bins_and_overlap_shorter(gapped):
    fails(gapped, "segment_length_ms", "segment length 502 ms is not a whole number of 5 ms bins",
          segment_length_ms=502)
    fails(gapped, "segment_overlap_ms", "segment overlap 12 ms is not a whole number of 5 ms bins",
          segment_overlap_ms=12)
    fails(gapped, "segment_overlap_ms", "overlap 500 ms (100 bins) must be shorter than the "
          "segment, 500 ms (100 bins)", segment_overlap_ms=500)
    assert segment_bins(500, "auto", WIDTH, "x") == (100, 20)
    assert segment_bins(510, "auto", WIDTH, "x") == (102, 20)  # a fifth, rounded down


def test_segments_longer_than_every_observed_interval(gapped):
    fails(gapped, "segment_length_ms", "longer than every observed interval",
          "the longest: 21.7 s of 3", segment_length_ms=25000)


def test_blocks_too_short_for_a_segment(gapped):
    message = fails(gapped, "split_blocks", "segments needed", "hold 0",
                    "longest stretch of observed time is 1.405 s", "use fewer split_blocks",
                    segment_length_ms=4000, split_blocks=40)
    assert str(gapped) in message
    fails(gapped, "split_blocks", "leaving none for training", split_blocks=2, test_fraction=0.2)
    fails(gapped, "split", "split 'file' reads a trials table", split="file")


def test_a_validation_block_too_short_for_a_segment_is_named():
    valid = int(np.flatnonzero(block_labels(4, 0.25, 0.0, 0, "x") == "valid")[0])
    intervals, t = [], 0.0
    for block in range(4):  # 10 s observed each; the validation block in stretches of 1 s
        pieces = 10 if block == valid else 1
        for _ in range(pieces):
            intervals.append([t, t + 10.0 / pieces])
            t += 10.0 / pieces + 0.5
    seg = segment_recording(np.array(intervals), 0.0, WIDTH, round(t / WIDTH) + 1, 400, 80, 0,
                            4, 0.25, 0.0, 0, "sheet (dataset 'x')")
    assert seg.counts["valid"] == 0 and seg.counts["train"] > 0
    with pytest.raises(InputDataError) as err:
        check_split_counts(seg, [("valid", 1, "for the validation loss")], WIDTH,
                           "sheet (dataset 'x')")
    assert err.value.field == "split_blocks"
    assert f"the 1 valid blocks of 4 (blocks [{valid}]) hold 0: their longest stretch of " \
           "observed time is 1 s and a segment 400 bins (2 s)" in str(err.value)


def test_simulated_continuous_recording(tmp_path):
    params = {"continuous": True, "duration_s": 20.0, "n_neurons": 12, "seed": 3}
    a, b = simulate_session(params), simulate_session(params)
    assert all(np.array_equal(x, y) for x, y in zip(a.spike_times, b.spike_times))
    assert len(a.trials) == 0 and a.obs_intervals.tolist() == [[0.0, 20.0]]
    assert a.truth_rates_hz.shape == (4000, 12) and a.truth_latents.shape == (4000, 3)
    assert a.hand_vel.shape == (20000, 2) and np.isfinite(a.hand_vel).all()
    assert np.isfinite(a.truth_rates_hz).all()
    rates = np.array([len(t) for t in a.spike_times]) / 20.0
    assert 2 < rates.mean() < 25
    assert max(t.max() for t in a.spike_times) < 20.0
    path = simulate_to_nwb(params, tmp_path / "c.nwb") and tmp_path / "c.nwb"
    with h5py.File(path) as f:
        assert "trials" not in f.get("intervals", {})
        assert set(f["processing/ground_truth"]) == {"latents", "rates"}
    other = simulate_session({**params, "seed": 4})
    assert not np.array_equal(a.spike_times[0], other.spike_times[0])
    with pytest.raises(ValueError, match="duration_s"):
        simulate_session({"continuous": True, "duration_s": 0})


TINY_SIMULATION = {"system": "lorenz", "continuous": True, "duration_s": 40.0, "seed": 0,
                   "n_neurons": 30, "heldout_fraction": 0.2}
TINY_SHEET = ("dataset\tnwb\tbehavior\tsegment_length_ms\tsplit_blocks\ttest_fraction\n"
              "cont\tresources/simulated/cont.nwb\thand_vel\t500\t5\t0.2\n")


@pytest.mark.workflow
def test_workflow_trains_on_segments_of_a_simulated_continuous_recording(tmp_path):
    config = yaml.safe_load(tiny_config())
    config["simulations"]["cont"] = TINY_SIMULATION
    config["lfads"]["overrides"]["cont"] = config["lfads"]["overrides"]["tiny"]
    work = workflow_dir(tmp_path, TINY_SHEET, yaml.safe_dump(config))
    result = run_snakemake(work, "results/cont/lfads/default/posterior.h5")
    assert "cont: simulated by the first job" in result.stdout
    assert "segments of 500 ms overlapping by 100 ms" in result.stdout
    summary = json.loads((work / "results/cont/align/summary.json").read_text())
    assert summary["mode"] == "segments" and summary["segments_in_recording"] > 0
    assert summary["test_segments"] > 0 and summary["valid_segments"] > 0
    assert [b["split"] for b in summary["blocks"]].count("test") == 1
    with h5py.File(work / "results/cont/lfads/default/posterior.h5") as f:
        assert f["train_rates"].shape[0] == summary["train_segments"]
        assert f["test_rates"].shape[0] == summary["test_segments"]
    with h5py.File(work / "results/cont/lfads_input.h5") as f:
        assert f["train_truth_rates"].shape[1:] == (100, 30)
        for split in ("train", "valid", "test"):  # the truth at every bin, the last one too
            assert np.isfinite(f[f"{split}_truth_rates"][()]).all()
            assert np.isfinite(f[f"{split}_truth_latents"][()]).all()
            assert np.isfinite(f[f"{split}_behavior"][()]).all()
    # a second start counts the written file's segments at start-up, as alignment cut them
    again = run_snakemake(work, "-n", "results/cont/lfads/default/posterior.h5")
    line = [x for x in again.stdout.splitlines() if x.startswith("cont: ")][0]
    assert (f"segments {summary['train_segments']} train, {summary['valid_segments']} valid, "
            f"{summary['test_segments']} test (split by 5 blocks of time)") in line


@pytest.mark.workflow
def test_workflow_names_a_bad_segment_setting_before_any_job(tmp_path):
    config = yaml.safe_load(tiny_config())
    config["simulations"]["cont"] = TINY_SIMULATION
    sheet = TINY_SHEET.replace("\t500\t", "\t502\t")
    work = workflow_dir(tmp_path, sheet, yaml.safe_dump(config))
    result = run_snakemake(work, "-n", check=False)
    assert result.returncode != 0
    assert "config/datasets.tsv (dataset 'cont'): field 'segment_length_ms': segment length " \
           "502 ms is not a whole number of 5 ms bins" in result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.workflow
@pytest.mark.parametrize("search", ["sweep", "pbt"])
def test_continuous_rows_take_a_search_and_a_stitched_group(tmp_path, search):
    """A sweep or PBT and a stitched group of two continuous sessions, beside a trial dataset,
    plan as for trials (dry run): one model for the group, its sampling per session."""
    config = yaml.safe_load(tiny_config())
    config["simulations"]["cont"] = TINY_SIMULATION
    config["simulations"]["cont2"] = dict(TINY_SIMULATION, seed=1)
    config["simulations"]["tiny"] = yaml.safe_load(tiny_config())["simulations"]["tiny"]
    if search == "sweep":
        config["lfads"]["sweep"] = {"method": "grid", "n_runs": 2, "seed": 0,
                                    "parameters": {"training.lr": [0.004, 0.01]}}
    else:
        config["lfads"]["pbt"].update(enabled=True, population=2, generations=2)
    sheet = ("dataset\tnwb\tbehavior\tsegment_length_ms\tsplit_blocks\ttest_fraction\tgroup\n"
             "cont\tresources/simulated/cont.nwb\thand_vel\t500\t5\t0.2\tpair\n"
             "cont2\tresources/simulated/cont2.nwb\thand_vel\t500\t5\t0.2\tpair\n"
             "tiny\tresources/simulated/tiny.nwb\thand_vel\t\t10\t0.2\t\n")
    work = workflow_dir(tmp_path, sheet, yaml.safe_dump(config))
    result = run_snakemake(work, "-n")
    assert "Traceback" not in result.stdout and "Error" not in result.stdout
    planned = result.stdout.split("Job stats:")[1]
    assert "sample_stitched_posterior" in planned and "extract_factors" in planned
    assert ("select_lfads_run" if search == "sweep" else "train_pbt_member") in planned
    assert "cont: " in result.stdout and "segments of 500 ms" in result.stdout
