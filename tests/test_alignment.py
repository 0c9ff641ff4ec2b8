"""Trial alignment edge cases, on small NWB files run through ingest -> bin -> align."""

import json

import h5py
import numpy as np
import pytest

from conftest import regular_trials
from lfads_core.nwb.alignment import AlignSettings, align_trials, inside_intervals
from lfads_core.nwb.binning import bin_session
from lfads_core.errors import InputDataError
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb


def prepare(nwb, tmp_path, bin_width=0.005, **ingest_settings):
    session, binned = tmp_path / "session.h5", tmp_path / "binned.h5"
    ingest_nwb(nwb, session, IngestSettings(**ingest_settings))
    bin_session(session, binned, bin_width)
    return binned


def align(binned, tmp_path, **settings):
    out = tmp_path / "lfads_input.h5"
    summary = align_trials(binned, out, AlignSettings(**settings), tmp_path / "meta.json")
    with h5py.File(out, "r") as h5:
        data = {k: h5[k][()] for k in h5}
        data["attrs"] = dict(h5.attrs)
    return data, summary


def test_layout_heldout_last_and_counts_match_the_spikes(small_recording, tmp_path):
    binned = prepare(small_recording, tmp_path, behavior=["hand_vel"])
    data, summary = align(binned, tmp_path, fp_bins=4, condition_columns=("condition",))
    assert data["train_encod_data"].shape == (8, 140, 4)
    assert data["train_recon_data"].shape == (8, 144, 6)
    assert data["valid_recon_data"].shape == (2, 144, 6)
    assert data["train_behavior"].shape == (8, 140, 2)
    np.testing.assert_array_equal(data["train_encod_data"], data["train_recon_data"][:, :140, :4])
    assert data["attrs"]["n_heldin"] == 4 and data["attrs"]["n_heldout"] == 2
    assert data["train_inds"].tolist() == list(range(8)) and data["valid_inds"].tolist() == [8, 9]
    assert data["train_cond_idx"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["heldout"] == [False] * 4 + [True] * 2
    assert meta["behavior_columns"] == ["hand_vel_x", "hand_vel_y"]

    # Every aligned count equals a direct count of the file's spikes in the snapped window.
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(small_recording), "r") as io:
        units = io.read().units
        spikes = [units["spike_times"][k] for k in range(len(units))]
    for split in ("train", "valid"):
        for row, start in zip(data[f"{split}_recon_data"], meta["window_start_times_s"][split]):
            edges = start + np.arange(145) * 0.005
            direct = np.stack([np.histogram(s, edges)[0] for s in spikes], axis=1)
            np.testing.assert_array_equal(row, direct)
    # Behaviour at bin centres follows the sine written into the file.
    centres = np.asarray(meta["window_start_times_s"]["train"])[:, None] + \
        (np.arange(140) + 0.5) * 0.005
    np.testing.assert_allclose(data["train_behavior"][:, :, 0], np.sin(2 * np.pi * centres),
                               atol=1e-3)


def test_window_snaps_to_the_nearest_bin_edge(make_nwb, tmp_path):
    trials = regular_trials(3)
    trials["move_onset_time"] = trials["start_time"] + [0.3012, 0.3038, 0.3]
    nwb = make_nwb(spike_times=[[0.5, 1.5, 2.5]], trials=trials)
    data, _ = align(prepare(nwb, tmp_path), tmp_path, split="random", valid_fraction=0.34)
    meta = json.loads((tmp_path / "meta.json").read_text())
    starts = sorted(meta["window_start_times_s"]["train"] + meta["window_start_times_s"]["valid"])
    # onsets 0.4012, 1.6038, 2.8 with -250 ms: 0.1512 -> 0.150, 1.3538 -> 1.355, 2.55 -> 2.55
    np.testing.assert_allclose(starts, [0.150, 1.355, 2.55], atol=1e-12)


