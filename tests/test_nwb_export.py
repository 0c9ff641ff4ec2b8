"""LFADS output as NWB: round trip, identity of the source, trial mapping, NWB best practice."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from lfads_core.fileio import sha256sum
from lfads_core.nwb.export import read_factors_nwb, write_factors_nwb
from lfads_core.nwb.simulate import simulate_to_nwb

BIN_S = 0.01
N_BINS = 72  # 70 window bins + 2 forward-prediction bins


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small simulated recording: 12 trials of 1 s, 20 units (4 held out)."""
    path = tmp_path_factory.mktemp("src") / "sim.nwb"
    session = simulate_to_nwb({"n_neurons": 20, "n_conditions": 3, "trials_per_condition": 4,
                               "behavior_rate_hz": 100, "truth_rate_hz": 100}, path)
    return path, session


def make_inputs(folder, source, co_dim=2, bin_width_s=BIN_S, shift_ids=False):
    """lfads_input.json and posterior.h5 as the workflow writes them; train trials listed
    out of time order; one trial left out. Returns (json, h5, posterior arrays, meta)."""
    path, session = source
    rng = np.random.default_rng(0)
    trials = session.trials
    window_start = trials["move_onset_time"].to_numpy() - 0.25
    rows = rng.permutation(len(trials))
    split_rows = {"train": rows[:8], "valid": rows[8:11]}  # rows[11] is not modelled
    order = np.concatenate([np.flatnonzero(~session.heldout), np.flatnonzero(session.heldout)])
    meta = {"bin_width_s": bin_width_s, "source": str(path), "source_sha256": sha256sum(path),
            "unit_ids": order.tolist(), "heldout": session.heldout[order].tolist(),
            "trial_ids": {s: (r + (100 if shift_ids else 0)).tolist()
                          for s, r in split_rows.items()},
            "window_start_times_s": {s: window_start[r].tolist() for s, r in split_rows.items()}}
    posterior = {}
    for split, r in split_rows.items():
        n = len(r)
        posterior[f"{split}_rates"] = rng.uniform(0.01, 0.3, (n, N_BINS, 20)).astype(np.float32)
        posterior[f"{split}_factors"] = rng.normal(size=(n, N_BINS, 5)).astype(np.float32)
        posterior[f"{split}_inputs"] = rng.normal(size=(n, N_BINS, co_dim)).astype(np.float32)
        posterior[f"{split}_ic_mean"] = rng.normal(size=(n, 8)).astype(np.float32)
        posterior[f"{split}_ic_std"] = np.ones((n, 8), np.float32)
        posterior[f"{split}_inds"] = r.astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    meta_path, post_path = folder / "lfads_input.json", folder / "posterior.h5"
    meta_path.write_text(json.dumps(meta))
    with h5py.File(post_path, "w") as f:
        for key, value in posterior.items():
            f.create_dataset(key, data=value)
        f.attrs["rates_unit"] = "expected counts per bin"
    return meta_path, post_path, posterior, meta


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lfads")
    meta_path, post_path, posterior, meta = make_inputs(folder, source)
    out = write_factors_nwb(source[0], meta_path, post_path, folder / "factors.nwb", BIN_S)
    return out, posterior, meta


def test_round_trip(exported, source):
    out, posterior, meta = exported
    back = read_factors_nwb(out)
    assert back["splits"] == ["train", "valid"]
    assert back["unit_ids"].tolist() == meta["unit_ids"]
    assert back["heldout"].tolist() == meta["heldout"]
    for split in ("train", "valid"):
        ids = back[f"{split}_trial_ids"]
        assert sorted(ids) == sorted(meta["trial_ids"][split])
        # the file keeps trials in time order; map back to the posterior's order by trial id
        where = [meta["trial_ids"][split].index(i) for i in ids]
        starts = np.asarray(meta["window_start_times_s"][split])[where]
        assert np.all(np.diff(starts) > 0)
        np.testing.assert_allclose(back[f"{split}_window_start_times_s"], starts, atol=1e-9)
        np.testing.assert_array_equal(back[f"{split}_factors"],
                                      posterior[f"{split}_factors"][where])
        np.testing.assert_array_equal(back[f"{split}_inferred_inputs"],
                                      posterior[f"{split}_inputs"][where])
        np.testing.assert_allclose(back[f"{split}_rates"] * BIN_S,
                                   posterior[f"{split}_rates"][where], rtol=1e-6)
        expected_t = starts[:, None] + (np.arange(N_BINS) + 0.5) * BIN_S
        np.testing.assert_allclose(back[f"{split}_timestamps"], expected_t, atol=1e-9)
        # rows of the trials table are the source rows (the *_inds of lfads_input.h5)
        np.testing.assert_array_equal(back[f"{split}_trial_rows"],
                                      posterior[f"{split}_inds"][where])
    trials = back["trials"]
    session = source[1]
    np.testing.assert_allclose(trials["start_time"], session.trials["start_time"])
    np.testing.assert_allclose(trials["stop_time"], session.trials["stop_time"])
    assert trials["source_trial_id"].tolist() == list(range(len(session.trials)))
    assert (trials["lfads_split"] == "train").sum() == 8
    assert (trials["lfads_split"] == "valid").sum() == 3
    assert (trials["lfads_split"] == "none").sum() == 1


