"""Spike binning and behaviour resampling onto one regular time grid.

The binning stage stores, per spike, the index of its bin (sparse: its size is that of the
spikes, not of bins x units), and each behaviour series low-pass filtered at its own sampling
times; alignment turns both into counts and values on the bins of the trial windows it cuts
(:func:`window_counts`, :func:`sample_series`). Memory and time so grow with the spikes and
samples the file stores and the trials used, never with the recording's length x units.

Edge convention: bin ``k`` covers the half-open interval ``[edges[k], edges[k+1])`` with
``edges[k] = t_start + k * bin_width`` (seconds). Every spike is counted in exactly one bin; a
spike exactly on an edge belongs to the bin that starts there. Spikes outside
``[edges[0], edges[-1])`` are not counted.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)


def check_bin_width(bin_width: float, where: str = "settings") -> None:
    from ..errors import InputDataError

    if not (np.isfinite(bin_width) and bin_width > 0):
        raise InputDataError(where, "bin_width_ms", f"bin width must be > 0, got {bin_width}")


def make_grid(t_start: float, t_stop: float, bin_width: float) -> tuple[float, int]:
    """A grid start on a multiple of ``bin_width`` at or before ``t_start``, and the number of
    bins needed so that ``t_stop`` lies inside the last bin. Times in seconds."""
    check_bin_width(bin_width)
    start = math.floor(t_start / bin_width) * bin_width
    n_bins = int(math.floor((t_stop - start) / bin_width)) + 1
    return start, n_bins


def bin_edges(t_start: float, bin_width: float, n_bins: int) -> np.ndarray:
    """The ``n_bins + 1`` bin edges, ``t_start + k * bin_width`` (seconds)."""
    return t_start + np.arange(n_bins + 1) * bin_width


def bin_index(times: np.ndarray, t_start: float, bin_width: float, n_bins: int) -> np.ndarray:
    """Index of the bin holding each time (int64), or -1 outside the grid.

    O(n): a division gives the bin to within one, and a comparison against the exact edges
    ``t_start + k * bin_width`` fixes floating-point rounding at the edges.
    """
    k = np.floor((times - t_start) / bin_width).astype(np.int64)
    np.clip(k, -1, n_bins, out=k)
    k -= times < t_start + k * bin_width
    k += times >= t_start + (k + 1) * bin_width
    k[(k < 0) | (k >= n_bins)] = -1
    return k


def bin_spikes(times: np.ndarray, unit_offsets: np.ndarray, t_start: float, bin_width: float,
               n_bins: int) -> np.ndarray:
    """Count spikes per bin and unit.

    times: spike times (s), units concatenated; unit ``u`` owns
    ``times[unit_offsets[u]:unit_offsets[u+1]]``. Returns counts, time bins x units (int32).
    Vectorised per unit (bin index + bincount): no Python loop over spikes, and one unit's
    temporaries at a time, which stay small and in cache.
    """
    check_bin_width(bin_width)
    n_units = len(unit_offsets) - 1
    counts = np.empty((n_bins, n_units), dtype=np.int32)
    for u in range(n_units):
        k = bin_index(np.asarray(times[unit_offsets[u]:unit_offsets[u + 1]]), t_start,
                      bin_width, n_bins)
        counts[:, u] = np.bincount(k[k >= 0], minlength=n_bins)
        if n_units >= 100 and (u + 1) % (n_units // 10) == 0:
            log.info("binned %d/%d units", u + 1, n_units)
    return counts


def prefilter_series(timestamps: np.ndarray, data: np.ndarray, bin_width: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The first half of :func:`resample_series`: the series on a regular grid, low-pass
    filtered if it is sampled faster than the bins; ``(timestamps, data)`` in float64.

    Irregular timestamps are first interpolated onto a regular grid at their median step.
    When the series is sampled faster than the bins it is low-pass filtered (zero-phase
    8th-order Butterworth at 80% of the bins' Nyquist frequency) so that faster components do
    not alias; filtering runs on each stretch of finite samples separately.
    """
    check_bin_width(bin_width)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if len(timestamps) < 2:
        return timestamps, data
    steps = np.diff(timestamps)
    step = float(np.median(steps))
    if not np.allclose(steps, step, rtol=1e-3, atol=1e-9):
        regular = timestamps[0] + np.arange(int((timestamps[-1] - timestamps[0]) / step) + 1) * step
        data = np.column_stack([np.interp(regular, timestamps, d, left=np.nan, right=np.nan)
                                for d in data.T])
        timestamps = regular
    if step < bin_width:
        data = _lowpass_finite_stretches(data, cutoff=0.8 * (0.5 / bin_width), fs=1.0 / step)
    return timestamps, data