def test_trials_leaving_the_recording_or_obs_intervals_are_dropped(make_nwb, tmp_path):
    trials = regular_trials(4)
    trials.loc[0, "move_onset_time"] = 0.1  # window starts at -0.15 s: before the recording
    obs = [[[0.0, 2.5], [3.7, 6.0]]]  # trial 2 (2.5-3.5 s) is not observed
    nwb = make_nwb(spike_times=[[0.5, 1.5, 4.0]], trials=trials, obs_intervals=obs)
    data, summary = align(prepare(nwb, tmp_path), tmp_path, split="random", valid_fraction=0.5)
    assert summary["drop_reasons"] == {"window outside recording": 1,
                                       "window outside obs_intervals": 1}
    assert sorted(np.concatenate([data["train_inds"], data["valid_inds"]])) == [1, 3]


def test_nan_behaviour_in_the_window_drops_the_trial(make_nwb, tmp_path):
    trials = regular_trials(3)
    t = np.arange(0, 4, 1e-3)
    vel = np.column_stack([np.cos(t), np.sin(t)])
    vel[(t > 1.6) & (t < 1.7)] = np.nan  # inside trial 1's window
    nwb = make_nwb(spike_times=[[0.5]], trials=trials, behavior={"hand_vel": vel})
    data, summary = align(prepare(nwb, tmp_path, behavior=["hand_vel"]), tmp_path,
                          split="random", valid_fraction=0.5)
    assert summary["drop_reasons"] == {"NaN behaviour in window": 1}
    assert 1 not in np.concatenate([data["train_inds"], data["valid_inds"]])
    assert np.isfinite(data["train_behavior"]).all()


def test_file_split_maps_labels_and_drops_test_trials(make_nwb, tmp_path):
    trials = regular_trials(5, split=["train", "val", "test", "train", "val"])
    nwb = make_nwb(spike_times=[[0.5]], trials=trials)
    data, summary = align(prepare(nwb, tmp_path), tmp_path, split="file",
                          split_labels="train=train; valid=val")
    assert data["train_inds"].tolist() == [0, 3] and data["valid_inds"].tolist() == [1, 4]
    assert summary["drop_reasons"] == {"split=test": 1}
    assert "test_encod_data" not in data and summary["test_trials"] == 0


def test_file_split_keeps_nlb_test_trials_as_test(make_nwb, tmp_path):
    """NLB's labels by default: its test trials become the test split, written like the others."""
    trials = regular_trials(5, split=["train", "val", "test", "Train", "val"])
    nwb = make_nwb(spike_times=[[0.5]], trials=trials)
    data, summary = align(prepare(nwb, tmp_path), tmp_path, split="file")
    assert data["train_inds"].tolist() == [0, 3] and data["valid_inds"].tolist() == [1, 4]
    assert data["test_inds"].tolist() == [2] and summary["test_trials"] == 1
    assert data["test_recon_data"].shape[1:] == data["train_recon_data"].shape[1:]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["trial_ids"]["test"] == [2] and len(meta["window_start_times_s"]["test"]) == 1


def test_test_fraction_draws_from_the_files_training_trials(make_nwb, tmp_path):
    trials = regular_trials(10, split=["train"] * 8 + ["val"] * 2)
    nwb = make_nwb(spike_times=[[0.5]], trials=trials)
    binned = prepare(nwb, tmp_path)
    data, summary = align(binned, tmp_path, split="file", test_fraction=0.2, seed=1)
    assert data["valid_inds"].tolist() == [8, 9]  # the file's validation trials stay
    assert len(data["test_inds"]) == 2 and set(data["test_inds"]) <= set(range(8))
    assert not set(data["test_inds"]) & set(data["train_inds"])
    again, _ = align(binned, tmp_path, split="file", test_fraction=0.2, seed=1)
    assert again["test_inds"].tolist() == data["test_inds"].tolist()


