"""Spike binning and behaviour resampling onto one regular time grid.

Edge convention: bin ``k`` covers the half-open interval ``[edges[k], edges[k+1])`` with
``edges[k] = t_start + k * bin_width`` (seconds). Every spike is counted in exactly one bin; a
spike exactly on an edge belongs to the bin that starts there. Spikes outside
``[edges[0], edges[-1])`` are not counted.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import signal

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


def resample_series(timestamps: np.ndarray, data: np.ndarray, t_start: float, bin_width: float,
                    n_bins: int) -> np.ndarray:
    """Resample a behaviour-like series (samples x dims) onto the bin grid (bins x dims).

    The value of a bin is the series at the bin's centre. When the series is sampled faster
    than the bins, it is first low-pass filtered (zero-phase 8th-order Butterworth at 80% of
    the bins' Nyquist frequency) so faster components do not alias. Filtering runs on each
    stretch of finite samples separately; a bin whose centre is not inside a finite stretch is
    NaN. Irregular timestamps are first interpolated onto a regular grid at their median step.
    """
    check_bin_width(bin_width)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    centres = t_start + (np.arange(n_bins) + 0.5) * bin_width
    if len(timestamps) < 2:
        return np.full((n_bins, data.shape[1]), np.nan)
    steps = np.diff(timestamps)
    step = float(np.median(steps))
    if not np.allclose(steps, step, rtol=1e-3, atol=1e-9):
        regular = timestamps[0] + np.arange(int((timestamps[-1] - timestamps[0]) / step) + 1) * step
        data = np.column_stack([np.interp(regular, timestamps, d, left=np.nan, right=np.nan)
                                for d in data.T])
        timestamps = regular
    if step < bin_width:
        data = _lowpass_finite_stretches(data, cutoff=0.8 * (0.5 / bin_width), fs=1.0 / step)
    return np.column_stack([np.interp(centres, timestamps, d, left=np.nan, right=np.nan)
                            for d in data.T])


def _lowpass_finite_stretches(data: np.ndarray, cutoff: float, fs: float) -> np.ndarray:
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


def bin_session(session_h5, out_h5, bin_width: float) -> dict:
    """Bin an ingested ``session.h5`` (see :mod:`lfads_core.nwb.ingest`) into ``binned.h5``.

    Output: ``counts`` (time bins x kept units, int32), attrs ``t_start`` and ``bin_width``
    (s); ``behavior/{name}`` and ``truth/{name}`` (bins x dims, float32, NaN where unknown)
    with attrs ``unit`` and ``columns``; ``units`` (kept units) and ``trials`` tables and
    ``valid_intervals`` copied over. Returns a summary dict.
    """
    import h5py

    from ..fileio import atomic_path, read_table, write_table

    check_bin_width(bin_width, where=str(session_h5))
    with h5py.File(session_h5, "r") as src:
        t_start, n_bins = make_grid(float(src.attrs["recording_start"]),
                                    float(src.attrs["recording_stop"]), bin_width)
        offsets = src["spikes/unit_offsets"][()]
        units = read_table(src["units"])
        units = units[units["kept"]].reset_index(drop=True)
        log.info("binning %d spikes of %d units into %d bins of %g ms", offsets[-1],
                 len(units), n_bins, bin_width * 1e3)
        counts = bin_spikes(src["spikes/times"][()], offsets, t_start, bin_width, n_bins)
        with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as out:
            out.create_dataset("counts", data=counts, compression="gzip", compression_opts=1,
                               chunks=(min(n_bins, 4096), counts.shape[1]))
            out.attrs.update(t_start=t_start, bin_width=bin_width, n_bins=n_bins)
            for key in ("source", "source_sha256", "lfads_core_version"):
                out.attrs[key] = src.attrs[key]
            for kind in ("behavior", "truth"):
                for name, group in src.get(kind, {}).items():
                    values = resample_series(group["timestamps"][()], group["data"][()],
                                             t_start, bin_width, n_bins)
                    ds = out.create_dataset(f"{kind}/{name}", data=values.astype(np.float32),
                                            compression="gzip", compression_opts=1, shuffle=True)
                    ds.attrs["unit"] = group.attrs["unit"]
                    ds.attrs["columns"] = group.attrs["columns"]
            write_table(out.create_group("units"), units)
            write_table(out.create_group("trials"), read_table(src["trials"]))
            out.create_dataset("valid_intervals", data=src["valid_intervals"][()])
    binned_spikes = int(counts.sum())
    return {"bin_width_s": bin_width, "t_start_s": t_start, "n_bins": n_bins,
            "n_units": int(counts.shape[1]), "spikes_in_file": int(offsets[-1]),
            "spikes_binned": binned_spikes}
