"""The parameters of a simulated recording (:mod:`lfads_core.nwb.simulate`): their defaults
and their check (``config/README.md``, section ``simulations``, describes each)."""

from __future__ import annotations

import copy
import math
import numbers

from .dynamics import SYSTEMS

__all__ = ["DEFAULT_PARAMS", "READOUTS", "check_params"]

DEFAULT_PARAMS: dict = {
    "system": "lorenz", "seed": 0,
    # units
    "n_neurons": 100, "heldout_fraction": 0.2, "mean_rate_hz": [5.0, 20.0],
    # trials (s)
    "n_conditions": 20, "trials_per_condition": 20, "trial_duration_s": 1.0,
    "event_offset_s": 0.3, "iti_s": [0.1, 0.3], "valid_fraction": 0.2,
    # sampling
    "behavior_rate_hz": 1000, "behavior_noise": 0.05, "truth_rate_hz": 200, "dt_ms": 1.0,
    # Lorenz time units per second: ~1.4 lobe switches per 1 s trial on average
    "lorenz_speed": 2.5,
    # chaotic RNN: units, gain of the recurrent weights, time constant (s)
    "rnn_units": 50, "rnn_gain": 1.5, "rnn_tau_s": 0.025,
    # rate readout: "loglinear" (above) or "tanh" (chaotic_rnn: rate of one RNN unit, Hz)
    "readout": "loglinear", "max_rate_hz": 30.0,
    # chaotic_rnn input pulses: one per trial, onset uniform in pulse_window_s (s from the
    # trial start), amplitude in units of the RNN state (x jumps by ~ amplitude * width / tau)
    "input_pulse": False, "pulse_amplitude": 10.0, "pulse_window_s": [0.25, 0.75],
    "pulse_width_ms": 10,
    # several sessions of one latent system (stitching): each observes neurons_per_session of
    # the n_neurons population (0: all), conditions_per_session of the n_conditions (0: all)
    # and trials_per_condition drawn from session_trials_per_condition ([low, high]; null: all
    # sessions trials_per_condition)
    "sessions": 1, "neurons_per_session": 0, "conditions_per_session": 0,
    "session_trials_per_condition": None,
    # a continuous recording without trials: the system runs for duration_s from one state
    # on the attractor (no trials table; the trial keys above are not used)
    "continuous": False, "duration_s": 300.0,
    # calcium imaging of the same spikes: convolved with a calcium kernel (rise, decay in s),
    # fluorescence noise (s.d. per frame, in units of one spike's peak dF/F), sampled at
    # frame_rate_hz and written as suite2p output (processing/ophys) instead of a Units table
    "imaging": False, "frame_rate_hz": 30.0, "calcium_rise_s": 0.05, "calcium_decay_s": 0.4,
    "fluorescence_noise": 0.3,
}
# Keys added after the first files were written: left out of a file's description while at
# their defaults, so that the same params still give the same file.
_OMIT_IF_DEFAULT = ("readout", "max_rate_hz", "input_pulse", "pulse_amplitude",
                    "pulse_window_s", "pulse_width_ms", "sessions", "neurons_per_session",
                    "conditions_per_session", "session_trials_per_condition", "continuous",
                    "duration_s", "imaging", "frame_rate_hz", "calcium_rise_s",
                    "calcium_decay_s", "fluorescence_noise")
READOUTS = ("loglinear", "tanh")


