"""Ingestion of NWB files, including every kind of bad input the issue lists."""

import h5py
import numpy as np
import pytest

from conftest import regular_trials
from lfads_core.errors import InputDataError
from lfads_core.fileio import read_table
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb


def ingest(nwb, tmp_path, **settings):
    out = tmp_path / "out" / "session.h5"
    summary = ingest_nwb(nwb, out, IngestSettings(**settings))
    return out, summary


def assert_fails(nwb, tmp_path, field, match=None, **settings):
    out = tmp_path / "out" / "session.h5"
    with pytest.raises(InputDataError) as err:
        ingest_nwb(nwb, out, IngestSettings(**settings))
    assert err.value.field == field
    assert str(nwb) in str(err.value)
    if match:
        assert match in str(err.value)
    assert not out.exists()
    assert not any(out.parent.glob("*")) if out.parent.exists() else True
    return err.value


def test_ingest_round_trip(small_recording, tmp_path):
    out, summary = ingest(small_recording, tmp_path, behavior=["hand_vel"])
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(small_recording), "r") as io, h5py.File(out, "r") as h5:
        nwb = io.read()
        offsets = h5["spikes/unit_offsets"][()]
        for k in range(len(nwb.units)):
            np.testing.assert_array_equal(h5["spikes/times_s"][offsets[k]:offsets[k + 1]],
                                          nwb.units["spike_times"][k])
        units = read_table(h5["units"])
        assert units["heldout"].tolist() == [False] * 4 + [True] * 2
        trials = read_table(h5["trials"])
        np.testing.assert_allclose(trials["move_onset_time"], nwb.trials["move_onset_time"][:])
        assert trials["split"].tolist() == ["train"] * 8 + ["val"] * 2
        assert h5["behavior/hand_vel/data"].shape[1] == 2
        assert list(h5["behavior/hand_vel"].attrs["columns"]) == ["hand_vel_x", "hand_vel_y"]
        assert h5.attrs["source_sha256"] == summary["source_sha256"]
        # no obs_intervals in this file: the whole recording is valid
        np.testing.assert_allclose(h5["observed_intervals"][()], [[0.0, summary["recording_stop_s"]]])
    assert summary["units_kept"] == 6 and summary["trials_kept"] == 10


def test_unit_and_trial_filters(small_recording, tmp_path):
    out, summary = ingest(small_recording, tmp_path, unit_filter="id != 2",
                          trial_filter="split == 'train'")
    with h5py.File(out, "r") as h5:
        units = read_table(h5["units"])
        assert units.loc[units.id == 2, "drop_reason"].item() == "unit_filter"
        assert len(h5["spikes/unit_offsets"]) == 6
    assert summary["units_kept"] == 5 and summary["trials_kept"] == 8


def test_obs_intervals_intersect_over_kept_units(make_nwb, tmp_path):
    trials = regular_trials(2)
    spikes = [[0.2, 0.5], [0.3, 1.5]]
    nwb = make_nwb(spike_times=spikes, trials=trials,
                   obs_intervals=[[[0.0, 1.0], [1.2, 2.5]], [[0.5, 2.0]]])
    out, _ = ingest(nwb, tmp_path)
    with h5py.File(out, "r") as h5:
        np.testing.assert_allclose(h5["observed_intervals"][()], [[0.5, 1.0], [1.2, 2.0]])


def test_min_rate_drops_slow_units(small_recording, tmp_path):
    out, summary = ingest(small_recording, tmp_path, min_rate_hz=15.0)
    assert 0 < summary["units_kept"] < 6
    assert all("rate <" in r for r in summary["unit_drop_reasons"])


# --- bad input: each names the file and the field, and leaves no output -------------------

def test_missing_file(tmp_path):
    assert_fails(tmp_path / "nope.nwb", tmp_path, "file", "not found")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.nwb"
    path.write_text("not an nwb file\n")
    assert_fails(path, tmp_path, "file", "not an HDF5")


