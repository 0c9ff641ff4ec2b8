"""Calcium imaging: ROI traces (an ``RoiResponseSeries``) through the same stages as spikes.

Ingestion (:func:`lfads_core.nwb.ingest.ingest_traces`, called by
:func:`lfads_core.nwb.ingest.ingest_nwb` when the setting ``traces`` names a series) reads
the series named by ``traces`` from
``processing/ophys`` (as NeuroConv and roiextractors write suite2p or CaImAn output):
``Fluorescence`` (a container: its ``RoiResponseSeries``, or its only series), ``Deconvolved``
(a series inside a container), ``DfOverF/RoiResponseSeries`` (container/series). Several names
(comma-separated, e.g. one series per plane) are combined side by side when their frame times
agree to within half a frame period (the first series' frame times are used), else refused
naming them. Each series' ``rois`` (a DynamicTableRegion) points into its PlaneSegmentation,
whose scalar columns (e.g. ``iscell``) ``roi_filter`` queries, as ``unit_filter`` queries the
units table.

Output ``session.h5``, the spikes' layout where the two agree (attr ``kind`` = ``traces``;
spikes' files have ``kind`` = ``spikes``):

- ``traces/data`` (frames x kept ROIs, float32, NaN where a frame was not observed) and
  ``traces/timestamps_s`` (frames, the file's frame times in s: ``timestamps``, or
  ``starting_time`` + k / ``rate``).
- ``units/``: one row per ROI of the named series: ``id`` (the PlaneSegmentation's ROI id, or
  a running number where planes repeat ids), ``roi_id``, ``plane`` (the series), ``heldout``,
  ``kept``, ``drop_reason``, ``finite_frames`` and the PlaneSegmentation's scalar columns.
- ``trials/``, ``behavior/`` as for spikes; ``observed_intervals``: the frames' span, each
  frame filling the slot of one period around its time.
- attrs ``frame_period_s`` (median frame step), ``traces_series``, ``data_unit`` and those of
  spikes' files.

Checks (errors name the file and the field): the series exists (else the series there are
listed), its data is numbers, 2-D (frames x ROIs) or 1-D (one ROI), not empty, and holds no
infinite value; timestamps finite, not negative and increasing; ``rois`` integers, one per
column, each a row of its table; ``roi_filter`` a valid query keeping some ROI.

Binning (:func:`lfads_core.nwb.binning.bin_traces`): a bin is ``bin_frames`` frames; its width is ``bin_frames`` x
the frame period read from the file, and the grid is placed so that the frames sit at the
centres of their slots: ``t_start = first frame - period / 2``, so with ``bin_frames: 1`` the
bin centres are the frame times. A bin's value is the mean of its frames' finite values: a bin
whose frames are all NaN (or that no frame falls in, as at a dropped frame) is NaN; a bin with
some NaN frames is the mean of the others (counted in the summary as partly observed).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from ..errors import InputDataError
from ..fileio import atomic_path, read_table, sha256sum, write_table
from ..values import KIND_SPIKES, KIND_TRACES, kind_of  # noqa: F401 (used by importers)
from . import reading as nr

log = logging.getLogger(__name__)

TRACE_MODULE = "ophys"
#: The series a container name stands for where it holds several (NeuroConv's default name).
DEFAULT_SERIES = "RoiResponseSeries"
#: Frame times of several series agree when they differ by at most this fraction of a period.
PLANE_TOLERANCE = 0.5
BLOCK_VALUES = 1 << 22  # values read at a time


def _field(name: str) -> str:
    return f"processing/{TRACE_MODULE}/{name}"


def _is_roi_series(obj) -> bool:
    if not nr._is_series(obj):
        return False
    kind = obj.attrs.get("neurodata_type", "")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    return kind == "RoiResponseSeries" or "rois" in obj


def roi_series_names(f: h5py.File) -> list[str]:
    """Every ROI response series in ``processing/ophys``, as ``container/series`` (or
    ``series`` where it is not inside a container)."""
    module = f.get(f"processing/{TRACE_MODULE}")
    names = []
    if not isinstance(module, h5py.Group):
        return names
    for base, obj in module.items():
        if _is_roi_series(obj):
            names.append(base)
        elif isinstance(obj, h5py.Group):
            names.extend(f"{base}/{k}" for k, c in obj.items() if _is_roi_series(c))
    return names


def find_roi_series(f: h5py.File, name: str, path) -> h5py.Group:
    """The ROI response series ``name`` (``traces`` setting): ``container/series``, a series
    of that name (inside a container or not), or a container holding one series or a series
    named ``RoiResponseSeries``. Errors list the series the file has."""
    names = roi_series_names(f)
    found = [n for n in names if n == name or n.rsplit("/", 1)[-1] == name]
    if not found:
        inside = [n for n in names if n.split("/", 1)[0] == name and "/" in n]
        if len(inside) == 1:
            found = inside
        elif f"{name}/{DEFAULT_SERIES}" in inside:
            found = [f"{name}/{DEFAULT_SERIES}"]
        elif inside:
            raise InputDataError(path, _field(name), f"'{name}' is a container of several "
                                 f"series ({inside}); name one as container/series")
    if not found:
        raise InputDataError(path, _field(name), "ROI response series named in the setting "
                             "'traces' is not in the file; the series in processing/"
                             f"{TRACE_MODULE} are {names or 'none'}")
    if len(found) > 1:
        raise InputDataError(path, _field(name), f"several series match: {found}; name one "
                             "as container/series")
    return f[f"processing/{TRACE_MODULE}/{found[0]}"]


def frame_times(group: h5py.Group, path, field: str) -> np.ndarray:
    """The frame times (s) of a series, checked: finite, not negative, increasing."""
    nr.check_series(group, path, field)
    n = group["data"].shape[0]
    if n == 0:
        raise InputDataError(path, f"{field}.data", "holds no frames")
    if "timestamps" in group:
        times = nr.read(group["timestamps"], path, f"{field}.timestamps").astype(np.float64)
        where = f"{field}.timestamps"
    else:
        start = group["starting_time"]
        times = float(start[()]) + np.arange(n) / float(start.attrs["rate"])
        where = f"{field}.starting_time"
    bad = ~np.isfinite(times)
    if bad.any():
        raise InputDataError(path, where, f"{int(bad.sum())} of the {n} frame times are not "
                             "finite (NaN or infinite)")
    if times[0] < 0:
        raise InputDataError(path, where, f"frame times start at {times[0]:.6g} s; NWB times "
                             "count from the session start, so the file was converted with "
                             "another clock")
    steps = np.diff(times)
    if np.any(steps <= 0):
        k = int(np.flatnonzero(steps <= 0)[0])
        raise InputDataError(path, where, f"frame times are not increasing: frame {k + 1} at "
                             f"{times[k + 1]:.6g} s follows frame {k} at {times[k]:.6g} s "
                             f"({int(np.sum(steps <= 0))} such steps)")
    return times


def frame_period(times: np.ndarray) -> float:
    """The frame period (s): the median step of the frame times (1 s for a single frame)."""
    return float(np.median(np.diff(times))) if len(times) > 1 else 1.0


@dataclass
class Plane:
    """One ROI response series, checked: its frame times, ROI rows and their table."""

    name: str
    field: str  # its place in the file, e.g. processing/ophys/Fluorescence/Deconvolved
    data: h5py.Dataset
    times: np.ndarray
    table: pd.DataFrame  # one row per column of data: the PlaneSegmentation's row of the ROI
    heldout_column: bool
    unit: str
    conversion: float
    offset: float


def read_plane(f: h5py.File, name: str, path) -> Plane:
    """The series ``name`` and the PlaneSegmentation rows its ``rois`` point to, checked
    without reading the frames."""
    group = find_roi_series(f, name, path)
    field = group.name.lstrip("/")
    data = group["data"]
    nr.check_numeric(data, path, f"{field}.data")
    if data.ndim not in (1, 2):
        raise InputDataError(path, f"{field}.data", f"has shape {data.shape}; frames x ROIs "
                             "expected")
    times = frame_times(group, path, field)
    n_rois = data.shape[1] if data.ndim == 2 else 1
    if n_rois == 0:
        raise InputDataError(path, f"{field}.data", "has no ROIs (0 columns)")
    rois = nr.dataset(group, "rois", path, f"{field}.rois")
    if rois is None:
        raise InputDataError(path, f"{field}.rois", "the series has no 'rois' region, so its "
                             "columns cannot be matched to ROIs")
    nr.check_numeric(rois, path, f"{field}.rois", "iu")
    nr.check_stored(rois, path, f"{field}.rois")
    if rois.shape != (n_rois,):
        raise InputDataError(path, f"{field}.rois", f"has shape {rois.shape} but the data has "
                             f"{n_rois} ROI columns")
    ref = rois.attrs.get("table")
    try:
        table_group = f[ref] if isinstance(ref, h5py.Reference) and ref else None
    except (KeyError, ValueError):
        table_group = None
    if not isinstance(table_group, h5py.Group):
        raise InputDataError(path, f"{field}.rois", "its 'table' attribute does not point to "
                             "a PlaneSegmentation table")
    table_name = table_group.name.lstrip("/")
    nr.table_group(f, table_group.name, path, table_name)
    table, _, _ = nr.scalar_table(table_group, path, table_name)
    rows = nr.read(rois, path, f"{field}.rois").astype(np.int64)
    bad = (rows < 0) | (rows >= len(table))
    if bad.any():
        raise InputDataError(path, f"{field}.rois", f"{int(bad.sum())} entries point outside "
                             f"the {len(table)} rows of {table_name} (e.g. {int(rows[bad][0])})")
    if len(np.unique(rows)) != len(rows):
        raise InputDataError(path, f"{field}.rois", "names a ROI more than once")
    table = table.iloc[rows].reset_index(drop=True)
    table = table.rename(columns={"id": "roi_id"})
    return Plane(name, field, data, times, table, "heldout" in table, nr.series_unit(group),
                 float(data.attrs.get("conversion", 1.0)), float(data.attrs.get("offset", 0.0)))


def read_planes(f: h5py.File, names: list[str], path) -> tuple[list[Plane], pd.DataFrame]:
    """The named series, their frame times agreeing, and one ROI table over all of them:
    ``id``, ``roi_id``, ``plane`` and the PlaneSegmentations' scalar columns."""
    if not names:
        raise InputDataError(path, "traces", "names no series")
    planes = [read_plane(f, name, path) for name in names]
    first = planes[0]
    period = frame_period(first.times)
    for plane in planes[1:]:
        if len(plane.times) != len(first.times):
            raise InputDataError(path, plane.field, f"has {len(plane.times)} frames but "
                                 f"'{first.name}' has {len(first.times)}; series of several "
                                 "planes are combined only when their frame times agree")
        gap = float(np.max(np.abs(plane.times - first.times)))
        if gap > PLANE_TOLERANCE * period:
            raise InputDataError(path, plane.field, f"its frame times differ from those of "
                                 f"'{first.name}' by up to {gap:.6g} s (more than half a frame "
                                 f"period, {period:.6g} s); series of several planes are "
                                 "combined only when their frame times agree")
    tables = []
    for plane in planes:
        table = plane.table.copy()
        table.insert(1, "plane", plane.name)
        tables.append(table)
    rois = pd.concat(tables, ignore_index=True)
    ids = rois["roi_id"].to_numpy()
    rois.insert(0, "id", ids if len(np.unique(ids)) == len(ids) else np.arange(len(ids)))
    if any(p.heldout_column for p in planes):
        rois["heldout"] = rois["heldout"].fillna(False).astype(bool) \
            if "heldout" in rois else False
    else:
        rois["heldout"] = False
    return planes, rois


def _column_blocks(plane: Plane, path):
    """``(first column, values)`` of a plane's data, a block of columns at a time (all
    frames, float32, conversion and offset applied)."""
    data = plane.data
    n_frames = data.shape[0]
    n_cols = data.shape[1] if data.ndim == 2 else 1
    width = max(1, BLOCK_VALUES // max(1, n_frames))
    for lo in range(0, n_cols, width):
        hi = min(n_cols, lo + width)
        sel = np.s_[:, lo:hi] if data.ndim == 2 else np.s_[:]
        values = nr.read(data, path, f"{plane.field}.data", sel).astype(np.float32)
        values = values.reshape(n_frames, hi - lo)
        if plane.conversion != 1.0 or plane.offset != 0.0:
            values = values * np.float32(plane.conversion) + np.float32(plane.offset)
        yield lo, values