def check_params(params: dict) -> dict:
    """Defaults filled in, values checked; raises ValueError naming the offending key."""
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown simulation parameter(s) {unknown}; "
                         f"known: {sorted(DEFAULT_PARAMS)}")
    p = copy.deepcopy(DEFAULT_PARAMS)
    p.update(copy.deepcopy(params))

    def bad(key: str, why: str):
        raise ValueError(f"simulation parameter {key!r} = {p[key]!r}: {why}")

    def is_real(value) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value)

    def number(key: str, low: float, low_ok: bool = True, integer: bool = False):
        value = p[key]
        if not is_real(value) or (integer and value != int(value)):
            bad(key, "must be an integer" if integer else "must be a finite number")
        if value < low or (value == low and not low_ok):
            bad(key, f"must be {'>=' if low_ok else '>'} {low}")
        p[key] = int(value) if integer else float(value)

    if p["system"] not in SYSTEMS:
        bad("system", f"must be one of {tuple(SYSTEMS)}")
    for key in ("seed", "n_neurons", "n_conditions", "trials_per_condition", "rnn_units"):
        number(key, 0 if key == "seed" else 1, integer=True)
    for key in ("trial_duration_s", "behavior_rate_hz", "truth_rate_hz", "dt_ms",
                "lorenz_speed", "rnn_gain", "rnn_tau_s"):
        number(key, 0, low_ok=False)
    for key in ("heldout_fraction", "valid_fraction", "behavior_noise", "event_offset_s"):
        number(key, 0)
    for key in ("heldout_fraction", "valid_fraction"):
        if p[key] >= 1:
            bad(key, "must be < 1")
    for key, low in (("iti_s", 0.0), ("mean_rate_hz", 1e-9), ("pulse_window_s", 0.0)):
        pair = p[key]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or \
                not all(map(is_real, pair)) or not low <= pair[0] <= pair[1]:
            bad(key, f"must be [low, high] with {low:g} <= low <= high")
        p[key] = [float(v) for v in pair]
    if p["event_offset_s"] >= p["trial_duration_s"]:
        bad("event_offset_s", "must be < trial_duration_s")
    steps_per_ms = 1.0 / p["dt_ms"]
    if abs(steps_per_ms - round(steps_per_ms)) > 1e-9:
        bad("dt_ms", "must divide 1 ms (1, 0.5, 0.25, ...)")
    if abs(p["trial_duration_s"] * 1e3 - round(p["trial_duration_s"] * 1e3)) > 1e-6:
        bad("trial_duration_s", "must be a whole number of ms")
    truth_ms = 1e3 / p["truth_rate_hz"]
    if abs(truth_ms - round(truth_ms)) > 1e-9:
        bad("truth_rate_hz", "its step (1000 / rate ms) must be a whole number of ms")

    number("sessions", 1, integer=True)
    for key in ("neurons_per_session", "conditions_per_session"):
        number(key, 0, integer=True)
    if p["neurons_per_session"] > p["n_neurons"]:
        bad("neurons_per_session", f"must be <= n_neurons ({p['n_neurons']})")
    if p["conditions_per_session"] > p["n_conditions"]:
        bad("conditions_per_session", f"must be <= n_conditions ({p['n_conditions']})")
    if p["session_trials_per_condition"] is not None:
        pair = p["session_trials_per_condition"]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or \
                not all(isinstance(v, int) and not isinstance(v, bool) for v in pair) or \
                not 1 <= pair[0] <= pair[1]:
            bad("session_trials_per_condition", "must be [low, high] integers, 1 <= low <= high")
    if p["readout"] not in READOUTS:
        bad("readout", f"must be one of {READOUTS}")
    number("max_rate_hz", 0, low_ok=False)
    number("pulse_amplitude", 0)
    number("pulse_width_ms", 1, integer=True)
    if not isinstance(p["input_pulse"], bool):
        bad("input_pulse", "must be true or false")
    if p["readout"] == "tanh":
        if p["system"] != "chaotic_rnn":
            bad("readout", "'tanh' needs system 'chaotic_rnn'")
        if p["n_neurons"] > p["rnn_units"]:
            bad("n_neurons", f"must be <= rnn_units ({p['rnn_units']}) with readout 'tanh' "
                             "(one unit per RNN unit)")
    if not isinstance(p["continuous"], bool):
        bad("continuous", "must be true or false")
    number("duration_s", 0, low_ok=False)
    if p["continuous"]:
        if abs(p["duration_s"] * 1e3 - round(p["duration_s"] * 1e3)) > 1e-6:
            bad("duration_s", "must be a whole number of ms")
        if p["input_pulse"]:
            bad("input_pulse", "input pulses come with trials; not with continuous: true")
        if p["sessions"] > 1:
            bad("sessions", "several sessions come with trials; not with continuous: true")
    if not isinstance(p["imaging"], bool):
        bad("imaging", "must be true or false")
    for key in ("frame_rate_hz", "calcium_rise_s", "calcium_decay_s"):
        number(key, 0, low_ok=False)
    number("fluorescence_noise", 0)
    if p["imaging"]:
        if p["calcium_rise_s"] >= p["calcium_decay_s"]:
            bad("calcium_rise_s", "must be shorter than calcium_decay_s")
        if p["continuous"] or p["sessions"] > 1:
            bad("imaging", "imaging is simulated for one session of trials; not with "
                           "continuous: true or sessions > 1")
    if p["input_pulse"]:
        if p["system"] != "chaotic_rnn":
            bad("input_pulse", "input pulses need system 'chaotic_rnn'")
        if p["pulse_window_s"][1] + p["pulse_width_ms"] / 1e3 > p["trial_duration_s"] + 1e-9:
            bad("pulse_window_s", "the latest pulse (window end + pulse_width_ms) must end "
                                  "within trial_duration_s")
    return p
