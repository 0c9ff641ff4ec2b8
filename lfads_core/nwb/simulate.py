"""Seeded simulation of a spiking recording with known latent dynamics, written as NWB.

A latent dynamical system (Lorenz attractor or chaotic RNN) runs inside each trial from its
condition's initial state. Units fire as inhomogeneous Poisson processes whose log-rates are
linear readouts of the z-scored latents; a 2-D "hand velocity" is another linear readout plus
noise. The ground truth (latents, rates) is stored next to the data for evaluation.

Chaotic RNN options (the classic LFADS demo): ``input_pulse`` kicks the RNN on each trial with
one brief pulse ``u(t)`` (``pulse_amplitude`` for ``pulse_width_ms``, onset uniform on the 1 ms
grid within ``pulse_window_s`` of the trial start) along a fixed random input direction ``b``
(``tau dx/dt = -x + gain J tanh(x) + b u(t)``). Trials of a condition then differ after their
pulse, so latents and rates are simulated per trial; the pulse onset is the trials column
``pulse_time`` and ``u(t)`` the ground-truth series ``inputs``. ``readout: tanh`` makes each
unit the rate of one RNN unit (a random subset): ``max_rate_hz * (tanh(x_i) + 1) / 2``.

Time layout (one session clock from 0 s): trial ``k`` occupies ``[start_k, start_k + duration)``,
the first starting at 0.1 s, with random gaps (``iti_s``, 1 ms resolution) between trials.
Dynamics and spikes exist only within trials. Behaviour and ground truth are regular series
from 0 s to the end of the last trial, NaN outside trials. Ground-truth sample ``j`` is the
mean over ``[j*T, (j+1)*T)`` (``T = 1/truth_rate_hz``) and is time-stamped at its centre
(``starting_time = T/2``); samples not wholly inside a trial are NaN. Behaviour sample ``j``
(at ``j / behavior_rate_hz``) takes the latent state of the integration step containing it.

Rates: log-rate_n(t) = b_n + w_n . z(t), z = latents z-scored over all trial samples; w_n is
scaled so the modulation has std LOG_RATE_STD and b_n so the time-averaged rate equals the
neuron's target (log-uniform in ``mean_rate_hz``). Spike counts are Poisson per ``dt_ms`` step;
spike times are uniform within the step on a grid of dt/30 (the Units table's resolution).
Randomness comes from independent sub-streams of ``default_rng(seed)``, one per part.

A continuous recording (``continuous: true``) has no trials: the system runs for
``duration_s`` from one state on the attractor (the first condition's), the units fire, the
hand moves and the truth is sampled over the whole recording (``obs_intervals`` and the series
cover ``[0, duration_s)``), and the file has no trials table. The trial keys are not used.
"""

from __future__ import annotations

import datetime
import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import atomic_path
from .dynamics import SYSTEMS
from .simulation_params import _OMIT_IF_DEFAULT, DEFAULT_PARAMS, check_params

__all__ = ["DEFAULT_PARAMS", "SimulatedSession", "simulate_session", "write_nwb", "simulate_to_nwb",
           "imaging_traces", "write_imaging_nwb"]

# What each session of a multi-session simulation draws for itself (the latent system, the
# conditions' initial states and the neuron population are shared).
_SESSION_STREAMS = ("trials", "split", "spikes", "heldout", "pulses")
FIRST_TRIAL_S = 0.1
LOG_RATE_STD = 0.7  # std of each neuron's log-rate modulation
HAND_SPEED_STD = 0.1  # std of each hand-velocity component (m/s), before noise
SPIKE_TICKS_PER_STEP = 30  # spike-time grid: dt / 30
SESSION_START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
_STREAMS = ("init", "system", "readout", "rates", "behavior", "spikes", "heldout", "trials",
            "split", "pulses", "imaging")  # new streams go last: spawned children keep their seeds


@dataclass
class SimulatedSession:
    """A simulated recording. Times in seconds on the session clock; rates in Hz."""

    spike_times: list[np.ndarray]  # one sorted array per unit
    heldout: np.ndarray  # (units,) bool
    trials: pd.DataFrame  # start_time, stop_time, move_onset_time, condition, split
    #                       (+ pulse_time with input pulses)
    behavior_rate_hz: float
    hand_vel: np.ndarray  # (samples, 2) m/s from t=0, NaN outside trials
    truth_rate_hz: float
    truth_latents: np.ndarray  # (samples, n_latents) z-scored latents, at T/2 + j*T
    truth_rates_hz: np.ndarray  # (samples, units) Hz, at T/2 + j*T
    obs_intervals: np.ndarray  # (trials, 2) where every unit was observed
    params: dict
    truth_inputs: np.ndarray | None = None  # (samples, 1) input u(t) at T/2 + j*T, if pulses
    session: int = 0  # which session of a multi-session simulation