def test_random_split_with_test_trials_is_seeded_and_disjoint(small_recording, tmp_path):
    binned = prepare(small_recording, tmp_path)
    without, _ = align(binned, tmp_path, split="random", valid_fraction=0.3, seed=3)
    data, summary = align(binned, tmp_path, split="random", valid_fraction=0.3, test_fraction=0.2,
                          seed=3)
    splits = [set(data[f"{s}_inds"].tolist()) for s in ("train", "valid", "test")]
    assert len(splits[1]) == 3 and len(splits[2]) == 2 and sum(map(len, splits)) == 10
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert data["valid_inds"].tolist() == without["valid_inds"].tolist()  # test comes from train
    assert summary["test_trials"] == 2


@pytest.mark.parametrize("labels, message", [("train=train; valid=val,train", "both"),
                                             ("train:train", "<split>=<label>"),
                                             ("training=train", "<split>=<label>")])
def test_bad_split_labels_are_named(make_nwb, tmp_path, labels, message):
    nwb = make_nwb(spike_times=[[0.5]], trials=regular_trials(4, split=["train", "val"] * 2))
    with pytest.raises(InputDataError, match=message) as err:
        align(prepare(nwb, tmp_path), tmp_path, split="file", split_labels=labels)
    assert err.value.field == "split_labels"
    assert not (tmp_path / "lfads_input.h5").exists()


def test_test_fraction_leaving_no_test_trial_is_an_error(make_nwb, tmp_path):
    nwb = make_nwb(spike_times=[[0.5]], trials=regular_trials(4, split=["train", "val"] * 2))
    with pytest.raises(InputDataError, match="test") as err:
        align(prepare(nwb, tmp_path), tmp_path, split="file", test_fraction=0.01)
    assert err.value.field == "test_fraction"


def test_random_split_and_heldout_fraction_are_seeded(small_recording, tmp_path):
    binned = prepare(small_recording, tmp_path)
    first, _ = align(binned, tmp_path, split="random", valid_fraction=0.3, seed=3, heldout="0.5")
    again, _ = align(binned, tmp_path, split="random", valid_fraction=0.3, seed=3, heldout="0.5")
    other, _ = align(binned, tmp_path, split="random", valid_fraction=0.3, seed=4, heldout="0.5")
    assert first["valid_inds"].tolist() == again["valid_inds"].tolist()
    assert len(first["valid_inds"]) == 3 and first["attrs"]["n_heldout"] == 3
    np.testing.assert_array_equal(first["train_recon_data"], again["train_recon_data"])
    assert first["valid_inds"].tolist() != other["valid_inds"].tolist()


def test_window_must_be_whole_bins(small_recording, tmp_path):
    binned = prepare(small_recording, tmp_path)
    with pytest.raises(InputDataError, match="whole number"):
        align(binned, tmp_path, window_end_ms=452.0)
    assert not (tmp_path / "lfads_input.h5").exists()


def test_window_outside_the_recording_for_every_trial(small_recording, tmp_path):
    binned = prepare(small_recording, tmp_path)
    with pytest.raises(InputDataError) as err:
        align(binned, tmp_path, window_start_ms=100_000, window_end_ms=101_000)
    assert err.value.field == "window_start_ms" and str(binned) in str(err.value)
    assert not (tmp_path / "lfads_input.h5").exists()
    assert not (tmp_path / "meta.json").exists()


def test_file_split_without_a_split_column(make_nwb, tmp_path):
    nwb = make_nwb(spike_times=[[0.5]], trials=regular_trials(3))
    with pytest.raises(InputDataError, match="trials.split"):
        align(prepare(nwb, tmp_path), tmp_path, split="file")


def test_inside_intervals_tolerates_rounding():
    intervals = np.array([[0.0, 0.7], [0.8, 1.5]])
    starts = np.array([0.8 - 1e-12, 0.0, 0.75, 0.6])
    stops = np.array([1.5 + 1e-12, 0.7, 0.9, 0.8])
    assert inside_intervals(starts, stops, intervals).tolist() == [True, True, False, False]