def test_identity_follows_source(exported, source):
    from pynwb import NWBHDF5IO

    out, _, meta = exported
    back = read_factors_nwb(out)
    with NWBHDF5IO(str(source[0]), "r") as io:
        src = io.read()
        assert back["session_start_time"] == src.session_start_time
        assert back["identifier"] != src.identifier
        with NWBHDF5IO(str(out), "r") as io_out:
            nwb = io_out.read()
            assert nwb.subject.subject_id == src.subject.subject_id
            assert nwb.session_id == src.session_id
    assert meta["source_sha256"] in back["session_description"]
    assert source[0].name in back["session_description"]


def test_nwbinspector_finds_no_violations(exported):
    nwbinspector = pytest.importorskip("nwbinspector")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(exported[0])))
    serious = {nwbinspector.Importance.CRITICAL,
               nwbinspector.Importance.BEST_PRACTICE_VIOLATION}
    bad = [(m.check_function_name, m.object_name, m.message) for m in messages
           if m.importance in serious]
    assert bad == []


def test_no_controller_outputs(source, tmp_path):
    meta_path, post_path, _, _ = make_inputs(tmp_path, source, co_dim=0)
    out = write_factors_nwb(source[0], meta_path, post_path, tmp_path / "f.nwb", BIN_S)
    back = read_factors_nwb(out)
    assert back["train_inferred_inputs"].shape == (8, N_BINS, 0)
    assert back["train_factors"].shape == (8, N_BINS, 5)


def test_errors_leave_no_file(source, tmp_path):
    meta_path, post_path, _, _ = make_inputs(tmp_path, source)
    out = tmp_path / "f.nwb"
    with pytest.raises(ValueError, match="bin_width_s"):
        write_factors_nwb(source[0], meta_path, post_path, out, 0.005)
    meta_path, post_path, _, _ = make_inputs(tmp_path / "ids", source, shift_ids=True)
    with pytest.raises(ValueError, match="not in"):
        write_factors_nwb(source[0], meta_path, post_path, out, BIN_S)
    assert list(tmp_path.glob("*.nwb*")) == []


def test_overlapping_windows_warn_and_stay_separable(source, tmp_path):
    meta_path, post_path, posterior, meta = make_inputs(tmp_path, source)
    starts = meta["window_start_times_s"]["valid"]
    starts[1] = starts[0] + 0.3  # overlaps the first window (0.72 s long)
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="overlap"):
        out = write_factors_nwb(source[0], meta_path, post_path, tmp_path / "f.nwb", BIN_S)
    back = read_factors_nwb(out)
    where = [meta["trial_ids"]["valid"].index(i) for i in back["valid_trial_ids"]]
    np.testing.assert_array_equal(back["valid_factors"], posterior["valid_factors"][where])
    np.testing.assert_allclose(back["valid_timestamps"][:, 0],
                               np.asarray(starts)[where] + BIN_S / 2, atol=1e-9)


def test_real_recording_metadata(tmp_path):
    """MC_Maze_Small (DANDI:000140): its metadata is copied, and the export adds no serious
    inspector finding of its own (the source's subject lacks an age: CRITICAL in both)."""
    from conftest import MC_MAZE_SMALL
    from pynwb import NWBHDF5IO

    nwbinspector = pytest.importorskip("nwbinspector")
    if not MC_MAZE_SMALL.is_file():
        pytest.skip("shared MC_Maze_Small file not available")
    with NWBHDF5IO(str(MC_MAZE_SMALL), "r") as io:
        nwb = io.read()
        ids = nwb.trials.id.data[:]
        onset = nwb.trials["move_onset_time"].data[:]
        unit_ids = nwb.units.id.data[:]
        experimenter = list(nwb.experimenter)
    rng = np.random.default_rng(0)
    meta = {"bin_width_s": BIN_S, "source": str(MC_MAZE_SMALL), "source_sha256": "0" * 64,
            "unit_ids": unit_ids.tolist(), "heldout": [False] * len(unit_ids),
            "trial_ids": {"train": ids[:80].tolist(), "valid": ids[80:].tolist()},
            "window_start_times_s": {"train": (onset[:80] - 0.25).tolist(),
                                     "valid": (onset[80:] - 0.25).tolist()}}
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with h5py.File(tmp_path / "p.h5", "w") as f:
        for split, n in (("train", 80), ("valid", len(ids) - 80)):
            f[f"{split}_rates"] = rng.uniform(0, 0.2, (n, 70, len(unit_ids))).astype("f4")
            f[f"{split}_factors"] = rng.normal(size=(n, 70, 8)).astype("f4")
            f[f"{split}_inputs"] = rng.normal(size=(n, 70, 2)).astype("f4")
    out = write_factors_nwb(MC_MAZE_SMALL, tmp_path / "m.json", tmp_path / "p.h5",
                            tmp_path / "f.nwb", BIN_S)
    with NWBHDF5IO(str(out), "r") as io:
        assert list(io.read().experimenter) == experimenter
    serious = {nwbinspector.Importance.CRITICAL,
               nwbinspector.Importance.BEST_PRACTICE_VIOLATION}

    def findings(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {m.check_function_name for m in nwbinspector.inspect_nwbfile(
                nwbfile_path=str(path)) if m.importance in serious}

    assert findings(out) == {"check_subject_age"}
    assert "check_subject_age" in findings(MC_MAZE_SMALL)


def test_posterior_of_another_run_is_refused(source, tmp_path):
    meta_path, post_path, _, _ = make_inputs(tmp_path, source)
    with h5py.File(post_path, "a") as f:
        f["valid_inds"][...] = f["valid_inds"][()][::-1]
    with pytest.raises(ValueError, match="valid_inds"):
        write_factors_nwb(source[0], meta_path, post_path, tmp_path / "f.nwb", BIN_S)
