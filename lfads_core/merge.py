"""Merging overlapping segments of a continuous recording back onto its bin grid.

A continuous recording (no trials) is cut into segments: windows of ``n_bins`` bins that start
at integer bins of the recording's grid (bin ``b`` is ``[t_start_s + b w, t_start_s + (b+1) w)``),
overlap their neighbours by ``overlap_bins`` and lie inside blocks of observed time. LFADS's
output for them (rates, factors, inferred inputs: segments x n_bins x dims) is merged back
here into one bins x dims array on the grid, as LFADS's chop-and-merge does: where segments
overlap, a linear cross-fade from one segment to the next.

    merged[b] = sum_s w(b - start_s) x_s[b - start_s] / sum_s w(b - start_s)

over the segments ``s`` that cover bin ``b``, with :func:`segment_weights` ``w``; bins no
segment covers are NaN. With the trapezoid weights, two neighbours that overlap by
``overlap_bins`` blend linearly over the overlap (their weights sum to 1 there), and a bin only
one segment covers (a block's outer edges, segments that do not overlap) keeps that segment's
value exactly.

:func:`merge_segments` streams: it reads the segments in order of start bin, a block of
segments at a time, from an h5py dataset or any array indexed by segment (one per split: the
splits merge onto the same grid), accumulates them into a buffer a block of segments long and
writes each finished stretch of bins to the output (an h5py dataset from
:func:`create_merged_dataset`, bins x dims, chunked, float32) as soon as no later segment can
reach it. Memory follows the block, not the recording. Without ``out`` it returns the merged
array (the same code, for small recordings). :func:`merge_posterior` merges the per-split
arrays of a ``posterior.h5`` into an HDF5 file.

numpy and h5py only (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from .fileio import atomic_path

#: target size of one block of segments read at a time, when ``block_segments`` is not given
BLOCK_BYTES = 32 * 2**20
#: target size of one chunk of the output dataset
CHUNK_BYTES = 2**20


def segment_weights(n_bins: int, overlap_bins: int) -> np.ndarray:
    """Per-bin weights of one segment: a trapezoid, float64, shape ``(n_bins,)``.

    ``w[j] = min(1, (j + 1) / (overlap_bins + 1), (n_bins - j) / (overlap_bins + 1))``

    The weights rise linearly over the first ``overlap_bins`` bins, from ``1 / (overlap + 1)``
    to ``overlap / (overlap + 1)``, are 1 in the middle and fall symmetrically over the last
    ``overlap_bins`` bins (``w[j] == w[n_bins - 1 - j]``). They are never 0, so a bin that one
    segment alone covers keeps its value. Where two segments overlap by exactly
    ``overlap_bins``, the k-th bin of the overlap (k = 0 .. overlap - 1) gets weight
    ``(overlap - k) / (overlap + 1)`` from the earlier segment and ``(k + 1) / (overlap + 1)``
    from the later one: they sum to 1, a linear cross-fade. ``overlap_bins`` 0 gives all ones.
    """
    n_bins, overlap_bins = int(n_bins), int(overlap_bins)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if not 0 <= overlap_bins < n_bins:
        raise ValueError(f"overlap_bins must be in [0, n_bins) = [0, {n_bins}), got "
                         f"{overlap_bins}")
    j = np.arange(n_bins, dtype=np.float64)
    ramp = np.minimum(j + 1, n_bins - j) / (overlap_bins + 1)
    return np.minimum(ramp, 1.0)


def start_bins_from_times(start_times_s, t_start_s: float, bin_width_s: float,
                          tolerance: float = 1e-6) -> np.ndarray:
    """The grid bins (int64) where segments starting at ``start_times_s`` (s) start.

    Raises ``ValueError`` if a start is off the grid by more than ``tolerance`` bins."""
    if not bin_width_s > 0:
        raise ValueError(f"bin_width_s must be positive, got {bin_width_s}")
    position = (np.asarray(start_times_s, dtype=np.float64) - float(t_start_s)) / bin_width_s
    bins = np.rint(position)
    off = np.abs(position - bins)
    if off.size and off.max() > tolerance:
        worst = int(np.argmax(off))
        raise ValueError(f"segment {worst} starts at {float(np.ravel(start_times_s)[worst])} s, "
                         f"{off[worst]:.3g} bins off the grid (start {t_start_s} s, bin width "
                         f"{bin_width_s} s)")
    return bins.astype(np.int64)


def chunk_bins_for(dims: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows of a float32 output chunk of about ``chunk_bytes`` for ``dims`` columns."""
    return max(1, int(chunk_bytes) // (4 * max(1, int(dims))))


def create_merged_dataset(group: h5py.Group, name: str, n_grid_bins: int, dims: int,
                          chunk_bins: int | None = None, compression=None,
                          **attrs) -> h5py.Dataset:
    """An empty bins x dims float32 dataset for :func:`merge_segments`, chunked by rows
    (``chunk_bins`` rows a chunk, by default about 1 MB) and filled with NaN: bins no segment
    covers are never written, so a gap takes no space in the file."""
    chunk = int(chunk_bins) if chunk_bins else chunk_bins_for(dims)
    shape = (int(n_grid_bins), int(dims))
    chunks = (max(1, min(chunk, shape[0])), max(1, shape[1])) if shape[0] else None
    ds = group.create_dataset(name, shape=shape, dtype=np.float32, chunks=chunks,
                              fillvalue=np.float32(np.nan), compression=compression)
    for key, value in attrs.items():
        ds.attrs[key] = value
    return ds


class SegmentView:
    """The first ``n_bins`` bins of each segment of ``source`` (segments x bins x dims, an h5py
    dataset or array), times ``scale``: what :func:`merge_segments` reads to merge only the
    segments' windows (not their forward-prediction bins), or rates in Hz. Reads go to
    ``source`` row block by row block, so the view holds nothing itself."""

    def __init__(self, source, n_bins: int | None = None, scale: float = 1.0):
        self.source, self.scale = source, float(scale)
        self.n_bins = int(source.shape[1] if n_bins is None else n_bins)
        if not 0 < self.n_bins <= source.shape[1]:
            raise ValueError(f"n_bins must be in [1, {source.shape[1]}], got {n_bins}")
        self.shape = (source.shape[0], self.n_bins) + tuple(source.shape[2:])

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        values = np.asarray(self.source[rows])[:, :self.n_bins]
        return values * np.float32(self.scale) if self.scale != 1.0 else values


def covered_runs(start_bins, n_bins: int) -> np.ndarray:
    """The runs of bins that segments of ``n_bins`` bins starting at ``start_bins`` cover, as
    ``[first, stop)`` rows (k x 2, int64, in time order): one run per stretch of overlapping
    or touching segments; bins between runs are covered by no segment."""
    start = np.sort(np.asarray(start_bins, dtype=np.int64))
    if start.size == 0:
        return np.zeros((0, 2), np.int64)
    stop = np.maximum.accumulate(start + int(n_bins))
    new = np.concatenate([[True], start[1:] > stop[:-1]])
    firsts = start[new]
    stops = np.append(stop[np.flatnonzero(new)[1:] - 1], stop[-1])
    return np.column_stack([firsts, stops]).astype(np.int64)


def _as_list(segments, start_bins):
    """``segments``/``start_bins`` as parallel lists (one entry per source, e.g. split)."""
    if isinstance(segments, (list, tuple)):
        if not isinstance(start_bins, (list, tuple)) or len(start_bins) != len(segments):
            raise ValueError("with a list of segment arrays, start_bins must be a list of the "
                             "same length (one array of start bins per segment array)")
        return list(segments), [np.asarray(s) for s in start_bins]
    return [segments], [np.asarray(start_bins)]


def _read_rows(source, rows: np.ndarray) -> np.ndarray:
    """``source[rows]`` as a float array, reading a slice where the rows are consecutive."""
    if rows.size == 0:
        return np.empty((0,) + tuple(source.shape[1:]), np.float32)
    if np.all(np.diff(rows) == 1):
        return np.asarray(source[int(rows[0]):int(rows[-1]) + 1])
    ordered = np.unique(rows)  # h5py wants increasing indices
    values = np.asarray(source[ordered.tolist()])
    return values[np.searchsorted(ordered, rows)]


def _has_nan_fill(out) -> bool:
    fill = getattr(out, "fillvalue", None)
    try:
        return fill is not None and bool(np.isnan(fill))
    except TypeError:
        return False


def merge_segments(segments, start_bins, n_grid_bins: int, overlap_bins: int, out=None, *,
                   block_segments: int | None = None, weights: np.ndarray | None = None):
    """Merge segments onto the bin grid (module docstring: the formula); stream to ``out``.

    segments: an array-like of segments x n_bins x dims indexed by segment (an h5py dataset, a
        numpy array, ...), or a list of them (e.g. one per split; same n_bins and dims).
    start_bins: each segment's first bin on the grid (ints), or a list of them parallel to
        ``segments``. Segments are merged in order of start bin, whatever their order in the
        arrays; they may overlap each other by any amount.
    n_grid_bins: the grid's length; every segment must lie inside ``[0, n_grid_bins)``.
    overlap_bins: the overlap the weights ramp over (:func:`segment_weights`).
    out: where the merged bins go: an h5py dataset or array of n_grid_bins x dims (written
        by row slices, a block at a time, chunk-aligned where ``out`` has row chunks; bins no
        segment covers are set to NaN, or left to an h5py dataset's NaN fill value). ``None``:
        a new float32 numpy array, returned.
    block_segments: segments read and held at a time (by default about 32 MB of them); the
        memory used is about that block, a float64 buffer of ``block_segments x n_bins x dims``
        and an index per segment, whatever the recording's length.
    weights: per-bin weights of a segment instead of :func:`segment_weights`.

    Returns ``out`` (the new array where ``out`` is None).
    """
    sources, starts = _as_list(segments, start_bins)
    if not sources:
        raise ValueError("no segments to merge")
    shapes = [tuple(s.shape) for s in sources]
    for shape, st in zip(shapes, starts):
        if len(shape) != 3:
            raise ValueError(f"segments must be segments x bins x dims, got shape {shape}")
        if st.ndim != 1 or len(st) != shape[0]:
            raise ValueError(f"{shape[0]} segments but start_bins of shape {st.shape}")
        if st.size and not (np.issubdtype(st.dtype, np.integer)
                            or np.array_equal(st, np.round(st))):
            raise ValueError("start_bins must be whole bins")
    if len({s[1:] for s in shapes}) != 1:
        raise ValueError(f"segment arrays differ in bins x dims: {[s[1:] for s in shapes]}")
    n_bins, dims = shapes[0][1], shapes[0][2]
    n_grid_bins = int(n_grid_bins)
    w = segment_weights(n_bins, overlap_bins) if weights is None else \
        np.asarray(weights, dtype=np.float64)
    if w.shape != (n_bins,) or not np.all(w > 0):
        raise ValueError(f"weights must be {n_bins} positive numbers")

    # every segment: (start, source, row), in order of start (stable: sources, then rows)
    start = np.concatenate([st.astype(np.int64) for st in starts])
    source = np.concatenate([np.full(len(st), i, np.int32) for i, st in enumerate(starts)])
    row = np.concatenate([np.arange(len(st), dtype=np.int64) for st in starts])
    if start.size and (start.min() < 0 or start.max() + n_bins > n_grid_bins):
        bad = int(np.argmax((start < 0) | (start + n_bins > n_grid_bins)))
        raise ValueError(f"segment {row[bad]} of array {source[bad]} covers bins "
                         f"[{start[bad]}, {start[bad] + n_bins}), outside the grid "
                         f"[0, {n_grid_bins})")
    order = np.argsort(start, kind="stable")
    start, source, row = start[order], source[order], row[order]
    del order

    if out is None:
        out = np.empty((n_grid_bins, dims), np.float32)
    if tuple(out.shape) != (n_grid_bins, dims):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {(n_grid_bins, dims)}")
    chunks = getattr(out, "chunks", None)
    align = int(chunks[0]) if chunks else 1
    skip_nan = _has_nan_fill(out)
    if block_segments is None:
        block_segments = max(1, BLOCK_BYTES // max(1, n_bins * dims * 4))
    block_segments = int(block_segments)
    if block_segments < 1:
        raise ValueError(f"block_segments must be at least 1, got {block_segments}")
    block_segments = min(block_segments, max(1, len(start)))
    # accumulator over grid bins [lo, lo + capacity): weighted sums and summed weights;
    # a multiple of the output's row chunks, so that every write but the last is chunk-aligned
    capacity = -(-(min(block_segments * n_bins, n_grid_bins) + n_bins + align) // align) * align
    nan_rows = align * max(1, CHUNK_BYTES // max(1, 4 * dims * align))  # NaN rows per write
    num = np.zeros((capacity, dims), np.float64)
    den = np.zeros(capacity, np.float64)
    term = np.empty((n_bins, dims), np.float64)
    lo = 0  # grid bin of num[0]: bins below it are written
    hi = 0  # end of the bins the segments added so far cover

    def flush(upto: int) -> None:
        """Write bins [lo, upto), which no later segment reaches, and start the buffer there."""
        nonlocal lo
        n = min(upto, lo + capacity) - lo
        if n <= 0:
            return
        d = den[:n]
        if not (skip_nan and not d.any()):
            np.divide(num[:n], d[:, None], out=num[:n], where=d[:, None] > 0)
            merged = num[:n].astype(np.float32)
            merged[d == 0] = np.nan
            out[lo:lo + n] = merged
            del merged
        if not skip_nan:  # bins beyond the buffer: a gap no segment covers
            for i in range(lo + n, upto, nan_rows):
                j = min(upto, i + nan_rows)
                out[i:j] = np.full((j - i, dims), np.nan, np.float32)
        keep = max(0, hi - upto)  # covered bins beyond upto stay in the buffer
        if keep:
            num[:keep] = num[n:n + keep]
            den[:keep] = den[n:n + keep]
        num[keep:] = 0.0
        den[keep:] = 0.0
        lo = upto

    n_segments = len(start)
    for first in range(0, n_segments, block_segments):
        last = min(n_segments, first + block_segments)
        in_block = np.unique(source[first:last])
        if len(in_block) == 1:
            block = _read_rows(sources[in_block[0]], row[first:last])
        else:
            block = np.empty((last - first, n_bins, dims), np.float32)
            for i in in_block:
                mine = np.flatnonzero(source[first:last] == i)
                block[mine] = _read_rows(sources[i], row[first:last][mine])
        for k in range(last - first):
            a = int(start[first + k])
            if a + n_bins > lo + capacity:  # no room: bins below a are final
                flush(max(lo, a // align * align))
            np.multiply(block[k], w[:, None], out=term)
            num[a - lo:a - lo + n_bins] += term
            den[a - lo:a - lo + n_bins] += w
            hi = max(hi, a + n_bins)
        del block
    flush(n_grid_bins)
    return out


def merge_posterior(posterior_h5: str | Path, out_h5: str | Path, start_bins: dict,
                    n_grid_bins: int, overlap_bins: int, *, keys: Sequence[str] = ("rates",
                    "factors", "inputs"), splits: Sequence[str] = ("train", "valid", "test"),
                    block_segments: int | None = None, compression=None,
                    attrs: dict | None = None, window_bins: int | None = None,
                    scales: dict | None = None, names: dict | None = None
                    ) -> dict[str, tuple[int, int]]:
    """Merge ``posterior.h5``'s per-split segment arrays onto the grid, into ``out_h5``.

    posterior_h5: ``{split}_{key}`` arrays (segments x n_bins x dims) in split order.
    start_bins: split -> the grid bin where each of its segments starts, in the same order
        (:func:`start_bins_from_times` turns alignment's ``window_start_times_s`` into them).
    out_h5: written (through a temporary file) with one dataset per key, n_grid_bins x dims
        float32 (NaN where no segment covers a bin), chunked, plus ``attrs``; every split's
        segments merge together.
    window_bins: merge only each segment's first ``window_bins`` bins (its window, without
        the forward-prediction bins); None: every bin.
    scales: key -> factor the values are multiplied by (e.g. ``1 / bin width`` for rates in
        Hz); names: key -> the dataset's name in ``out_h5`` (default: the key).
    Returns key -> shape written; keys absent from every split are skipped.
    """
    shapes = {}
    with h5py.File(posterior_h5, "r") as post, atomic_path(out_h5) as tmp, \
            h5py.File(tmp, "w") as f:
        for key in keys:
            present = [s for s in splits if f"{s}_{key}" in post and len(post[f"{s}_{key}"])]
            if not present:
                continue
            scale = (scales or {}).get(key, 1.0)
            arrays = [SegmentView(post[f"{s}_{key}"], window_bins, scale) for s in present]
            starts = [np.asarray(start_bins[s], dtype=np.int64) for s in present]
            dims = arrays[0].shape[2]
            ds = create_merged_dataset(f, (names or {}).get(key, key), n_grid_bins, dims,
                                       compression=compression)
            merge_segments(arrays, starts, n_grid_bins, overlap_bins, ds,
                           block_segments=block_segments)
            shapes[key] = tuple(ds.shape)
        f.attrs["overlap_bins"] = int(overlap_bins)
        f.attrs["description"] = ("segments merged onto the recording's bin grid: weighted "
                                  "mean of the segments covering each bin (linear cross-fade "
                                  "over overlaps), NaN where none does")
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return shapes