def bin_centres(first_bins: np.ndarray, n: int, t_start: float, bin_width: float) -> np.ndarray:
    """Centres (s) of bins ``first + 0 .. first + n - 1`` for each ``first`` (rows x n)."""
    k = np.asarray(first_bins, dtype=np.int64)[:, None] + np.arange(n)
    return t_start + (k + 0.5) * bin_width


def sample_series(timestamps: np.ndarray, data: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The second half of :func:`resample_series`: a prefiltered series at ``centres`` (any
    shape), linearly interpolated; NaN outside the series or next to a NaN sample.
    Returns ``centres.shape + (dims,)``."""
    if len(timestamps) < 2:
        return np.full(centres.shape + (data.shape[1],), np.nan)
    flat = centres.ravel()
    # a centre on the first or last sample but for rounding is on it, not outside
    tol = 1e-9 * max(1.0, abs(float(timestamps[-1])))
    flat = np.where((flat > timestamps[-1]) & (flat <= timestamps[-1] + tol), timestamps[-1], flat)
    flat = np.where((flat < timestamps[0]) & (flat >= timestamps[0] - tol), timestamps[0], flat)
    values = np.column_stack([np.interp(flat, timestamps, d, left=np.nan, right=np.nan)
                              for d in data.T])
    return values.reshape(centres.shape + (data.shape[1],))


def resample_series(timestamps: np.ndarray, data: np.ndarray, t_start: float, bin_width: float,
                    n_bins: int) -> np.ndarray:
    """Resample a behaviour-like series (samples x dims) onto the bin grid (bins x dims).

    The value of a bin is the series at the bin's centre, after :func:`prefilter_series`. A
    bin whose centre is not inside a finite stretch is NaN.
    """
    timestamps, data = prefilter_series(timestamps, data, bin_width)
    centres = t_start + (np.arange(n_bins) + 0.5) * bin_width
    return sample_series(timestamps, data, centres)


def _lowpass_finite_stretches(data: np.ndarray, cutoff: float, fs: float) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(8, cutoff, btype="low", fs=fs, output="sos")
    out = np.full_like(data, np.nan)
    finite = np.all(np.isfinite(data), axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):
        stretch = data[start:stop]
        padlen = min(3 * (2 * len(sos) + 1), len(stretch) - 1)
        out[start:stop] = signal.sosfiltfilt(sos, stretch, axis=0, padlen=max(padlen, 0)) \
            if len(stretch) > 1 else stretch
    return out


def window_counts(unit_bins, unit_offsets: np.ndarray, first_bins: np.ndarray, n: int,
                  columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spikes inside windows of ``n`` bins starting at ``first_bins``, as sparse entries
    ``(window, bin in window, column)`` (int32 each), sorted by window.

    unit_bins: per-spike bin indices (sorted within each unit; a dataset or an array), unit
    ``u`` owning ``unit_bins[unit_offsets[u]:unit_offsets[u+1]]`` and going to column
    ``columns[u]``. Reads one unit at a time; memory grows with the spikes in the windows.
    Windows may overlap: a spike in two windows is an entry of each.
    """
    first_bins = np.asarray(first_bins, dtype=np.int64)
    parts = []
    for u in range(len(unit_offsets) - 1):
        bins = np.asarray(unit_bins[unit_offsets[u]:unit_offsets[u + 1]], dtype=np.int64)
        lo = np.searchsorted(bins, first_bins, side="left")
        hi = np.searchsorted(bins, first_bins + n, side="left")
        lengths = hi - lo
        total = int(lengths.sum())
        if total == 0:
            continue
        window = np.repeat(np.arange(len(first_bins), dtype=np.int32), lengths)
        within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rel = (bins[np.repeat(lo, lengths) + within] - np.repeat(first_bins, lengths))
        parts.append((window, rel.astype(np.int32), np.full(total, columns[u], np.int32)))
    if not parts:
        empty = np.zeros(0, np.int32)
        return empty, empty, empty
    window, rel, column = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(window, kind="stable")
    return window[order], rel[order], column[order]


class WindowCounts:
    """Spike counts of windows of ``n`` bins starting at ``first_bins``, as :func:`dense_block`
    reads them a block of windows at a time: counted (:func:`window_counts`) a pass of
    ``per_pass`` windows at a time (more where a block asks for more), so that memory follows
    the spikes of one pass, not of every window (a continuous recording's overlapping segments
    hold every spike, some twice). Blocks are read in window order. ``n_spikes``: the spikes
    counted so far."""

    dtype = np.int32

    def __init__(self, unit_bins, unit_offsets: np.ndarray, first_bins: np.ndarray, n: int,
                 columns: np.ndarray, per_pass: float):
        self.unit_bins, self.unit_offsets = unit_bins, unit_offsets
        self.first_bins = np.asarray(first_bins, dtype=np.int64)
        self.n, self.columns = n, np.asarray(columns)
        self.per_pass = max(1, int(per_pass))
        self.lo = self.hi = 0
        self.entries = None
        self.n_spikes = 0

    def block(self, rows: np.ndarray, n: int) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        first, last = int(rows.min()), int(rows.max()) + 1
        if self.entries is None or first < self.lo or last > self.hi:
            self.lo, self.hi = first, max(last, min(len(self.first_bins), first + self.per_pass))
            self.entries = window_counts(self.unit_bins, self.unit_offsets,
                                         self.first_bins[self.lo:self.hi], self.n, self.columns)
            self.n_spikes += len(self.entries[0])
        return dense_block(self.entries, rows - self.lo, n, len(self.columns))


class WindowValues:
    """Dense windows of values on the bin grid (calcium traces): what :func:`window_values`
    returns, read by :func:`dense_block` a block of windows at a time."""

    dtype = np.float32

    def __init__(self, values, first_bins: np.ndarray, n: int, columns: np.ndarray):
        self.values = values  # bins x units (a dataset or an array)
        self.first_bins = np.asarray(first_bins, dtype=np.int64)
        self.n = n
        self.source_of_column = np.argsort(np.asarray(columns))  # unit feeding each column

    def block(self, rows: np.ndarray, n: int) -> np.ndarray:
        out = np.empty((len(rows), n, len(self.source_of_column)), dtype=np.float32)
        for i, r in enumerate(rows):
            first = int(self.first_bins[r])
            window = np.asarray(self.values[first:first + n], dtype=np.float32)
            out[i] = window[:, self.source_of_column]
        return out


def window_values(values, first_bins: np.ndarray, n: int, columns: np.ndarray) -> WindowValues:
    """The dense windows of ``n`` bins starting at ``first_bins`` of ``values`` (bins x units,
    float, NaN kept), unit ``u`` going to column ``columns[u]``: the counterpart of
    :func:`window_counts` for values that are not spike counts. Nothing is read until
    :func:`dense_block` asks for a block of windows."""
    return WindowValues(values, first_bins, n, columns)


def dense_block(entries, rows: np.ndarray, n: int, n_columns: int) -> np.ndarray:
    """Counts (len(rows) x n x n_columns, int32) of the windows ``rows`` from the sparse
    ``entries`` of :func:`window_counts`; or the values (float32) of those windows of a
    :func:`window_values`."""
    if isinstance(entries, (WindowCounts, WindowValues)):
        return entries.block(rows, n)
    window, rel, column = entries
    out = np.zeros((len(rows), n, n_columns), dtype=np.int32)
    for i, r in enumerate(rows):
        lo, hi = np.searchsorted(window, [r, r + 1])
        if hi > lo:
            flat = np.bincount(rel[lo:hi].astype(np.int64) * n_columns + column[lo:hi],
                               minlength=n * n_columns)
            out[i] = flat.reshape(n, n_columns)
    return out


def bin_session(session_h5, out_h5, bin_width: float | None, bin_frames: int = 1) -> dict:
    """Bin an ingested ``session.h5`` (see :mod:`lfads_core.nwb.ingest`) into ``binned.h5``.

    A traces file (attr ``kind`` = ``traces``, calcium imaging) is averaged into bins of
    ``bin_frames`` frames instead, its bin width read from the file (``bin_width`` does not
    apply): :func:`bin_traces`.

    Output: ``spikes/bins`` (the bin index of every kept spike on the grid, units
    concatenated, int32, or int64 for grids of 2^31 bins or more) and ``spikes/unit_offsets``
    (kept units + 1); attrs ``t_start_s``, ``bin_width_s`` (s) and ``n_bins``;
    ``behavior/{name}`` and ``truth/{name}``: groups of ``timestamps_s`` and ``data`` (samples x
    dims, float64), the series prefiltered for the bin width (:func:`prefilter_series`), with
    attrs ``unit`` and ``columns``; ``units`` (kept units) and ``trials`` tables and
    ``observed_intervals`` copied over. Streams unit by unit. Returns a summary dict.
    """
    import h5py

    from ..fileio import atomic_path, read_table, write_table
    from .imaging import KIND_TRACES, kind_of

    with h5py.File(session_h5, "r") as src:
        kind = kind_of(src.attrs)
    if kind == KIND_TRACES:
        return bin_traces(session_h5, out_h5, bin_frames)
    check_bin_width(bin_width, where=str(session_h5))
    with h5py.File(session_h5, "r") as src:
        t_start, n_bins = make_grid(float(src.attrs["recording_start_s"]),
                                    float(src.attrs["recording_stop_s"]), bin_width)
        offsets = src["spikes/unit_offsets"][()]
        times = src["spikes/times_s"]
        units = read_table(src["units"])
        units = units[units["kept"]].reset_index(drop=True)
        log.info("binning %d spikes of %d units on a grid of %d bins of %g ms", offsets[-1],
                 len(units), n_bins, bin_width * 1e3)
        dtype = np.int32 if n_bins < 2**31 else np.int64
        with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as out:
            n_spikes = int(offsets[-1])
            bins_out = out.create_dataset("spikes/bins", shape=(n_spikes,), dtype=dtype,
                                          chunks=(min(max(n_spikes, 1), 1 << 20),),
                                          maxshape=(None,), compression="gzip",
                                          compression_opts=1, shuffle=True)
            new_offsets = np.zeros_like(offsets)
            for u in range(len(offsets) - 1):
                k = bin_index(times[offsets[u]:offsets[u + 1]], t_start, bin_width, n_bins)
                k = k[k >= 0]
                new_offsets[u + 1] = new_offsets[u] + len(k)
                bins_out[new_offsets[u]:new_offsets[u + 1]] = k
            if new_offsets[-1] < n_spikes:
                bins_out.resize((int(new_offsets[-1]),))
            out.create_dataset("spikes/unit_offsets", data=new_offsets)
            out.attrs.update(t_start_s=t_start, bin_width_s=bin_width, n_bins=n_bins,
                             kind="spikes")
            for key in ("source", "source_sha256", "lfads_core_version"):
                out.attrs[key] = src.attrs[key]
            out.attrs["heldout_column"] = bool(src.attrs.get("heldout_column", True))
            out.attrs["trials_table"] = str(src.attrs.get("trials_table", "trials"))
            for kind in ("behavior", "truth"):
                for name, group in src.get(kind, {}).items():
                    stamps, values = prefilter_series(group["timestamps_s"][()],
                                                      group["data"][()], bin_width)
                    sub = out.create_group(f"{kind}/{name}")
                    sub.create_dataset("timestamps_s", data=stamps)
                    sub.create_dataset("data", data=values, compression="gzip",
                                       compression_opts=1, shuffle=True)
                    sub.attrs["unit"] = group.attrs["unit"]
                    sub.attrs["columns"] = group.attrs["columns"]
            write_table(out.create_group("units"), units)
            write_table(out.create_group("trials"), read_table(src["trials"]))
            out.create_dataset("observed_intervals", data=src["observed_intervals"][()])
    return {"bin_width_s": bin_width, "t_start_s": t_start, "n_bins": n_bins,
            "n_units": int(len(units)), "spikes_in_file": int(offsets[-1]),
            "spikes_binned": int(new_offsets[-1]),
            "spikes_outside_grid": int(offsets[-1] - new_offsets[-1])}


# ------------------------------------------------------------------ calcium imaging

def trace_grid(first_frame_s: float, period_s: float, bin_frames: int, n_frames_span: float
               ) -> tuple[float, float, int]:
    """``(t_start, bin_width, n_bins)`` of the frame grid: bins of ``bin_frames`` frame
    periods, the first frame at the centre of its slot, enough bins for ``n_frames_span``
    frame periods."""
    from ..errors import InputDataError

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
    and observed intervals copied, as :func:`bin_session` writes them."""
    import h5py

    from ..fileio import atomic_path, read_table, write_table
    from .imaging import BLOCK_VALUES, KIND_TRACES, kind_of
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