def _block_means(values: np.ndarray, offsets: np.ndarray, conds: np.ndarray,
                 width: int) -> np.ndarray:
    """Mean of ``values[c, i:i+width]`` for each (offset i, condition c); float32."""
    csum = np.concatenate([np.zeros_like(values[:, :1]), np.cumsum(values, axis=1)], axis=1)
    return ((csum[conds, offsets + width] - csum[conds, offsets]) / width).astype(np.float32)


def simulate_session(params: dict, session: int = 0) -> SimulatedSession:
    """Simulate a recording from ``params`` (missing keys from DEFAULT_PARAMS); deterministic.
    ``session``: which session of a multi-session simulation (``sessions`` > 1): the latent
    system, the conditions' initial states and the neuron population come from ``seed``; the
    session's neurons, conditions, trial count, trials, split, spikes, held-out units and
    behaviour noise from ``(seed, session)``."""
    p = check_params(params)
    rng = dict(zip(_STREAMS, np.random.default_rng(p["seed"]).spawn(len(_STREAMS))))
    if p["continuous"]:
        return _simulate_continuous(p, rng)
    noise_rng = rng["behavior"]
    dt = p["dt_ms"] * 1e-3
    steps_per_ms = round(1.0 / p["dt_ms"])
    n_steps = round(p["trial_duration_s"] * 1e3) * steps_per_ms  # per trial
    n_neurons, per_condition = p["n_neurons"], p["trials_per_condition"]
    neurons, conditions = np.arange(n_neurons), np.arange(p["n_conditions"])
    if p["sessions"] > 1:
        if not 0 <= session < p["sessions"]:
            raise ValueError(f"session {session} of a {p['sessions']}-session simulation")
        own = dict(zip(_STREAMS, np.random.default_rng([p["seed"], 1 + session]).spawn(
            len(_STREAMS))))
        rng.update({name: own[name] for name in _SESSION_STREAMS})
        noise_rng, pick = own["behavior"], own["readout"]
        if p["neurons_per_session"]:
            neurons = np.sort(pick.choice(n_neurons, p["neurons_per_session"], replace=False))
        if p["conditions_per_session"]:
            conditions = np.sort(pick.choice(p["n_conditions"], p["conditions_per_session"],
                                             replace=False))
        if p["session_trials_per_condition"] is not None:
            low, high = p["session_trials_per_condition"]
            per_condition = int(pick.integers(low, high + 1))
    n_trials = len(conditions) * per_condition

    # Trials: shuffled conditions, random gaps on a 1 ms grid; times in integer steps.
    conds = rng["trials"].permutation(np.repeat(conditions, per_condition))
    gaps_ms = np.round(rng["trials"].uniform(*p["iti_s"], n_trials - 1) * 1e3).astype(np.int64)
    start_ms = round(FIRST_TRIAL_S * 1e3) + np.concatenate(
        [[0], np.cumsum(gaps_ms + n_steps // steps_per_ms)])
    start_step = start_ms * steps_per_ms
    end_step = int(start_step[-1]) + n_steps
    split = np.full(n_trials, "train", dtype=object)
    n_val = round(p["valid_fraction"] * n_trials)
    split[rng["split"].choice(n_trials, n_val, replace=False)] = "val"
    steps_per_s = 1000 * steps_per_ms
    trials = pd.DataFrame({"start_time": start_step / steps_per_s,
                           "stop_time": (start_step + n_steps) / steps_per_s,
                           "move_onset_time": start_step / steps_per_s + p["event_offset_s"],
                           "condition": conds.astype(np.int64), "split": split.astype(str)})

    # Input pulses: onset on the 1 ms grid within pulse_window_s; u (trials x steps).
    pulses, u = None, None
    if p["input_pulse"]:
        lo_ms, hi_ms = (round(t * 1e3) for t in p["pulse_window_s"])
        onset_step = rng["pulses"].integers(lo_ms, hi_ms + 1, n_trials) * steps_per_ms
        width = p["pulse_width_ms"] * steps_per_ms
        step = np.arange(n_steps)
        u = p["pulse_amplitude"] * ((step >= onset_step[:, None]) &
                                    (step < onset_step[:, None] + width))
        trials["pulse_time"] = (start_step + onset_step) / steps_per_s
        pulses = (conds, u)
    # Row of the latents (and rates) of each trial: its condition, or itself with pulses.
    row = conds if pulses is None else np.arange(n_trials)

    # Latents, z-scored per dimension over all trial samples.
    latents = SYSTEMS[p["system"]](p, n_steps, rng, pulses)
    flat = latents.reshape(-1, latents.shape[-1])
    z = (latents - flat.mean(0)) / np.maximum(flat.std(0), 1e-12)
    z_flat = z.reshape(-1, z.shape[-1])

    if p["readout"] == "tanh":  # each neuron reads one RNN unit (tanh state in [-1, 1])
        units = rng["readout"].choice(latents.shape[-1], n_neurons, replace=False)
        rates = p["max_rate_hz"] * (latents[..., units] + 1.0) / 2.0
    else:  # log-rate = b + w.z, modulation std LOG_RATE_STD, mean rate exactly the target
        target = np.exp(rng["rates"].uniform(*np.log(p["mean_rate_hz"]), n_neurons))
        w = rng["readout"].normal(size=(z.shape[-1], n_neurons))
        w *= LOG_RATE_STD / np.maximum((z_flat @ w).std(0), 1e-12)
        b = np.log(target) - np.log(np.exp(z_flat @ w).mean(0))
        rates = np.exp(b + z @ w)  # (rows, steps, neurons) Hz
    if len(neurons) < n_neurons:  # a session's subset of the population
        rates, n_neurons = rates[..., neurons], len(neurons)

    # Spikes: Poisson counts per step and neuron, times uniform within the step (on a grid of
    # SPIKE_TICKS_PER_STEP ticks per step, the Units resolution: 30 kHz for 1 ms steps).
    ticks_per_s = SPIKE_TICKS_PER_STEP * steps_per_ms * 1000
    per_unit, per_time = [], []
    for k in range(n_trials):
        counts = rng["spikes"].poisson(rates[row[k]] * dt)
        step, unit = np.nonzero(counts)
        reps = counts[step, unit]
        step, unit = np.repeat(step, reps), np.repeat(unit, reps)
        ticks = (start_step[k] + step) * SPIKE_TICKS_PER_STEP + rng["spikes"].integers(
            0, SPIKE_TICKS_PER_STEP, len(step))
        per_time.append(ticks / ticks_per_s)
        per_unit.append(unit)
    unit, times = np.concatenate(per_unit), np.concatenate(per_time)
    order = np.lexsort((times, unit))
    times, bounds = times[order], np.searchsorted(unit[order], np.arange(n_neurons + 1))
    spike_times = [times[bounds[n]:bounds[n + 1]] for n in range(n_neurons)]
    heldout = np.zeros(n_neurons, dtype=bool)
    heldout[rng["heldout"].choice(n_neurons, round(p["heldout_fraction"] * n_neurons),
                                  replace=False)] = True

    # Hand velocity at behavior_rate_hz: latent step containing each sample, linear readout.
    mix = rng["behavior"].normal(size=(z.shape[-1], 2))
    mix *= HAND_SPEED_STD / np.maximum((z_flat @ mix).std(0), 1e-12)
    n_beh = math.ceil(end_step * dt * p["behavior_rate_hz"] - 1e-9)
    global_step = np.floor(np.arange(n_beh) / p["behavior_rate_hz"] / dt + 1e-9).astype(np.int64)
    k = np.searchsorted(start_step, global_step, side="right") - 1
    inside = (k >= 0) & (global_step < start_step[np.maximum(k, 0)] + n_steps)
    hand_vel = np.full((n_beh, 2), np.nan)
    signal = z[row[k[inside]], global_step[inside] - start_step[k[inside]]] @ mix
    hand_vel[inside] = signal + noise_rng.normal(
        0.0, p["behavior_noise"] * HAND_SPEED_STD, signal.shape)

    # Ground truth: means over truth steps lying wholly inside a trial.
    width = round(1e3 / p["truth_rate_hz"]) * steps_per_ms
    first = np.arange(math.ceil(end_step / width)) * width
    k = np.searchsorted(start_step, first, side="right") - 1
    inside = (k >= 0) & (first + width <= start_step[np.maximum(k, 0)] + n_steps)
    offsets, c = first[inside] - start_step[k[inside]], row[k[inside]]
    truth_latents = np.full((len(first), z.shape[-1]), np.nan, dtype=np.float32)
    truth_latents[inside] = _block_means(z, offsets, c, width)
    truth_rates = np.full((len(first), n_neurons), np.nan, dtype=np.float32)
    truth_rates[inside] = _block_means(rates, offsets, c, width)
    truth_inputs = None
    if u is not None:
        truth_inputs = np.full((len(first), 1), np.nan, dtype=np.float32)
        truth_inputs[inside] = _block_means(u[..., None].astype(float), offsets, c, width)

    return SimulatedSession(
        spike_times=spike_times, heldout=heldout, trials=trials,
        behavior_rate_hz=float(p["behavior_rate_hz"]), hand_vel=hand_vel,
        truth_rate_hz=float(p["truth_rate_hz"]), truth_latents=truth_latents,
        truth_rates_hz=truth_rates,
        obs_intervals=trials[["start_time", "stop_time"]].to_numpy(), params=p,
        truth_inputs=truth_inputs, session=session)


def _simulate_continuous(p: dict, rng: dict) -> SimulatedSession:
    """A recording without trials (``continuous: true``): the system runs for ``duration_s``
    from one state on the attractor (condition 0's), spikes, behaviour and truth at every
    step as in trials. Rates, spikes and truth are made a chunk of steps at a time."""
    dt = p["dt_ms"] * 1e-3
    steps_per_ms = round(1.0 / p["dt_ms"])
    n_steps = round(p["duration_s"] * 1e3) * steps_per_ms
    n_neurons = p["n_neurons"]
    latents = SYSTEMS[p["system"]]({**p, "n_conditions": 1}, n_steps, rng)[0]
    z = (latents - latents.mean(0)) / np.maximum(latents.std(0), 1e-12)  # steps x latents
    width = round(1e3 / p["truth_rate_hz"]) * steps_per_ms
    chunk = width * 2048  # steps per chunk, whole truth steps

    if p["readout"] == "tanh":
        units = rng["readout"].choice(latents.shape[-1], n_neurons, replace=False)

        def rates_of(lo, hi):
            return p["max_rate_hz"] * (latents[lo:hi, units] + 1.0) / 2.0
    else:  # as in trials: modulation std LOG_RATE_STD, mean rate exactly the target
        target = np.exp(rng["rates"].uniform(*np.log(p["mean_rate_hz"]), n_neurons))
        w = rng["readout"].normal(size=(z.shape[-1], n_neurons))
        cov = np.cov(z, rowvar=False, bias=True).reshape(z.shape[-1], z.shape[-1])
        w *= LOG_RATE_STD / np.maximum(np.sqrt(np.einsum("in,ij,jn->n", w, cov, w)), 1e-12)
        mean = sum(np.exp(z[lo:lo + chunk] @ w).sum(0) for lo in range(0, n_steps, chunk))
        b = np.log(target) - np.log(mean / n_steps)

        def rates_of(lo, hi):
            return np.exp(b + z[lo:hi] @ w)

    ticks_per_s = SPIKE_TICKS_PER_STEP * steps_per_ms * 1000
    n_truth = n_steps // width
    truth_rates = np.empty((n_truth, n_neurons), dtype=np.float32)
    per_unit, per_time = [], []
    for lo in range(0, n_steps, chunk):
        hi = min(n_steps, lo + chunk)
        rates = rates_of(lo, hi)
        counts = rng["spikes"].poisson(rates * dt)
        step, unit = np.nonzero(counts)
        reps = counts[step, unit]
        step, unit = np.repeat(step, reps), np.repeat(unit, reps)
        ticks = (lo + step) * SPIKE_TICKS_PER_STEP + rng["spikes"].integers(
            0, SPIKE_TICKS_PER_STEP, len(step))
        per_time.append(ticks / ticks_per_s)
        per_unit.append(unit)
        whole = (hi - lo) // width
        truth_rates[lo // width:lo // width + whole] = \
            rates[:whole * width].reshape(whole, width, n_neurons).mean(1)
    unit, times = np.concatenate(per_unit), np.concatenate(per_time)
    order = np.lexsort((times, unit))
    times, bounds = times[order], np.searchsorted(unit[order], np.arange(n_neurons + 1))
    heldout = np.zeros(n_neurons, dtype=bool)
    heldout[rng["heldout"].choice(n_neurons, round(p["heldout_fraction"] * n_neurons),
                                  replace=False)] = True

    # Hand velocity: the latent step containing each sample, a linear readout plus noise.
    mix = rng["behavior"].normal(size=(z.shape[-1], 2))
    mix *= HAND_SPEED_STD / np.maximum((z @ mix).std(0), 1e-12)
    n_beh = math.ceil(n_steps * dt * p["behavior_rate_hz"] - 1e-9)
    step = np.minimum(np.floor(np.arange(n_beh) / p["behavior_rate_hz"] / dt + 1e-9)
                      .astype(np.int64), n_steps - 1)
    signal = z[step] @ mix
    hand_vel = signal + rng["behavior"].normal(0.0, p["behavior_noise"] * HAND_SPEED_STD,
                                               signal.shape)
    truth_latents = z[:n_truth * width].reshape(n_truth, width, -1).mean(1).astype(np.float32)
    trials = pd.DataFrame({"start_time": np.zeros(0), "stop_time": np.zeros(0),
                           "move_onset_time": np.zeros(0), "condition": np.zeros(0, np.int64),
                           "split": np.zeros(0, dtype=object)})
    return SimulatedSession(
        spike_times=[times[bounds[n]:bounds[n + 1]] for n in range(n_neurons)], heldout=heldout,
        trials=trials, behavior_rate_hz=float(p["behavior_rate_hz"]), hand_vel=hand_vel,
        truth_rate_hz=float(p["truth_rate_hz"]), truth_latents=truth_latents,
        truth_rates_hz=truth_rates, obs_intervals=np.array([[0.0, n_steps * dt]]), params=p)


def write_nwb(session: SimulatedSession, path: str | Path) -> None:
    """Write ``session`` as an NWB file at ``path`` (overwritten)."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.file import Subject
    from pynwb.misc import Units

    p = session.params
    described = {k: v for k, v in p.items() if k not in _OMIT_IF_DEFAULT or v != DEFAULT_PARAMS[k]}
    if p["sessions"] > 1:
        described["session"] = session.session
    text = json.dumps(described, sort_keys=True)
    nwb = NWBFile(
        session_description=f"Simulated spiking recording ({p['system']} latent dynamics, "
                            f"Poisson spikes); parameters: {text}",
        # the namespace keeps the module's first name, so that a file's identifier stays
        # the same across versions of the package
        identifier=str(uuid.uuid5(uuid.NAMESPACE_URL, "lfads_core.simulate:" + text)),
        session_start_time=SESSION_START,
        file_create_date=SESSION_START,  # fixed, so the same params give the same bytes
        experiment_description="Synthetic data with known latent dynamics and firing rates, "
                               "written by lfads_core.nwb.simulate to test latent-dynamics models.",
        keywords=["simulation", "latent dynamics", p["system"], "Poisson spiking"],
        institution="simulated", lab="simulated", experimenter=["Simulator, LFADS"],
        session_id=f"sim-{p['system']}-seed{p['seed']}" + (
            f"-session{session.session}" if p["sessions"] > 1 else ""),
        subject=Subject(subject_id="sim", species="Macaca mulatta", age="P5Y", sex="U",
                        description="Simulated subject; no animal was recorded."))

    columns = {"move_onset_time": "time of the (simulated) movement onset (s)",
               "condition": "condition index: the latent system's initial state",
               "trial_type": "same as condition (as in the Neural Latents Benchmark)",
               "split": "NLB data split: 'train' or 'val'"}
    pulsed = "pulse_time" in session.trials
    if pulsed:
        columns["pulse_time"] = "onset of the trial's input pulse to the latent RNN (s)"
    for name, description in columns.items() if len(session.trials) else ():  # continuous: none
        nwb.add_trial_column(name, description)
    for row in session.trials.itertuples(index=False):
        extra = {"pulse_time": row.pulse_time} if pulsed else {}
        nwb.add_trial(start_time=row.start_time, stop_time=row.stop_time,
                      move_onset_time=row.move_onset_time, condition=int(row.condition),
                      trial_type=int(row.condition), split=str(row.split), **extra)

    nwb.units = Units(name="units", description="Simulated Poisson units",
                      resolution=p["dt_ms"] * 1e-3 / SPIKE_TICKS_PER_STEP)
    nwb.add_unit_column("heldout", "True for units held out of the model's input (NLB style)")
    for i, times in enumerate(session.spike_times):
        nwb.add_unit(spike_times=times, obs_intervals=session.obs_intervals,
                     heldout=bool(session.heldout[i]), id=i)

    def series(name, data, unit, rate, start, description):
        # One long chunk per column: gzip then finds the repeats of a condition's trials.
        data = H5DataIO(data.astype(np.float32), compression="gzip", shuffle=True,
                        chunks=(min(len(data), 1 << 18), 1))
        return TimeSeries(name=name, data=data,
                          unit=unit, rate=float(rate), starting_time=float(start),
                          description=description,
                          comments=("" if p["continuous"] else "NaN outside trials; ")
                          + "simulated by lfads_core.nwb.simulate")

    behavior = nwb.create_processing_module("behavior", "Simulated behaviour")
    behavior.add(series("hand_vel", session.hand_vel, "m/s", session.behavior_rate_hz, 0.0,
                        "Hand velocity (x, y): linear readout of the latents plus noise"))
    truth = nwb.create_processing_module(
        "ground_truth", "Ground truth of the simulation; each sample is the mean over its step, "
                        "time-stamped at the step's centre")
    half = 0.5 / session.truth_rate_hz
    truth.add(series("latents", session.truth_latents, "a.u.", session.truth_rate_hz, half,
                     "Latent states, z-scored per dimension (inputs of the rate readout)"))
    truth.add(series("rates", session.truth_rates_hz, "Hz", session.truth_rate_hz, half,
                     "Firing rate of every unit (units in the order of the Units table)"))
    if session.truth_inputs is not None:
        truth.add(series("inputs", session.truth_inputs, "a.u.", session.truth_rate_hz, half,
                         "External input u(t) to the latent RNN: the input pulses (amplitude "
                         "in units of the RNN state)"))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def simulate_to_nwb(params: dict, path: str | Path, session: int = 0) -> SimulatedSession:
    """Simulate (session ``session`` of a multi-session simulation) and write to ``path``
    atomically (temporary file in the same folder, renamed); with ``imaging`` the calcium
    imaging of the spikes (:func:`write_imaging_nwb`) instead of the spikes."""
    session = simulate_session(params, session)
    with atomic_path(path) as tmp:
        (write_imaging_nwb if session.params["imaging"] else write_nwb)(session, tmp)
    return session


# ------------------------------------------------------------------ calcium imaging

NEUROPIL_WEIGHT = 0.7  # suite2p's default neuropil coefficient


def calcium_kernel(frame_rate_hz: float, rise_s: float, decay_s: float) -> np.ndarray:
    """The calcium response to one spike at the middle of frame 0, sampled at the frames'
    centres: exp(-t / decay) - exp(-t / rise), scaled to a peak of 1 (dF/F per spike), over
    five decay times."""
    t = (np.arange(int(np.ceil(5 * decay_s * frame_rate_hz)) + 1)) / frame_rate_hz
    shape = np.exp(-t / decay_s) - np.exp(-t / rise_s)
    peak_t = rise_s * decay_s / (decay_s - rise_s) * np.log(decay_s / rise_s)
    return shape / (np.exp(-peak_t / decay_s) - np.exp(-peak_t / rise_s))


def imaging_traces(session: SimulatedSession) -> dict[str, np.ndarray]:
    """The calcium imaging of a simulated session's spikes (``imaging`` parameters): frames
    k at ``(k + 1/2) / frame_rate_hz`` from 0 s to 1 s after the last trial, each the spikes of
    its frame period.

    - ``DfOverF``: the spike counts convolved with :func:`calcium_kernel` (1 per spike at its
      peak) plus Gaussian noise of s.d. ``fluorescence_noise`` per frame.
    - ``Fluorescence`` (raw, positive): ``F0 * (1 + dF/F) + 0.7 * neuropil``, ``F0`` per ROI
      uniform in [0.5, 2]; ``Neuropil``: 0.5 plus noise of s.d. 0.05.
    - ``Deconvolved``: an AR(1) deconvolution of the noisy dF/F, ``dF/F_k - g dF/F_{k-1}``
      with ``g = exp(-1 / (decay * rate))``, values below three noise s.d. of that difference
      set to 0: sparse non-negative events, with many zeros (as OASIS or suite2p give).
    - ``spike_counts`` (frames x neurons), ``timestamps`` (frames,).
    """
    p = session.params
    rng = np.random.default_rng(p["seed"]).spawn(len(_STREAMS))[_STREAMS.index("imaging")]
    rate = p["frame_rate_hz"]
    stop = float(session.trials["stop_time"].max()) + 1.0
    n_frames = int(np.ceil(stop * rate))
    edges = np.arange(n_frames + 1) / rate
    counts = np.stack([np.histogram(t, edges)[0] for t in session.spike_times], axis=1)
    kernel = calcium_kernel(rate, p["calcium_rise_s"], p["calcium_decay_s"])
    calcium = np.stack([np.convolve(c, kernel)[:n_frames] for c in counts.T], axis=1)
    noise = p["fluorescence_noise"]
    dff = calcium + noise * rng.standard_normal(calcium.shape)
    f0 = rng.uniform(0.5, 2.0, counts.shape[1])
    neuropil = 0.5 + 0.05 * rng.standard_normal(calcium.shape)
    fluorescence = f0 * (1.0 + dff) + NEUROPIL_WEIGHT * neuropil
    g = np.exp(-1.0 / (p["calcium_decay_s"] * rate))
    step = np.vstack([dff[:1], dff[1:] - g * dff[:-1]])
    threshold = 3.0 * noise * np.sqrt(1.0 + g * g)
    deconvolved = np.where(step > threshold, step, 0.0)
    return {"timestamps": (np.arange(n_frames) + 0.5) / rate, "spike_counts": counts,
            "DfOverF": dff.astype(np.float32), "Fluorescence": fluorescence.astype(np.float32),
            "Neuropil": neuropil.astype(np.float32), "Deconvolved": deconvolved.astype(np.float32)}


def write_imaging_nwb(session: SimulatedSession, path: str | Path) -> None:
    """Write the calcium imaging of ``session`` (:func:`imaging_traces`) at ``path`` as
    NeuroConv writes suite2p output (:mod:`.ophys_writer`): one ROI per simulated neuron, all
    cells, the held-out ones marked in the PlaneSegmentation's ``heldout`` column; trials,
    behaviour and ground truth (latents, rates in spikes/s) as :func:`write_nwb` writes them."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import TimeSeries

    from .ophys_writer import write_ophys_nwb

    p = session.params
    traces = imaging_traces(session)
    text = json.dumps({k: v for k, v in p.items()
                       if k not in _OMIT_IF_DEFAULT or v != DEFAULT_PARAMS[k]}, sort_keys=True)

    def series(name, data, unit, rate, start, description):
        return TimeSeries(name=name, data=H5DataIO(data.astype(np.float32), compression="gzip",
                                                   shuffle=True),
                          unit=unit, rate=float(rate), starting_time=float(start),
                          description=description,
                          comments="NaN outside trials; simulated by lfads_core.nwb.simulate")

    half = 0.5 / session.truth_rate_hz
    truth = [series("latents", session.truth_latents, "a.u.", session.truth_rate_hz, half,
                    "Latent states, z-scored per dimension (inputs of the rate readout)"),
             series("rates", session.truth_rates_hz, "Hz", session.truth_rate_hz, half,
                    "Firing rate of every neuron (ROIs in the order of the PlaneSegmentation)")]
    trials = session.trials.assign(trial_type=session.trials["condition"])
    write_ophys_nwb(
        path, traces, p["frame_rate_hz"], trials,
        {"move_onset_time": "time of the (simulated) movement onset (s)",
         "condition": "condition index: the latent system's initial state",
         "trial_type": "same as condition (as in the Neural Latents Benchmark)",
         "split": "NLB data split: 'train' or 'val'"},
        starting_time=0.5 / p["frame_rate_hz"], heldout=session.heldout,
        behavior=[series("hand_vel", session.hand_vel, "m/s", session.behavior_rate_hz, 0.0,
                         "Hand velocity (x, y): linear readout of the latents plus noise")],
        modules={"ground_truth": ("Ground truth of the simulation; each sample is the mean "
                                  "over its step, time-stamped at the step's centre", truth)},
        nwb_kwargs={"session_description": "Simulated two-photon calcium imaging "
                                           f"({p['system']} latent dynamics, Poisson spikes, "
                                           f"calcium kernel); parameters: {text}",
                    "identifier": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                 "lfads_core.simulate:" + text)),
                    "session_start_time": SESSION_START, "file_create_date": SESSION_START},
        compress=True)
