"""LFADS output as NWB and HDF5: the recording's trials, their columns and order, the units of
the arrays, the loader (numpy and pynapple), identity of the source, NWB best practice."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import regular_trials
from lfads_core.fileio import sha256sum, write_json
from lfads_core.nwb.alignment import AlignSettings, align_trials
from lfads_core.nwb.binning import bin_session
from lfads_core.nwb.export import (LfadsFactors, collect_factors, load_factors,
                                   write_factors_h5, write_factors_nwb)
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
from lfads_core.nwb.simulate import simulate_to_nwb

BIN_S = 0.01
N_BINS = 72  # 70 window bins + 2 forward-prediction bins
SERIOUS = ("CRITICAL", "BEST_PRACTICE_VIOLATION")


def ingest(nwb, folder):
    """session.h5 and ingest/summary.json of a recording, as the workflow writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    session, summary = folder / "session.h5", folder / "summary.json"
    write_json(ingest_nwb(nwb, session, IngestSettings()), summary)
    return session, summary


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small simulated recording: 12 trials of 1 s, 20 units (4 held out), ingested."""
    folder = tmp_path_factory.mktemp("src")
    path = folder / "sim.nwb"
    session = simulate_to_nwb({"n_neurons": 20, "n_conditions": 3, "trials_per_condition": 4,
                               "behavior_rate_hz": 100, "truth_rate_hz": 100}, path)
    return path, session, *ingest(path, folder / "ingest")


def make_inputs(folder, source, co_dim=2, bin_width_s=BIN_S, shift_ids=False):
    """lfads_input.json and posterior.h5 as the workflow writes them; each split's trials
    listed out of time order; one trial left out. Returns (json, h5, posterior, meta, rows)."""
    path, session = source[:2]
    rng = np.random.default_rng(0)
    trials = session.trials
    window_start = trials["move_onset_time"].to_numpy() - 0.25
    rows = rng.permutation(len(trials))
    split_rows = {"train": rows[:6], "valid": rows[6:9], "test": rows[9:11]}  # rows[11]: none
    order = np.concatenate([np.flatnonzero(~session.heldout), np.flatnonzero(session.heldout)])
    meta = {"bin_width_s": bin_width_s, "source": str(path), "source_sha256": sha256sum(path),
            "window_start_offset_s": -0.25, "window_end_offset_s": 0.45, "fp_bins": 2,
            "align_event": "move_onset_time",
            "unit_ids": order.tolist(), "heldout": session.heldout[order].tolist(),
            "trial_ids": {s: (r + (100 if shift_ids else 0)).tolist()
                          for s, r in split_rows.items()},
            "window_start_times_s": {s: window_start[r].tolist() for s, r in split_rows.items()}}
    posterior = {}
    for split, r in split_rows.items():
        n = len(r)
        posterior[f"{split}_rates"] = rng.uniform(0.01, 0.3, (n, N_BINS, 20)).astype(np.float32)
        posterior[f"{split}_factors"] = rng.normal(size=(n, N_BINS, 5)).astype(np.float32)
        posterior[f"{split}_inferred_inputs"] = \
            rng.normal(size=(n, N_BINS, co_dim)).astype(np.float32)
        posterior[f"{split}_ic_mean"] = rng.normal(size=(n, 8)).astype(np.float32)
        posterior[f"{split}_inds"] = r.astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    meta_path, post_path = folder / "lfads_input.json", folder / "posterior.h5"
    meta_path.write_text(json.dumps(meta))
    with h5py.File(post_path, "w") as f:
        for key, value in posterior.items():
            f.create_dataset(key, data=value)
        f.attrs["rates_unit"] = "expected counts per bin"
    return meta_path, post_path, posterior, meta, split_rows


def export(folder, source, **kwargs):
    """Both files of one export; returns (nwb path, h5 path, posterior, meta, split rows)."""
    meta_path, post_path, posterior, meta, split_rows = make_inputs(folder, source, **kwargs)
    output = collect_factors(post_path, meta_path, source[2], source[3], BIN_S)
    nwb = write_factors_nwb(output, source[0], folder / "factors.nwb")
    h5 = write_factors_h5(output, folder / "factors.h5")
    return nwb, h5, posterior, meta, split_rows


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    return export(tmp_path_factory.mktemp("lfads"), source)


def inspect(path):
    nwbinspector = pytest.importorskip("nwbinspector")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(m.importance.name, m.check_function_name, m.object_name, m.message)
                for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(path))]


@pytest.mark.parametrize("which", ["nwb", "h5"])
def test_round_trip_in_the_recordings_order(exported, source, which):
    nwb, h5, posterior, meta, split_rows = exported
    back = load_factors(nwb if which == "nwb" else h5)
    assert isinstance(back, LfadsFactors)
    session = source[1]
    # the modelled trials, in the recording's order, whatever the split
    rows = np.sort(np.concatenate(list(split_rows.values())))
    assert back.trials["trial_row"].tolist() == rows.tolist()
    assert back.trials.index.tolist() == rows.tolist()  # simulated ids are the rows
    split_of = {int(r): s for s, rr in split_rows.items() for r in rr}
    assert back.trials["lfads_split"].tolist() == [split_of[r] for r in rows]
    for name in ("factors", "rates", "inferred_inputs"):  # posterior.h5 uses the same names
        expected = np.empty((len(session.trials), N_BINS, posterior[f"train_{name}"].shape[2]))
        for split, r in split_rows.items():
            expected[r] = posterior[f"{split}_{name}"]
        if name == "rates":
            expected = expected / BIN_S  # expected counts per bin -> Hz
        np.testing.assert_allclose(getattr(back, name), expected[rows], rtol=1e-6)
    assert back.units == {"factors": "a.u.", "rates": "Hz", "inferred_inputs": "a.u."}
    starts = session.trials["move_onset_time"].to_numpy()[rows] - 0.25
    np.testing.assert_allclose(back.trials["window_start_time_s"], starts, atol=1e-9)
    np.testing.assert_allclose(back.trials["window_stop_time_s"], starts + N_BINS * BIN_S,
                               atol=1e-9)
    np.testing.assert_allclose(back.timestamps, starts[:, None] + (np.arange(N_BINS) + 0.5) * BIN_S,
                               atol=1e-9)
    np.testing.assert_allclose(back.bin_times[[0, 25]], [-0.245, 0.005], atol=1e-9)
    # the recording's trial columns come along
    np.testing.assert_allclose(back.trials["move_onset_time"],
                               session.trials["move_onset_time"].to_numpy()[rows])
    assert back.trials["split"].tolist() == session.trials["split"].to_numpy()[rows].tolist()
    # every trial of the recording, the unmodelled one too
    assert back.all_trials.index.tolist() == list(range(len(session.trials)))
    assert back.all_trials["lfads_split"].value_counts().to_dict() == \
        {"train": 6, "valid": 3, "test": 2, "none": 1}
    np.testing.assert_allclose(back.all_trials["start_time"], session.trials["start_time"])
    assert back.channels["unit_id"].tolist() == meta["unit_ids"]
    assert back.channels["heldout"].tolist() == meta["heldout"]
    assert back.bin_width_s == BIN_S and back.align_event == "move_onset_time"
    assert back.window_start_offset_s == -0.25 and back.fp_bins == 2
    assert back.info["source_sha256"] == meta["source_sha256"]


def test_units_are_stated_in_both_files(exported):
    nwb, h5, *_ = exported
    with h5py.File(h5, "r") as f:
        assert {k: f[k].attrs["unit"] for k in ("factors", "rates", "inferred_inputs")} == \
            {"factors": "a.u.", "rates": "Hz", "inferred_inputs": "a.u."}
        assert f.attrs["bin_width_s"] == BIN_S
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(nwb), "r") as io:
        module = io.read().processing["misc"]
        assert module["lfads_rates"].unit == "Hz" and module["lfads_factors"].unit == "a.u."
        assert module["lfads_inferred_inputs"].unit == "a.u."


def test_identity_follows_source(exported, source):
    from pynwb import NWBHDF5IO

    nwb, _, _, meta, _ = exported
    back = load_factors(nwb)
    with NWBHDF5IO(str(source[0]), "r") as io:
        src = io.read()
        assert back.info["session_start_time"] == src.session_start_time
        assert back.info["identifier"] != src.identifier
        assert back.info["source_identifier"] == src.identifier
        with NWBHDF5IO(str(nwb), "r") as io_out:
            out = io_out.read()
            assert out.subject.subject_id == src.subject.subject_id
            assert out.session_id == src.session_id
    assert meta["source_sha256"] in back.info["session_description"]
    assert source[0].name in back.info["session_description"]


def test_nwbinspector_has_nothing_to_say(exported):
    assert inspect(exported[0]) == []


def test_no_inferred_inputs(source, tmp_path):
    nwb, h5, *_ = export(tmp_path, source, co_dim=0)
    for path in (nwb, h5):
        back = load_factors(path)
        assert back.inferred_inputs.shape == (11, N_BINS, 0)
        assert back.factors.shape == (11, N_BINS, 5)


def test_files_of_earlier_versions_are_read(source, tmp_path, monkeypatch):
    """posterior.h5 with {split}_inputs, lfads_input.json with window_start_s and
    window_end_s, factors.nwb with its output in processing/ecephys."""
    import lfads_core.nwb.export as export_module

    now = export(tmp_path / "now", source)
    meta_path, post_path, posterior, meta, _ = make_inputs(tmp_path / "old", source)
    meta["window_start_s"] = meta.pop("window_start_offset_s")
    meta["window_end_s"] = meta.pop("window_end_offset_s")
    meta_path.write_text(json.dumps(meta))
    with h5py.File(post_path, "a") as f:
        for split in ("train", "valid", "test"):
            f.move(f"{split}_inferred_inputs", f"{split}_inputs")
    output = collect_factors(post_path, meta_path, source[2], source[3], BIN_S)
    monkeypatch.setattr(export_module, "MODULE", "ecephys")
    old = write_factors_nwb(output, source[0], tmp_path / "old" / "factors.nwb")
    monkeypatch.undo()
    for back in (output, load_factors(old)):
        expected = load_factors(now[0])
        assert back.window_start_offset_s == -0.25 and back.window_end_offset_s == 0.45
        for name in ("factors", "rates", "inferred_inputs"):
            np.testing.assert_allclose(getattr(back, name), getattr(expected, name))
        pd.testing.assert_frame_equal(back.trials, expected.trials)


def test_errors_leave_no_file(source, tmp_path):
    meta_path, post_path, *_ = make_inputs(tmp_path, source)
    with pytest.raises(ValueError, match="bin_width_s"):
        collect_factors(post_path, meta_path, source[2], source[3], 0.005)
    meta_path, post_path, *_ = make_inputs(tmp_path / "ids", source, shift_ids=True)
    with pytest.raises(ValueError, match="not in"):
        collect_factors(post_path, meta_path, source[2], source[3], BIN_S)
    meta_path, post_path, *_ = make_inputs(tmp_path / "ok", source)
    output = collect_factors(post_path, meta_path, source[2])
    output.all_trials = output.all_trials.iloc[1:]  # not the recording's trials
    with pytest.raises(ValueError, match="not the one ingested"):
        write_factors_nwb(output, source[0], tmp_path / "f.nwb")
    assert list(tmp_path.glob("*.nwb*")) == []


def test_overlapping_windows_warn_and_stay_separable(source, tmp_path):
    meta_path, post_path, posterior, meta, split_rows = make_inputs(tmp_path, source)
    starts = meta["window_start_times_s"]["valid"]
    starts[1] = starts[0] + 0.3  # overlaps that trial's window (0.72 s long)
    meta_path.write_text(json.dumps(meta))
    output = collect_factors(post_path, meta_path, source[2], source[3])
    with pytest.warns(UserWarning, match="not ascending"):
        out = write_factors_nwb(output, source[0], tmp_path / "f.nwb")
    back = load_factors(out)
    k = back.trials.index.get_loc(int(split_rows["valid"][1]))
    np.testing.assert_array_equal(back.factors[k], posterior["valid_factors"][1])
    np.testing.assert_allclose(back.timestamps[k, 0], starts[1] + BIN_S / 2, atol=1e-9)
    pytest.importorskip("pynapple")
    with pytest.raises(ValueError, match="overlap"):
        back.to_pynapple()


def test_posterior_of_another_run_is_refused(source, tmp_path):
    meta_path, post_path, *_ = make_inputs(tmp_path, source)
    with h5py.File(post_path, "a") as f:
        f["valid_inds"][...] = f["valid_inds"][()][::-1]
    with pytest.raises(ValueError, match="valid_inds"):
        collect_factors(post_path, meta_path, source[2], source[3], BIN_S)


# ------------------------------------------------------------------ a lab's own trial columns

@pytest.fixture
def lab_recording(make_nwb, tmp_path):
    """A recording with a lab's trial columns (text, numbers with a NaN, booleans, a 2-D
    column NWB cannot give one value per trial), one trial without its event, through
    ingest -> bin -> align as the workflow runs them, and a posterior of its trials."""
    rng = np.random.default_rng(2)
    n = 14
    trials = regular_trials(
        n, contrast=np.where(np.arange(n) == 3, np.nan, np.round(rng.uniform(0, 1, n), 2)),
        choice=np.array(["left", "right"])[np.arange(n) % 2], rewarded=np.arange(n) % 3 > 0,
        stim_on_time=regular_trials(n)["start_time"] + 0.1,
        targets=[np.array([k, k + 1.0]) for k in range(n)],
        split=np.where(np.arange(n) < 10, "train", "val"))  # NLB's labels; split: random here
    trials.loc[5, "move_onset_time"] = np.nan  # not modelled: no event
    spikes = [np.sort(rng.uniform(0, trials.stop_time.iloc[-1], 300)) for _ in range(6)]
    nwb = make_nwb(spike_times=spikes, trials=trials, heldout=[0, 0, 0, 0, 1, 1])
    folder = tmp_path / "results"
    session, summary = ingest(nwb, folder / "ingest")
    bin_session(session, folder / "binned.h5", BIN_S)
    align_trials(folder / "binned.h5", folder / "lfads_input.h5",
                 AlignSettings(split="random", valid_fraction=0.25, test_fraction=0.25,
                               window_start_ms=-200, window_end_ms=400),
                 folder / "lfads_input.json")
    with h5py.File(folder / "lfads_input.h5", "r") as data, \
            h5py.File(folder / "posterior.h5", "w") as post:
        for split in ("train", "valid", "test"):
            counts = data[f"{split}_recon_data"][()]
            post[f"{split}_rates"] = (counts + 0.5).astype(np.float32)
            post[f"{split}_factors"] = np.repeat(data[f"{split}_inds"][()][:, None, None],
                                                 counts.shape[1], axis=1).astype(np.float32)
            post[f"{split}_inferred_inputs"] = np.zeros(counts.shape[:2] + (1,), np.float32)
            post[f"{split}_inds"] = data[f"{split}_inds"][()]
    output = collect_factors(folder / "posterior.h5", folder / "lfads_input.json", session,
                             summary, BIN_S)
    return nwb, trials, folder, write_factors_nwb(output, nwb, folder / "factors.nwb"), \
        write_factors_h5(output, folder / "factors.h5")


@pytest.mark.parametrize("which", ["nwb", "h5"])
def test_a_labs_trial_columns_come_back_in_order_with_the_split(lab_recording, which):
    nwb, trials, folder, out_nwb, out_h5 = lab_recording
    back = load_factors(out_nwb if which == "nwb" else out_h5)
    modelled = [k for k in range(len(trials)) if k != 5]
    assert back.trials.index.tolist() == modelled  # trial i is the recording's i-th
    assert back.all_trials.index.tolist() == list(range(len(trials)))
    assert back.all_trials.loc[5, "lfads_split"] == "none"
    assert back.trials["lfads_split"].value_counts().to_dict() == {"train": 7, "valid": 3,
                                                                   "test": 3}
    with h5py.File(folder / "lfads_input.h5", "r") as data:
        for split in ("train", "valid", "test"):
            rows = data[f"{split}_inds"][()]
            assert (back.all_trials["lfads_split"].to_numpy()[rows] == split).all()
    # the factors written as each trial's row number are where the trial is
    np.testing.assert_array_equal(back.factors[:, 0, 0], modelled)
    expected = trials.iloc[modelled]
    assert back.trials["choice"].tolist() == expected["choice"].tolist()
    assert back.trials["rewarded"].dtype == bool
    assert back.trials["rewarded"].tolist() == expected["rewarded"].tolist()
    np.testing.assert_array_equal(back.trials["contrast"], expected["contrast"])  # NaN kept
    assert np.isnan(back.trials.loc[3, "contrast"])
    np.testing.assert_allclose(back.trials["stim_on_time"], expected["stim_on_time"])
    assert np.isnan(back.all_trials.loc[5, "move_onset_time"])
    # the window starts at the bin edge nearest to the event - 200 ms
    np.testing.assert_allclose(back.trials["window_start_time_s"],
                               np.round((expected["move_onset_time"] - 0.2) / BIN_S) * BIN_S,
                               atol=1e-9)
    # the 2-D column cannot be one value per trial: named with the reason, not carried
    assert "targets" not in back.all_trials
    assert set(back.skipped_trial_columns) == {"targets"}
    assert "2-D" in back.skipped_trial_columns["targets"]
    # rates in Hz: (counts + 0.5) per bin / bin width
    with h5py.File(folder / "lfads_input.h5", "r") as data:
        k = back.trials.index.get_loc(int(data["train_inds"][0]))
        np.testing.assert_allclose(back.rates[k], (data["train_recon_data"][0] + 0.5) / BIN_S,
                                   rtol=1e-6)


def test_skipped_columns_are_named_in_the_files(lab_recording):
    _, _, _, out_nwb, out_h5 = lab_recording
    with h5py.File(out_h5, "r") as f:
        assert "targets" in json.loads(f.attrs["trial_columns_skipped"])
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out_nwb), "r") as io:
        nwb = io.read()
        assert "Columns not copied: targets" in nwb.trials.description
        assert nwb.trials["contrast"].description == "contrast of the trial"  # the source's


def test_the_export_adds_no_nwbinspector_finding_to_a_labs_recording(lab_recording):
    """The lab's file lacks a subject and other metadata (findings on the file of both); the
    export adds nothing of its own at any importance: its trial columns, module, series and
    windows are clean."""
    source, out = (inspect(lab_recording[0]), inspect(lab_recording[3]))
    assert {m[1] for m in out} - {m[1] for m in source} == set()
    assert ("CRITICAL", "check_subject_exists", "root") in [m[:3] for m in out]
    assert {m[2] for m in out} == {"root"}


def test_pynapple_objects_on_the_recordings_clock(lab_recording):
    nap = pytest.importorskip("pynapple")
    back = load_factors(lab_recording[3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning, though 'split' is a pynapple method
        objects = back.to_pynapple()
        objects["windows"][0]  # a new IntervalSet of the same metadata: no warning either
    windows = objects["windows"]
    assert isinstance(windows, nap.IntervalSet) and len(windows) == len(back.trials)
    np.testing.assert_allclose(windows.start, back.trials["window_start_time_s"])
    np.testing.assert_allclose(windows.end, back.trials["window_stop_time_s"])
    assert windows.get_info("choice").tolist() == back.trials["choice"].tolist()
    assert windows.get_info("lfads_split").tolist() == back.trials["lfads_split"].tolist()
    assert windows.get_info("trial_id").tolist() == back.trials.index.tolist()
    # NLB's split column is named like IntervalSet.split: it gets a trailing underscore
    assert windows.split_.tolist() == back.trials["split"].tolist()
    assert windows[windows.lfads_split == "test"].choice.tolist() == \
        back.trials.loc[back.trials["lfads_split"] == "test", "choice"].tolist()
    rates = objects["rates"]
    assert isinstance(rates, nap.TsdFrame)
    assert rates.shape == (back.rates.shape[0] * back.rates.shape[1], back.rates.shape[2])
    np.testing.assert_allclose(rates.t, back.timestamps.reshape(-1))
    np.testing.assert_allclose(rates.values, back.rates.reshape(-1, back.rates.shape[2]))
    assert list(rates.columns) == back.channels["unit_id"].tolist()
    assert rates.get_info("heldout").tolist() == back.channels["heldout"].tolist()
    # one trial's bins: the window restricts the series to that trial
    first = objects["factors"].restrict(windows[0])
    np.testing.assert_allclose(first.values, back.factors[0])
    assert objects["inferred_inputs"].shape[1] == 1


def test_pynapple_missing_is_named_with_its_install_command(lab_recording, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, hide_packages

    code = ("from lfads_core.nwb.export import load_factors\n"
            f"load_factors({str(lab_recording[4])!r}).to_pynapple()\n")
    env = {"PYTHONPATH": f"{hide_packages(tmp_path / 'site', ['pynapple'])}:{ROOT}",
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env)
    assert result.returncode != 0 and "pip install pynapple" in result.stderr


# ------------------------------------------------------------------ a real recording

def test_real_recording_metadata(tmp_path):
    """MC_Maze_Small (DANDI:000140): its metadata and trial columns are copied, and the export
    adds no serious inspector finding of its own (the source's subject lacks an age: CRITICAL
    in both)."""
    from conftest import MC_MAZE_SMALL
    from pynwb import NWBHDF5IO

    pytest.importorskip("nwbinspector")
    if not MC_MAZE_SMALL.is_file():
        pytest.skip("shared MC_Maze_Small file not available")
    with NWBHDF5IO(str(MC_MAZE_SMALL), "r") as io:
        nwb = io.read()
        ids = nwb.trials.id.data[:]
        onset = nwb.trials["move_onset_time"].data[:]
        unit_ids = nwb.units.id.data[:]
        experimenter = list(nwb.experimenter)
        columns = set(nwb.trials.colnames)
    session, summary = ingest(MC_MAZE_SMALL, tmp_path / "ingest")
    rng = np.random.default_rng(0)
    meta = {"bin_width_s": BIN_S, "source": str(MC_MAZE_SMALL),
            "source_sha256": sha256sum(MC_MAZE_SMALL), "window_start_offset_s": -0.25,
            "unit_ids": unit_ids.tolist(), "heldout": [False] * len(unit_ids),
            "trial_ids": {"train": ids[:80].tolist(), "valid": ids[80:].tolist()},
            "window_start_times_s": {"train": (onset[:80] - 0.25).tolist(),
                                     "valid": (onset[80:] - 0.25).tolist()}}
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with h5py.File(tmp_path / "p.h5", "w") as f:
        for split, n in (("train", 80), ("valid", len(ids) - 80)):
            f[f"{split}_rates"] = rng.uniform(0, 0.2, (n, 70, len(unit_ids))).astype("f4")
            f[f"{split}_factors"] = rng.normal(size=(n, 70, 8)).astype("f4")
            f[f"{split}_inferred_inputs"] = rng.normal(size=(n, 70, 2)).astype("f4")
    output = collect_factors(tmp_path / "p.h5", tmp_path / "m.json", session, summary, BIN_S)
    out = write_factors_nwb(output, MC_MAZE_SMALL, tmp_path / "f.nwb")
    with NWBHDF5IO(str(out), "r") as io:
        assert list(io.read().experimenter) == experimenter
    back = load_factors(out)
    assert set(back.all_trials.columns) | set(back.skipped_trial_columns) == \
        columns | {"lfads_split"}

    def findings(path):
        return {m[1] for m in inspect(path) if m[0] in SERIOUS}

    assert findings(out) == {"check_subject_age"}
    assert "check_subject_age" in findings(MC_MAZE_SMALL)
