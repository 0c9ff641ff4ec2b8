"""Calcium imaging: ROI traces (an ``RoiResponseSeries``) through the same stages as spikes.

Ingestion (:func:`ingest_traces`, called by :func:`lfads_core.nwb.ingest.ingest_nwb` when the
setting ``traces`` names a series) reads the series named by ``traces`` from
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

Binning (:func:`bin_traces`): a bin is ``bin_frames`` frames; its width is ``bin_frames`` x
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
from . import reading as nr

log = logging.getLogger(__name__)

TRACE_MODULE = "ophys"
KIND_SPIKES = "spikes"
KIND_TRACES = "traces"
#: The series a container name stands for where it holds several (NeuroConv's default name).
DEFAULT_SERIES = "RoiResponseSeries"
#: Frame times of several series agree when they differ by at most this fraction of a period.
PLANE_TOLERANCE = 0.5
BLOCK_VALUES = 1 << 22  # values read at a time


def kind_of(attrs) -> str:
    """The data kind recorded in a file's attrs (files without it hold spikes)."""
    kind = attrs.get("kind", KIND_SPIKES)
    return kind.decode() if isinstance(kind, bytes) else str(kind)


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


def ingest_traces(path, f: h5py.File, out_h5, settings) -> dict:
    """Ingest the ROI traces named by ``settings.traces`` (module docstring) into
    ``session.h5``; returns the ingestion summary."""
    from ..values import split_list
    from .ingest import (BEHAVIOR_MODULE, _read_series, _write_series, apply_query,
                         late_event_warning, read_trials, trial_drop_reasons)

    planes, rois = read_planes(f, split_list(settings.traces), path)
    read = read_trials(f, path, settings.align_event, settings.trials_table)
    trials, notes = read.table, list(read.warnings)
    times = planes[0].times
    period = frame_period(times)
    # Frame k fills the slot [t_k - period / 2, t_k + period / 2): the recording's span.
    recording_start, recording_stop = float(times[0] - period / 2), float(times[-1] + period / 2)

    keep = apply_query(rois, settings.roi_filter, path, "roi_filter")
    reason = np.where(keep, "", "roi_filter").astype(object)
    # First pass: no infinite values; ROIs without one finite frame are dropped.
    finite = np.zeros(len(rois), dtype=np.int64)
    column = 0
    for plane in planes:
        for lo, values in _column_blocks(plane, path):
            inf = np.isinf(values)
            if inf.any():
                k = int(np.flatnonzero(inf.any(axis=0))[0])
                raise InputDataError(path, f"{plane.field}.data",
                                     f"{int(inf.sum())} values are infinite (e.g. ROI column "
                                     f"{lo + k}); mark frames that were not observed as NaN")
            finite[column + lo: column + lo + values.shape[1]] = np.isfinite(values).sum(axis=0)
        column += plane.data.shape[1] if plane.data.ndim == 2 else 1
    rois["finite_frames"] = finite
    reason[(reason == "") & (finite == 0)] = "no finite frames"
    kept = reason == ""
    if not kept.any():
        raise InputDataError(path, "roi_filter" if settings.roi_filter else "traces",
                             f"no ROIs left ({len(rois)} in {settings.traces!r}; roi_filter="
                             f"{settings.roi_filter!r}); drop reasons: "
                             f"{pd.Series(reason).value_counts().to_dict()}")
    rois["kept"] = kept
    rois["drop_reason"] = reason.astype(str)

    trial_reason = trial_drop_reasons(trials, settings, path, recording_stop)
    n_late = int(np.sum(trial_reason == f"{settings.align_event} after recording end"))
    if n_late:
        notes.append(late_event_warning(read.name, settings.align_event, n_late, len(trials),
                                        recording_stop))
    for note in notes:
        warnings.warn(f"{path}: {note}", stacklevel=2)
    trials["kept"] = trial_reason == ""
    trials["drop_reason"] = trial_reason.astype(str)
    behavior = _read_series(f, settings.behavior, path, BEHAVIOR_MODULE)

    n_frames, n_kept = len(times), int(kept.sum())
    nan_frames = int(n_frames * n_kept - finite[kept].sum())
    summary = {
        "source": str(path),
        "kind": KIND_TRACES,
        "traces": [p.name for p in planes],
        "trials_table": read.name,
        "units_in_file": int(len(rois)),
        "units_kept": n_kept,
        "unit_drop_reasons": pd.Series(reason[~kept]).value_counts().to_dict(),
        "rois_in_file": int(len(rois)),
        "rois_kept": n_kept,
        "frames": n_frames,
        "frame_period_s": period,
        "frame_rate_hz": 1.0 / period,
        "nan_fraction": nan_frames / max(1, n_frames * n_kept),
        "trials_in_file": int(len(trials)),
        "trials_kept": int(trials["kept"].sum()),
        "trial_drop_reasons": pd.Series(trial_reason[trial_reason != ""]).value_counts().to_dict(),
        "columns_not_ingested": {"trials": read.skipped},
        "columns_not_in_colnames": {"trials": read.hidden},
        "warnings": notes,
        "heldout_column": bool(any(p.heldout_column for p in planes)),
        "recording_stop_s": recording_stop,
        "lfads_core_version": __version__,
    }
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as out:
        chunks = (min(n_frames, max(1, (1 << 16) // max(1, min(n_kept, 64)))), min(n_kept, 64))
        data_out = out.create_dataset("traces/data", shape=(n_frames, n_kept), dtype="f4",
                                      chunks=chunks, compression="gzip", compression_opts=1,
                                      shuffle=True)
        out.create_dataset("traces/timestamps_s", data=times)
        column, written = 0, 0
        for plane in planes:
            for lo, values in _column_blocks(plane, path):
                sel = kept[column + lo: column + lo + values.shape[1]]
                if sel.any():
                    data_out[:, written:written + int(sel.sum())] = values[:, sel]
                    written += int(sel.sum())
            column += plane.data.shape[1] if plane.data.ndim == 2 else 1
        write_table(out.create_group("units"), rois)
        write_table(out.create_group("trials"), trials)
        out.create_dataset("observed_intervals",
                           data=np.array([[recording_start, recording_stop]]))
        summary["behavior"] = {n: _write_series(out.require_group("behavior"), n, *s)
                               for n, s in behavior.items()}
        summary["ground_truth"] = {}
        out.attrs["kind"] = KIND_TRACES
        out.attrs["source"] = str(path)
        out.attrs["source_sha256"] = sha256sum(path)
        out.attrs["recording_start_s"] = recording_start
        out.attrs["recording_stop_s"] = recording_stop
        out.attrs["frame_period_s"] = period
        out.attrs["heldout_column"] = summary["heldout_column"]
        out.attrs["trials_table"] = read.name
        out.attrs["traces_series"] = [p.name for p in planes]
        out.attrs["data_unit"] = planes[0].unit
        out.attrs["lfads_core_version"] = __version__
        summary["source_sha256"] = out.attrs["source_sha256"]
    log.info("ingest: kept %d/%d ROIs of %s, %d frames at %.4g Hz, %d/%d trials", n_kept,
             len(rois), summary["traces"], n_frames, 1.0 / period, summary["trials_kept"],
             summary["trials_in_file"])
    return summary


# ------------------------------------------------------------------ binning

def trace_grid(first_frame_s: float, period_s: float, bin_frames: int, n_frames_span: float
               ) -> tuple[float, float, int]:
    """``(t_start, bin_width, n_bins)`` of the frame grid: bins of ``bin_frames`` frame
    periods, the first frame at the centre of its slot, enough bins for ``n_frames_span``
    frame periods."""
    if int(bin_frames) != bin_frames or bin_frames < 1:
        raise InputDataError("settings", "bin_frames", f"must be a whole number >= 1, got "
                             f"{bin_frames}")
    width = int(bin_frames) * period_s
    t_start = first_frame_s - 0.5 * period_s
    n_bins = int(np.ceil(n_frames_span / int(bin_frames) - 1e-9))
    return t_start, width, max(1, n_bins)


def average_frames(times: np.ndarray, values: np.ndarray, t_start: float, width: float,
                   n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, n_finite)``: each bin's mean of its frames' finite values (NaN where none) and
    how many finite frames it had (bins x columns). Frames are placed by their times (bin
    ``k``: ``[t_start + k width, t_start + (k+1) width)``), so a dropped frame leaves its bin
    short and a gap leaves bins NaN."""
    from .binning import bin_index

    k = bin_index(np.asarray(times, dtype=np.float64), t_start, width, n_bins)
    inside = k >= 0
    k, values = k[inside], values[inside]
    finite = np.isfinite(values)
    sums = np.zeros((n_bins, values.shape[1]), dtype=np.float64)
    counts = np.zeros((n_bins, values.shape[1]), dtype=np.int64)
    np.add.at(sums, k, np.where(finite, values, 0.0))
    np.add.at(counts, k, finite)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return mean.astype(np.float32), counts


def bin_traces(session_h5, out_h5, bin_frames: int = 1) -> dict:
    """Average an ingested traces ``session.h5`` into ``binned.h5``: ``traces/values`` (bins x
    kept ROIs, float32, NaN where a bin has no finite frame), attrs ``kind``, ``t_start_s``,
    ``bin_width_s`` (``bin_frames`` x the frame period), ``n_bins``, ``bin_frames``,
    ``frame_period_s``; behaviour prefiltered for the bin width, the units (kept ROIs), trials
    and observed intervals copied, as :func:`lfads_core.nwb.binning.bin_session` writes them."""
    from .binning import prefilter_series

    with h5py.File(session_h5, "r") as src:
        times = src["traces/timestamps_s"][()]
        period = float(src.attrs["frame_period_s"])
        t_start, width, n_bins = trace_grid(float(times[0]), period, bin_frames,
                                            (float(times[-1]) - float(times[0])) / period + 1)
        data = src["traces/data"]
        n_rois = data.shape[1]
        units = read_table(src["units"])
        units = units[units["kept"]].reset_index(drop=True)
        log.info("binning %d frames of %d ROIs into %d bins of %d frames (%.6g ms)",
                 len(times), n_rois, n_bins, bin_frames, width * 1e3)
        with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as out:
            values_out = out.create_dataset(
                "traces/values", shape=(n_bins, n_rois), dtype="f4",
                chunks=(min(n_bins, max(1, (1 << 16) // max(1, min(n_rois, 64)))),
                        min(max(n_rois, 1), 64)),
                compression="gzip", compression_opts=1, shuffle=True)
            step = max(1, BLOCK_VALUES // max(1, len(times)))
            all_nan = partly = 0
            for lo in range(0, n_rois, step):
                hi = min(n_rois, lo + step)
                mean, counts = average_frames(times, data[:, lo:hi], t_start, width, n_bins)
                values_out[:, lo:hi] = mean
                all_nan += int(np.sum(counts == 0))
                partly += int(np.sum((counts > 0) & (counts < bin_frames)))
            out.attrs.update(kind=KIND_TRACES, t_start_s=t_start, bin_width_s=width,
                             n_bins=n_bins, bin_frames=int(bin_frames), frame_period_s=period)
            for key in ("source", "source_sha256", "lfads_core_version", "data_unit"):
                out.attrs[key] = src.attrs[key]
            out.attrs["heldout_column"] = bool(src.attrs.get("heldout_column", False))
            out.attrs["trials_table"] = str(src.attrs.get("trials_table", "trials"))
            for name, group in src.get("behavior", {}).items():
                stamps, values = prefilter_series(group["timestamps_s"][()], group["data"][()],
                                                  width)
                sub = out.create_group(f"behavior/{name}")
                sub.create_dataset("timestamps_s", data=stamps)
                sub.create_dataset("data", data=values, compression="gzip", compression_opts=1,
                                   shuffle=True)
                sub.attrs["unit"] = group.attrs["unit"]
                sub.attrs["columns"] = group.attrs["columns"]
            write_table(out.create_group("units"), units)
            write_table(out.create_group("trials"), read_table(src["trials"]))
            out.create_dataset("observed_intervals", data=src["observed_intervals"][()])
    total = max(1, n_bins * n_rois)
    return {"kind": KIND_TRACES, "bin_frames": int(bin_frames), "frame_period_s": period,
            "bin_width_s": width, "t_start_s": t_start, "n_bins": n_bins,
            "n_units": int(n_rois), "frames": int(len(times)),
            "nan_bin_fraction": all_nan / total, "partly_observed_bin_fraction": partly / total}