def test_hdf5_but_not_nwb(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    assert_fails(path, tmp_path, "file", "not a readable NWB")


def test_no_units_table(make_nwb, tmp_path):
    nwb = make_nwb(with_units=False, trials=regular_trials(2))
    assert_fails(nwb, tmp_path, "units", "no Units table")


def test_units_without_spike_times(tmp_path):
    import datetime

    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(session_description="units without spikes", identifier="no-spikes",
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    nwb.add_unit_column("quality", "sorting quality")
    nwb.add_unit(quality="good")
    nwb.add_trial(start_time=0.0, stop_time=1.0)
    path = tmp_path / "no_spikes.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    assert_fails(path, tmp_path, "units.spike_times", "no spike_times")


def test_zero_units_after_filtering(small_recording, tmp_path):
    err = assert_fails(small_recording, tmp_path, "units", "no units left", min_rate_hz=1e6)
    assert "min_rate_hz=1000000.0" in str(err)


def test_bad_unit_query_names_the_setting(small_recording, tmp_path):
    assert_fails(small_recording, tmp_path, "unit_filter", unit_filter="no_such_column > 1")


def test_no_trials_table(make_nwb, tmp_path):
    nwb = make_nwb(spike_times=[[0.2]], with_trials=False)
    err = assert_fails(nwb, tmp_path, "trials_table", "no trials table")
    assert "no tables under intervals/" in str(err)


def test_alignment_column_missing(make_nwb, tmp_path):
    trials = regular_trials(2).drop(columns="move_onset_time")
    nwb = make_nwb(spike_times=[[0.2]], trials=trials)
    assert_fails(nwb, tmp_path, "trials.move_onset_time", "alignment column missing")


def test_alignment_column_all_nan(make_nwb, tmp_path):
    trials = regular_trials(3)
    trials["move_onset_time"] = np.nan
    nwb = make_nwb(spike_times=[[0.2]], trials=trials)
    assert_fails(nwb, tmp_path, "trials.move_onset_time", "NaN for every trial")


def test_behaviour_named_but_absent(small_recording, tmp_path):
    assert_fails(small_recording, tmp_path, "processing/behavior/joystick",
                 behavior=["hand_vel", "joystick"])


def test_negative_spike_times_are_rejected(make_nwb, tmp_path):
    nwb = make_nwb(spike_times=[[0.2, 0.4], [-0.1, 0.3]], trials=regular_trials(2))
    assert_fails(nwb, tmp_path, "units.spike_times", "negative spike times")


def test_unsorted_spike_times_are_sorted_with_a_warning(make_nwb, tmp_path):
    nwb = make_nwb(spike_times=[[0.2, 0.4], [0.5, 0.3, 0.35]], trials=regular_trials(2))
    with pytest.warns(UserWarning, match="not sorted"):
        out, summary = ingest(nwb, tmp_path)
    assert summary["units_resorted"] == 1
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["spikes/times_s"][()], [0.2, 0.4, 0.3, 0.35, 0.5])


def test_columns_ingestion_leaves_out_are_counted(make_nwb, tmp_path):
    nwb = make_nwb(spike_times=[[0.2, 0.4], [0.5]], trials=regular_trials(2),
                   obs_intervals=[[[0.0, 3.0]], [[0.0, 3.0]]])
    with h5py.File(nwb, "r+") as f:  # a 2-D column (e.g. a waveform per unit)
        f["units/waveform"] = np.zeros((2, 5))
        f["units"].attrs["colnames"] = list(f["units"].attrs["colnames"]) + ["waveform"]
    _, summary = ingest(nwb, tmp_path)
    skipped = summary["columns_not_ingested"]["units"]
    assert skipped["waveform"].startswith("2-D") and "ragged" in skipped["spike_times"]
    assert summary["heldout_column"] is False


def test_trial_filter_keeping_nothing_is_named(small_recording, tmp_path):
    assert_fails(small_recording, tmp_path, "trial_filter", "no trials left",
                 trial_filter="split == 'nope'")
