"""Tests of the simulated recording (lfads_core.nwb.simulate) and the NWB file it writes."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from lfads_core.nwb import simulate
from lfads_core.nwb.simulate import DEFAULT_PARAMS, simulate_session, simulate_to_nwb, write_nwb

SMALL = {"n_conditions": 3, "trials_per_condition": 4, "n_neurons": 20}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small Lorenz session and its NWB file."""
    path = tmp_path_factory.mktemp("sim") / "small.nwb"
    return simulate_to_nwb(SMALL, path), path


def read_nwb(path):
    from pynwb import NWBHDF5IO

    io = NWBHDF5IO(str(path), "r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return io, io.read()


def h5_content(path) -> dict:
    """Every dataset and attribute of an HDF5 file, except hdmf's random ``object_id``s."""
    out = {}

    def visit(name, obj):
        for key, value in obj.attrs.items():
            if key != "object_id":
                out[f"{name}@{key}"] = repr(value)
        if isinstance(obj, h5py.Dataset):
            data = np.asarray(obj[()])
            if data.dtype.kind == "O":
                data = np.array([str(v) for v in data.ravel()])
            out[name] = data

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def assert_same_content(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


def test_same_seed_same_spikes_and_file(small, tmp_path):
    session, path = small
    again = simulate_to_nwb(dict(SMALL), tmp_path / "again.nwb")
    for x, y in zip(session.spike_times, again.spike_times):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(session.truth_rates_hz, again.truth_rates_hz)
    assert_same_content(h5_content(path), h5_content(tmp_path / "again.nwb"))


def test_different_seed_differs(small):
    session, _ = small
    other = simulate_session({**SMALL, "seed": 1})
    assert not all(len(x) == len(y) and np.array_equal(x, y)
                   for x, y in zip(session.spike_times, other.spike_times))
    assert not np.array_equal(session.trials.start_time, other.trials.start_time)


def test_parts_use_separate_random_streams(small):
    session, _ = small
    other = simulate_session({**SMALL, "valid_fraction": 0.5, "heldout_fraction": 0.5})
    for x, y in zip(session.spike_times, other.spike_times):
        np.testing.assert_array_equal(x, y)
    assert (other.trials.split == "val").sum() == 6 and other.heldout.sum() == 10


def test_trials_table(small):
    session, _ = small
    trials = session.trials
    assert len(trials) == 12 and trials.start_time.iat[0] == pytest.approx(0.1)
    np.testing.assert_allclose(trials.stop_time - trials.start_time, 1.0)
    np.testing.assert_allclose(trials.move_onset_time - trials.start_time, 0.3)
    gaps = trials.start_time.to_numpy()[1:] - trials.stop_time.to_numpy()[:-1]
    assert np.all((gaps >= 0.1 - 1e-9) & (gaps <= 0.3 + 1e-9))
    start_ms = trials.start_time.to_numpy() * 1e3
    np.testing.assert_allclose(start_ms, np.round(start_ms), atol=1e-6)  # 1 ms grid
    assert sorted(trials.condition.value_counts().to_list()) == [4, 4, 4]
    assert set(trials.split) <= {"train", "val"} and (trials.split == "val").sum() == 2
    assert session.heldout.dtype == bool and session.heldout.sum() == 4
    np.testing.assert_array_equal(session.obs_intervals, trials[["start_time", "stop_time"]])


def test_spikes_sorted_and_only_within_trials(small):
    session, _ = small
    starts, stops = session.trials.start_time.to_numpy(), session.trials.stop_time.to_numpy()
    for times in session.spike_times:
        assert len(times) > 0 and np.all(np.diff(times) >= 0)
        k = np.searchsorted(starts, times, side="right") - 1
        assert np.all(k >= 0) and np.all(times < stops[k])


def test_mean_rates_are_cortex_like():
    session = simulate_session({"n_conditions": 3, "trials_per_condition": 5})
    observed_s = float((session.trials.stop_time - session.trials.start_time).sum())
    rates = np.array([len(t) for t in session.spike_times]) / observed_s
    assert len(rates) == DEFAULT_PARAMS["n_neurons"]
    assert np.all((rates > 3) & (rates < 30))
    assert 5 <= np.median(rates) <= 20
    truth = np.nanmean(session.truth_rates_hz, axis=0)
    assert np.all((truth > 4.5) & (truth < 22))


def sample_inside_trials(session, times):
    starts, stops = session.trials.start_time.to_numpy(), session.trials.stop_time.to_numpy()
    k = np.searchsorted(starts, times, side="right") - 1
    return (k >= 0) & (times < stops[np.maximum(k, 0)]), k


def test_hand_vel_nan_outside_trials_finite_inside(small):
    session, _ = small
    times = np.arange(len(session.hand_vel)) / session.behavior_rate_hz
    inside, _ = sample_inside_trials(session, times + 1e-9)
    assert session.hand_vel.shape[1] == 2
    assert np.all(np.isfinite(session.hand_vel[inside]))
    assert np.all(np.isnan(session.hand_vel[~inside]))
    assert times[-1] < session.trials.stop_time.iat[-1] <= times[-1] + 2e-3


def test_ground_truth_steps_inside_trials(small):
    session, _ = small
    step = 1.0 / session.truth_rate_hz
    left = np.arange(len(session.truth_rates_hz)) * step
    inside, k = sample_inside_trials(session, left + 1e-9)
    whole = inside & (left + step <= session.trials.stop_time.to_numpy()[k] + 1e-9)
    for values in (session.truth_rates_hz, session.truth_latents):
        assert values.dtype == np.float32
        assert np.all(np.isfinite(values[whole])) and np.all(np.isnan(values[~whole]))
    assert np.all(session.truth_rates_hz[whole] > 0)
    np.testing.assert_allclose(np.nanmean(session.truth_latents, axis=0), 0, atol=0.05)


def test_nwb_round_trip(small):
    session, path = small
    io, nwb = read_nwb(path)
    try:
        trials = nwb.trials.to_dataframe()
        for column in ("start_time", "stop_time", "move_onset_time", "condition"):
            np.testing.assert_allclose(trials[column], session.trials[column])
        np.testing.assert_array_equal(trials.trial_type, session.trials.condition)
        assert list(trials.split) == list(session.trials.split)
        units = nwb.units
        assert list(units.id[:]) == list(range(20))
        for i, times in enumerate(session.spike_times):
            np.testing.assert_array_equal(units["spike_times"][i], times)
            np.testing.assert_array_equal(units["obs_intervals"][i], session.obs_intervals)
        np.testing.assert_array_equal(np.asarray(units["heldout"][:], dtype=bool), session.heldout)
        assert units.resolution == pytest.approx(1 / 30000)

        hand = nwb.processing["behavior"]["hand_vel"]
        assert hand.data.shape == session.hand_vel.shape and hand.unit == "m/s"
        assert hand.rate == 1000 and hand.starting_time == 0.0
        np.testing.assert_allclose(hand.data[:], session.hand_vel, rtol=1e-6)
        truth = nwb.processing["ground_truth"]
        latents, rates = truth["latents"], truth["rates"]
        assert latents.data.shape == (len(session.truth_latents), 3) and latents.unit == "a.u."
        assert rates.data.shape == (len(session.truth_rates_hz), 20) and rates.unit == "Hz"
        assert rates.rate == 200 and rates.starting_time == pytest.approx(0.0025)
        np.testing.assert_array_equal(rates.data[:], session.truth_rates_hz)
        assert nwb.subject.subject_id == "sim" and nwb.institution == "simulated"
    finally:
        io.close()


@pytest.mark.parametrize("recording", ["small", "pulsed"])
def test_nwbinspector_finds_no_violations(recording, request):
    nwbinspector = pytest.importorskip("nwbinspector")
    _, path = request.getfixturevalue(recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(path)))
    serious = {nwbinspector.Importance.CRITICAL, nwbinspector.Importance.BEST_PRACTICE_VIOLATION}
    bad = [(m.check_function_name, m.message) for m in messages if m.importance in serious]
    assert bad == []


def test_chaotic_rnn_runs_and_writes(tmp_path):
    params = {**SMALL, "system": "chaotic_rnn", "rnn_units": 10}
    session = simulate_to_nwb(params, tmp_path / "rnn.nwb")
    assert session.truth_latents.shape[1] == 10 and session.params["system"] == "chaotic_rnn"
    assert sum(len(t) for t in session.spike_times) > 0
    io, nwb = read_nwb(tmp_path / "rnn.nwb")
    try:
        assert nwb.processing["ground_truth"]["latents"].data.shape[1] == 10
    finally:
        io.close()


@pytest.mark.parametrize("params, key", [
    ({"n_neuron": 10}, "n_neuron"),
    ({"system": "vanderpol"}, "system"),
    ({"n_neurons": 0}, "n_neurons"),
    ({"heldout_fraction": 1.0}, "heldout_fraction"),
    ({"iti_s": [0.3, 0.1]}, "iti_s"),
    ({"mean_rate_hz": [0.0, 10.0]}, "mean_rate_hz"),
    ({"dt_ms": 0.3}, "dt_ms"),
    ({"event_offset_s": 2.0}, "event_offset_s"),
    ({"seed": 1.5}, "seed"),
])
def test_bad_params_raise_naming_the_key(params, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        simulate_session(params)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken(session, path):
        open(path, "wb").write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(simulate, "write_nwb", broken)
    with pytest.raises(RuntimeError):
        simulate_to_nwb(SMALL, tmp_path / "out.nwb")
    assert list(tmp_path.iterdir()) == []


def test_write_nwb_overwrites(small, tmp_path):
    session, _ = small
    write_nwb(session, tmp_path / "x.nwb")
    write_nwb(session, tmp_path / "x.nwb")
    assert h5py.is_hdf5(tmp_path / "x.nwb")


PULSED = {**SMALL, "system": "chaotic_rnn", "rnn_units": 20, "readout": "tanh",
          "input_pulse": True, "pulse_window_s": [0.2, 0.6], "pulse_width_ms": 10,
          "truth_rate_hz": 100, "iti_s": [0.1, 0.1]}  # trials start on the 10 ms truth grid


@pytest.fixture(scope="module")
def pulsed(tmp_path_factory):
    """A small chaotic-RNN session with one input pulse per trial, and its NWB file."""
    path = tmp_path_factory.mktemp("sim") / "pulsed.nwb"
    return simulate_to_nwb(PULSED, path), path


def trial_rows(session, values):
    """Ground-truth samples of each trial: trials x samples x dims (truth step grid)."""
    step = 1.0 / session.truth_rate_hz
    first = np.round(session.trials.start_time.to_numpy() / step).astype(int)
    n = int(round((session.trials.stop_time.iat[0] - session.trials.start_time.iat[0]) / step))
    return np.stack([values[i:i + n] for i in first])


def test_pulses_one_per_trial_in_the_window(pulsed):
    session, _ = pulsed
    trials = session.trials
    offset = (trials.pulse_time - trials.start_time).to_numpy()
    assert np.all((offset >= 0.2 - 1e-9) & (offset <= 0.6 + 1e-9))
    np.testing.assert_allclose(offset * 1e3, np.round(offset * 1e3), atol=1e-6)  # 1 ms grid
    assert len(np.unique(offset)) > 1
    inputs = trial_rows(session, session.truth_inputs)[..., 0]  # trials x 100 (10 ms steps)
    assert session.truth_inputs.shape[1] == 1 and np.all(np.isfinite(inputs))
    # 10 ms of amplitude 10 per trial, within the two 10 ms samples from the onset on
    np.testing.assert_allclose(inputs.sum(axis=1) * 10, 10 * 10, rtol=1e-5)
    onset = np.floor(offset * 100 + 1e-9).astype(int)
    for k in range(len(trials)):
        assert set(np.flatnonzero(inputs[k])) <= {onset[k], onset[k] + 1}


def test_pulse_changes_only_what_follows_it(pulsed):
    session, _ = pulsed
    rates = trial_rows(session, session.truth_rates_hz)
    trials = session.trials
    onset = np.floor((trials.pulse_time - trials.start_time).to_numpy() * 100 + 1e-9).astype(int)
    a, b = np.flatnonzero(trials.condition == 0)[:2]
    first, last = sorted((onset[a], onset[b]))
    np.testing.assert_array_equal(rates[a, :first], rates[b, :first])  # same initial state
    after = slice(last + 1, last + 11)  # the 100 ms after the later pulse
    assert np.abs(rates[a, after] - rates[b, after]).mean() > 0.5  # Hz


def test_tanh_readout_rates_bounded_by_max_rate(pulsed):
    session, _ = pulsed
    rates = session.truth_rates_hz[np.isfinite(session.truth_rates_hz[:, 0])]
    assert rates.min() >= 0 and rates.max() <= 30.0 and 5 < rates.mean() < 25


def test_pulses_in_nwb_and_trials(pulsed):
    session, path = pulsed
    io, nwb = read_nwb(path)
    try:
        trials = nwb.trials.to_dataframe()
        np.testing.assert_allclose(trials.pulse_time, session.trials.pulse_time)
        assert "pulse" in nwb.trials["pulse_time"].description
        inputs = nwb.processing["ground_truth"]["inputs"]
        np.testing.assert_array_equal(inputs.data[:], session.truth_inputs)
        assert inputs.rate == 100 and '"input_pulse": true' in nwb.session_description
    finally:
        io.close()


def test_pulsed_same_seed_same_file(pulsed, tmp_path):
    _, path = pulsed
    simulate_to_nwb(dict(PULSED), tmp_path / "again.nwb")
    assert_same_content(h5_content(path), h5_content(tmp_path / "again.nwb"))


def test_without_pulses_files_keep_their_description(small):
    _, path = small
    io, nwb = read_nwb(path)
    try:
        assert "input_pulse" not in nwb.session_description
        assert "pulse_time" not in nwb.trials.colnames
        assert "inputs" not in nwb.processing["ground_truth"].data_interfaces
    finally:
        io.close()


@pytest.mark.parametrize("params, key", [
    ({"readout": "sigmoid"}, "readout"),
    ({"readout": "tanh"}, "readout"),  # Lorenz
    ({"system": "chaotic_rnn", "readout": "tanh", "n_neurons": 60}, "n_neurons"),
    ({"max_rate_hz": 0}, "max_rate_hz"),
    ({"input_pulse": 1}, "input_pulse"),
    ({"input_pulse": True}, "input_pulse"),  # Lorenz
    ({"system": "chaotic_rnn", "input_pulse": True, "pulse_window_s": [0.5, 0.995]},
     "pulse_window_s"),
    ({"pulse_window_s": [0.5, 0.2]}, "pulse_window_s"),
    ({"pulse_width_ms": 0.5}, "pulse_width_ms"),
    ({"pulse_amplitude": -1.0}, "pulse_amplitude"),
])
def test_bad_pulse_and_readout_params_raise_naming_the_key(params, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        simulate_session(params)


def test_config_readme_documents_every_simulation_key():
    from conftest import ROOT

    readme = (ROOT / "config" / "README.md").read_text()
    section = readme[readme.index("## `simulations`"):]
    missing = sorted(k for k in DEFAULT_PARAMS if f"| `{k}` |" not in section)
    assert not missing, f"config/README.md does not document simulation keys {missing}"


def test_sessions_share_the_latent_system_and_differ_in_the_rest():
    params = {**SMALL, "n_conditions": 6, "n_neurons": 40, "sessions": 3,
              "neurons_per_session": 15, "conditions_per_session": 4,
              "session_trials_per_condition": [2, 5]}
    sessions = [simulate_session(params, k) for k in range(3)]
    for k, s in enumerate(sessions):
        assert len(s.spike_times) == 15 and s.session == k
        per_condition = s.trials["condition"].value_counts()
        assert len(per_condition) == 4 and per_condition.nunique() == 1
        assert 2 <= per_condition.iloc[0] <= 5
    # the same condition follows the same latent path in every session (z-scored over each
    # session's own trials, so compare correlations)
    def condition_path(s, c):
        start = s.trials.loc[s.trials["condition"] == c, "start_time"].iloc[0]
        first = int(round((start - 0.5 / s.truth_rate_hz) * s.truth_rate_hz)) + 1
        return s.truth_latents[first:first + 150]
    shared = set(sessions[0].trials["condition"]) & set(sessions[1].trials["condition"])
    assert shared
    for c in shared:
        a, b = condition_path(sessions[0], c), condition_path(sessions[1], c)
        assert np.corrcoef(a[:, 0], b[:, 0])[0, 1] > 0.99
    # different neurons and trials
    assert not np.array_equal(sessions[0].truth_rates_hz[:50], sessions[1].truth_rates_hz[:50])
    assert simulate_session(params, 1).trials.equals(sessions[1].trials)  # deterministic
    with pytest.raises(ValueError, match="session 3 of a 3-session simulation"):
        simulate_session(params, 3)
