"""NWB files of calcium imaging written the way NeuroConv writes suite2p output: one writer
for the imaging simulation (:mod:`.simulate`) and the test files.

``processing/ophys`` holds an ``ImageSegmentation`` with a ``PlaneSegmentation`` per plane
(small pixel masks, an ``iscell`` column, and ``heldout`` where given), a ``Fluorescence``
container with the raw traces (``RoiResponseSeries``), the neuropil (``Neuropil``) and the
deconvolved activity (``Deconvolved``), and a ``DfOverF`` container (``RoiResponseSeries``); a
Device, an OpticalChannel and an ImagingPlane describe the microscope. Several planes: the ROIs
are split over them, each with its own PlaneSegmentation and series (``RoiResponseSeriesPlane{k}``,
``DeconvolvedPlane{k}``, ...).
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SERIES_KEYS", "write_ophys_nwb"]

#: The traces a file holds: (series name, container, key of the ``traces`` dict).
SERIES_KEYS = (("RoiResponseSeries", "Fluorescence", "Fluorescence"),
               ("Neuropil", "Fluorescence", "Neuropil"),
               ("Deconvolved", "Fluorescence", "Deconvolved"),
               ("RoiResponseSeries", "DfOverF", "DfOverF"))


def write_ophys_nwb(path, traces: dict[str, np.ndarray], frame_rate: float,
                    trials: pd.DataFrame, trial_columns: dict[str, str] | None = None,
                    timestamps: np.ndarray | None = None, starting_time: float = 0.0,
                    iscell=None, heldout=None, planes: int = 1, plane_time_shift_s: float = 0.0,
                    use_timestamps: bool = False, roi_ids=None, behavior=(), modules=None,
                    nwb_kwargs: dict | None = None, compress: bool = False) -> Path:
    """Write ``traces`` (``Fluorescence``, ``Neuropil``, ``Deconvolved``, ``DfOverF``: frames x
    ROIs each) as NeuroConv writes suite2p output (module docstring).

    Frame times: ``timestamps`` (frames,) or ``starting_time`` + k / ``frame_rate``; stored as
    timestamps with ``use_timestamps``, else as starting time and rate. ``iscell``, ``heldout``:
    one value per ROI (``iscell`` default 1). ``planes`` > 1: the ROIs split over as many planes,
    plane ``k``'s frame times shifted by ``k * plane_time_shift_s``. ``trials``: start_time,
    stop_time and the columns described in ``trial_columns`` (name -> description).
    ``behavior``: TimeSeries for ``processing/behavior`` (in a ``BehavioralTimeSeries``);
    ``modules``: further processing modules, name -> (description, [TimeSeries]).
    ``compress``: gzip the traces."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.behavior import BehavioralTimeSeries
    from pynwb.ophys import (DfOverF, Fluorescence, ImageSegmentation, OpticalChannel,
                             RoiResponseSeries)

    n_frames, n_rois = traces["Fluorescence"].shape
    iscell = np.asarray(iscell if iscell is not None else np.ones(n_rois, dtype=int))
    if timestamps is None:
        timestamps = starting_time + np.arange(n_frames) / frame_rate
    kwargs = {"session_description": "two-photon imaging", "identifier": str(uuid.uuid4()),
              "session_start_time": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)}
    nwb = NWBFile(**{**kwargs, **(nwb_kwargs or {})})
    device = nwb.create_device(name="Microscope", description="two-photon microscope")
    channel = OpticalChannel(name="OpticalChannel", description="green", emission_lambda=525.0)
    ophys = nwb.create_processing_module("ophys", "optical physiology processed data")
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    containers = {"Fluorescence": Fluorescence(name="Fluorescence"),
                  "DfOverF": DfOverF(name="DfOverF")}
    for container in containers.values():
        ophys.add(container)
    for k, rois in enumerate(np.array_split(np.arange(n_rois), planes)):
        suffix = "" if planes == 1 else f"Plane{k}"
        plane = nwb.create_imaging_plane(
            name=f"ImagingPlane{suffix}", optical_channel=channel, imaging_rate=float(frame_rate),
            description="plane", device=device, excitation_lambda=920.0, indicator="GCaMP6s",
            location="M1")
        seg = segmentation.create_plane_segmentation(
            name=f"PlaneSegmentation{suffix}", description="suite2p ROIs", imaging_plane=plane)
        seg.add_column("iscell", "suite2p classifier: 1 for a cell")
        if heldout is not None:
            seg.add_column("heldout", "held out from the encoder")
        for j, i in enumerate(rois):
            extra = {"iscell": int(iscell[i])}
            if heldout is not None:
                extra["heldout"] = bool(heldout[i])
            ids = {"id": int(roi_ids[i])} if roi_ids is not None else {}
            seg.add_roi(pixel_mask=[(j % 8, j // 8, 1.0), (j % 8 + 1, j // 8, 0.5)], **extra,
                        **ids)
        region = seg.create_roi_table_region(description="all ROIs",
                                             region=list(range(len(rois))))
        times = np.asarray(timestamps) + k * plane_time_shift_s
        clock = {"timestamps": times} if use_timestamps else \
            {"starting_time": float(times[0]), "rate": float(frame_rate)}
        for name, container, key in SERIES_KEYS:
            data = np.ascontiguousarray(traces[key][:, rois])
            if compress:
                data = H5DataIO(data, compression="gzip", shuffle=True)
            containers[container].add_roi_response_series(RoiResponseSeries(
                name=f"{name}{suffix}", data=data, rois=region, unit="n.a.", **clock))
    for name, description in (trial_columns or {}).items():
        nwb.add_trial_column(name, description)
    for row in trials.to_dict("records"):
        nwb.add_trial(**{key: row[key] for key in ("start_time", "stop_time",
                                                  *(trial_columns or {}))})
    if behavior:
        container = BehavioralTimeSeries(name="BehavioralTimeSeries")
        for series in behavior:
            container.add_timeseries(series)
        nwb.create_processing_module("behavior", "behaviour").add(container)
    for name, (description, series) in (modules or {}).items():
        module = nwb.create_processing_module(name, description)
        for s in series:
            module.add(s)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return Path(path)