def test_windows_leaving_their_trial_are_counted_and_can_be_dropped(make_nwb, tmp_path):
    trials = regular_trials(6)  # 1 s trials with 0.2 s gaps, onset 0.3 s after the start
    trials.loc[[1, 4], "move_onset_time"] += 0.5  # these windows end 0.25 s past the trial
    nwb = make_nwb(spike_times=[np.linspace(0.1, 7.0, 80)], trials=trials)
    binned = prepare(nwb, tmp_path)
    data, summary = align(binned, tmp_path, split="random", valid_fraction=0.4)
    assert summary["windows_outside_trial"] == 2
    assert summary["windows_overlapping_next_trial"] == 2  # past the 0.2 s gap
    assert "2 trial windows leave their trial" in summary["warnings"][0]
    assert len(data["train_inds"]) + len(data["valid_inds"]) == 6
    data, summary = align(binned, tmp_path, split="random", valid_fraction=0.4,
                          outside_trial="drop")
    assert summary["drop_reasons"] == {"window outside trial": 2}
    assert sorted(np.concatenate([data["train_inds"], data["valid_inds"]])) == [0, 2, 3, 5]


def test_no_heldout_units_warns(make_nwb, tmp_path, caplog):
    nwb = make_nwb(spike_times=[[0.5, 1.5], [0.7, 2.0]], trials=regular_trials(5))
    binned = prepare(nwb, tmp_path)
    _, summary = align(binned, tmp_path, split="random", valid_fraction=0.4, heldout="file")
    assert summary["n_heldout"] == 0
    assert "no 'heldout' column" in summary["warnings"][0] and "co-bps" in caplog.text
    _, summary = align(binned, tmp_path, split="random", valid_fraction=0.4)
    assert "heldout is 'auto'" in summary["warnings"][0]
    _, summary = align(binned, tmp_path, split="random", valid_fraction=0.4, heldout="0.2")
    assert "rounds to 0" in summary["warnings"][0]
    _, summary = align(binned, tmp_path, split="random", valid_fraction=0.4, heldout="none")
    assert summary["warnings"] == []


def test_too_few_validation_trials_names_the_source_and_leaves_nothing(make_nwb, tmp_path):
    nwb = make_nwb(spike_times=[[0.5, 1.5]], trials=regular_trials(2))
    with pytest.raises(InputDataError) as err:
        align(prepare(nwb, tmp_path), tmp_path, split="random")
    assert err.value.field == "valid_fraction" and str(nwb) in str(err.value)
    assert "0 valid trials" in str(err.value) and "train_lfads" in str(err.value)
    assert not (tmp_path / "lfads_input.h5").exists() and not (tmp_path / "meta.json").exists()


def test_the_metadata_names_each_conditions_values(make_nwb, tmp_path):
    """Condition k of *_cond_idx is listed with its columns' values (a NaN as None)."""
    trials = regular_trials(8, choice=["left", "right"] * 4,
                            contrast=[0.5, 0.5, 1.0, 1.0, np.nan, np.nan, 0.5, 1.0],
                            split=["train"] * 6 + ["val"] * 2)
    rng = np.random.default_rng(0)
    spikes = [np.sort(rng.uniform(0, 10, 200)) for _ in range(3)]
    binned = prepare(make_nwb(spike_times=spikes, trials=trials), tmp_path)
    data, _ = align(binned, tmp_path, condition_columns=("choice", "contrast"))
    conditions = json.loads((tmp_path / "meta.json").read_text())["conditions"]
    assert conditions["columns"] == ["choice", "contrast"]
    for split in ("train", "valid"):
        for row, k in zip(data[f"{split}_inds"], data[f"{split}_cond_idx"]):
            choice, contrast = conditions["values"][k]
            assert choice == trials["choice"][row]
            assert contrast == trials["contrast"][row] or \
                (contrast is None and np.isnan(trials["contrast"][row]))
    assert len(conditions["values"]) == 6
    data, _ = align(binned, tmp_path / "none", condition_columns=())
    assert json.loads((tmp_path / "none" / "meta.json").read_text())["conditions"] == \
        {"columns": [], "values": [[]]}
