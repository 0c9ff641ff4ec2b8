"""NWB files of calcium imaging written the way NeuroConv writes suite2p output (by
:func:`lfads_core.nwb.ophys_writer.write_ophys_nwb`, which the imaging simulation uses too).

``processing/ophys`` holds an ``ImageSegmentation`` with a ``PlaneSegmentation`` per plane
(small pixel masks, an ``iscell`` column), a ``Fluorescence`` container with the raw traces
(``RoiResponseSeries``), the neuropil (``Neuropil``) and the deconvolved activity
(``Deconvolved``), and a ``DfOverF`` container (``RoiResponseSeries``); a Device, an
OpticalChannel and an ImagingPlane describe the microscope. The trials table has
``move_onset_time`` and a ``condition`` column, ``processing/behavior`` a 2-D velocity.

The activity is simulated: each condition is a rotation of a 2-D latent oscillation after the
movement onset; each ROI's firing rate is a tuned readout of it; spikes are convolved with a
calcium kernel (decay 0.4 s) and sampled at ~30 Hz with noise, so that LFADS has something to
learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FRAME_RATE = 30.0


def simulate_imaging(n_rois=24, n_trials=40, n_conditions=4, seed=0, frame_rate=FRAME_RATE,
                     trial_s=1.4, gap_s=0.3, event_offset_s=0.4):
    """Frame times, fluorescence, deconvolved activity, neuropil, trials and behaviour."""
    rng = np.random.default_rng(seed)
    starts = 0.5 + np.arange(n_trials) * (trial_s + gap_s)
    stop = starts[-1] + trial_s + 0.5
    n_frames = int(stop * frame_rate)
    t = np.arange(n_frames) / frame_rate
    condition = np.arange(n_trials) % n_conditions
    event = starts + event_offset_s
    latent = np.zeros((n_frames, 2))
    for k, e in enumerate(event):
        since = t - e
        inside = (since >= -0.1) & (since < 0.8)
        angle = 2 * np.pi * condition[k] / n_conditions
        envelope = np.exp(-((since[inside] - 0.3) / 0.2) ** 2)
        phase = 2 * np.pi * 1.5 * since[inside] + angle
        latent[inside] = envelope[:, None] * np.column_stack([np.cos(phase), np.sin(phase)])
    weights = rng.normal(0, 1.5, (2, n_rois))
    rate = np.exp(np.log(2.0) + latent @ weights)  # spikes/s
    spikes = rng.poisson(rate / frame_rate)
    kernel = np.exp(-np.arange(int(2 * frame_rate)) / (0.4 * frame_rate))
    calcium = np.stack([np.convolve(spikes[:, i], kernel)[:n_frames] for i in range(n_rois)], 1)
    neuropil = 0.5 + 0.1 * rng.standard_normal((n_frames, n_rois))
    fluorescence = 1.0 + 0.5 * calcium + 0.7 * neuropil + 0.05 * rng.standard_normal(calcium.shape)
    dff = (fluorescence - 0.7 * neuropil - 1.0).clip(0) + 0.05
    deconvolved = np.where(spikes > 0, spikes * (0.5 + 0.1 * rng.random(spikes.shape)), 0.0)
    trials = pd.DataFrame({"start_time": starts, "stop_time": starts + trial_s,
                           "move_onset_time": event, "condition": condition})
    velocity = latent * 10.0
    return {"timestamps": t, "Fluorescence": fluorescence.astype(np.float32),
            "Deconvolved": deconvolved.astype(np.float32), "Neuropil": neuropil.astype(np.float32),
            "DfOverF": dff.astype(np.float32), "trials": trials, "velocity": velocity,
            "latent": latent}


def write_imaging_nwb(path, sim=None, n_rois=24, iscell=None, heldout=None, planes=1,
                      plane_time_shift_s=0.0, use_timestamps=False, roi_ids=None,
                      nan_frames=(), **simulate):
    """Write an imaging NWB file like NeuroConv's suite2p interface (module docstring).

    iscell: one value per ROI (default: all but every 6th ROI are cells). heldout: if given,
    a ``heldout`` column of the plane segmentation. planes > 1: the ROIs are split over as
    many planes, each with its own PlaneSegmentation and series (``RoiResponseSeriesPlane{k}``,
    ``DeconvolvedPlane{k}``), plane ``k``'s frame times shifted by ``k * plane_time_shift_s``.
    use_timestamps: store frame timestamps rather than starting_time and rate. nan_frames:
    frames whose values are NaN in every series (dropped frames, motion artefacts).
    Returns ``(path, sim)``.
    """
    from pynwb import TimeSeries

    from lfads_core.nwb.ophys_writer import write_ophys_nwb

    sim = sim if sim is not None else simulate_imaging(n_rois=n_rois, **simulate)
    n_rois = sim["Fluorescence"].shape[1]
    if len(nan_frames):
        sim = dict(sim)
        for key in ("Fluorescence", "Deconvolved", "Neuropil", "DfOverF"):
            sim[key] = sim[key].copy()
            sim[key][np.asarray(nan_frames)] = np.nan
    iscell = np.asarray(iscell if iscell is not None else (np.arange(n_rois) % 6 != 5))
    trials = sim["trials"].assign(condition=sim["trials"]["condition"].astype(int))
    write_ophys_nwb(
        path, sim, FRAME_RATE, trials,
        {"move_onset_time": "movement onset (s)", "condition": "reach direction"},
        timestamps=sim["timestamps"], iscell=iscell, heldout=heldout, planes=planes,
        plane_time_shift_s=plane_time_shift_s, use_timestamps=use_timestamps, roi_ids=roi_ids,
        behavior=[TimeSeries(name="hand_vel", data=sim["velocity"], unit="m/s",
                             timestamps=sim["timestamps"])],
        nwb_kwargs={"session_description": "two-photon imaging, simulated"})
    return Path(path), sim
