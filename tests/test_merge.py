"""Merging overlapping segments of a continuous recording back onto its bin grid."""

from __future__ import annotations

import json
import tracemalloc

import h5py
import numpy as np
import pytest

from lfads_core.merge import (create_merged_dataset, merge_posterior, merge_segments,
                                  segment_weights, start_bins_from_times)


def cut(blocks, n_bins, overlap):
    """Segment starts inside each block [a, b) of observed time: every ``n_bins - overlap``
    bins, the last one flush with the block's end (so it may overlap its neighbour more)."""
    starts = []
    for a, b in blocks:
        if b - a < n_bins:
            continue
        s = list(range(a, b - n_bins + 1, n_bins - overlap))
        if s[-1] != b - n_bins:
            s.append(b - n_bins)
        starts += s
    return np.asarray(starts, dtype=np.int64)


def covered_mask(starts, n_bins, n_grid):
    mask = np.zeros(n_grid, bool)
    for s in starts:
        mask[s:s + n_bins] = True
    return mask


# ------------------------------------------------------------------ weights

@pytest.mark.parametrize("n_bins,overlap", [(1, 0), (10, 0), (10, 1), (10, 4), (10, 9), (200, 40)])
def test_weights_shape_endpoints_symmetry(n_bins, overlap):
    w = segment_weights(n_bins, overlap)
    assert w.shape == (n_bins,) and w.dtype == np.float64
    assert np.all(w > 0) and np.all(w <= 1)
    np.testing.assert_array_equal(w, w[::-1])
    assert w[0] == pytest.approx(min(1.0, 1 / (overlap + 1)))
    if 2 * overlap <= n_bins:
        np.testing.assert_array_equal(w[overlap:n_bins - overlap], 1.0)
        # linear ramp over the overlap, and a neighbour's ramp completes it to 1
        np.testing.assert_allclose(w[:overlap], np.arange(1, overlap + 1) / (overlap + 1))
        np.testing.assert_allclose(w[n_bins - overlap:] + w[:overlap], 1.0)


def test_weights_reject_bad_arguments():
    for n_bins, overlap in [(0, 0), (10, 10), (10, -1)]:
        with pytest.raises(ValueError):
            segment_weights(n_bins, overlap)


# ------------------------------------------------------------------ exact round trip

@pytest.mark.parametrize("overlap", [0, 1, 5, 12, 19])
def test_segments_of_a_signal_merge_back_to_it(overlap):
    rng = np.random.default_rng(overlap)
    n_grid, n_bins, dims = 1000, 20, 3
    signal = rng.normal(size=(n_grid, dims)).astype(np.float32)
    # a block at the grid's start, one at its end, gaps between (one shorter than a segment,
    # one not a multiple of the stride)
    blocks = [(0, 237), (250, 262), (262 + 3, 601), (640, 655), (700, n_grid)]
    starts = cut(blocks, n_bins, overlap)
    assert starts[0] == 0 and starts[-1] + n_bins == n_grid
    segs = np.stack([signal[s:s + n_bins] for s in starts])
    # split the segments into three "splits" in shuffled order, as posterior.h5 holds them
    split = rng.integers(0, 3, len(starts))
    parts = [np.flatnonzero(split == i) for i in range(3)]
    parts = [rng.permutation(p) for p in parts]
    merged = merge_segments([segs[p] for p in parts], [starts[p] for p in parts], n_grid,
                            overlap, block_segments=4)
    mask = covered_mask(starts, n_bins, n_grid)
    assert merged.dtype == np.float32 and merged.shape == (n_grid, dims)
    np.testing.assert_array_equal(merged[mask], signal[mask])  # exact
    assert np.isnan(merged[~mask]).all()
    assert (~mask).sum() > 0


def test_uncovered_grid_edges_and_short_blocks_are_nan():
    n_grid, n_bins = 300, 25
    starts = cut([(10, 100), (120, 130), (150, 290)], n_bins, 5)  # (120, 130): too short
    signal = np.arange(n_grid * 2, dtype=np.float32).reshape(n_grid, 2)
    merged = merge_segments(np.stack([signal[s:s + n_bins] for s in starts]), starts, n_grid, 5)
    mask = covered_mask(starts, n_bins, n_grid)
    assert not mask[:10].any() and not mask[290:].any() and not mask[100:150].any()
    assert np.isnan(merged[~mask]).all()
    np.testing.assert_array_equal(merged[mask], signal[mask])


# ------------------------------------------------------------------ the cross-fade

@pytest.mark.parametrize("overlap", [1, 4, 10])
def test_seam_is_a_linear_cross_fade(overlap):
    n_bins, dims = 30, 2
    a_val = np.array([2.0, -1.0], np.float32)
    b_val = np.array([5.0, 3.0], np.float32)
    segs = np.stack([np.broadcast_to(v, (n_bins, dims)) for v in (a_val, b_val)])
    starts = np.array([0, n_bins - overlap])
    n_grid = 2 * n_bins - overlap
    merged = merge_segments(segs, starts, n_grid, overlap)
    k = np.arange(overlap)[:, None]
    expected = (a_val * (overlap - k) + b_val * (k + 1)) / (overlap + 1)
    np.testing.assert_allclose(merged[n_bins - overlap:n_bins], expected, rtol=1e-6)
    np.testing.assert_array_equal(merged[:n_bins - overlap],
                                  a_val[None].repeat(n_bins - overlap, 0))
    np.testing.assert_array_equal(merged[n_bins:], b_val[None].repeat(n_grid - n_bins, 0))
    # the blend moves monotonically from one segment's value to the other's
    assert np.all(np.diff(merged[n_bins - overlap - 1:n_bins + 1, 0]) > 0)


# ------------------------------------------------------------------ streaming

def random_case(seed, n_grid=3000, n_bins=40, overlap=8, dims=5):
    rng = np.random.default_rng(seed)
    blocks = [(0, 700), (760, 1401), (1500, 1510), (1700, n_grid)]
    starts = cut(blocks, n_bins, overlap)
    segs = rng.normal(size=(len(starts), n_bins, dims)).astype(np.float32)  # disagree on overlaps
    return starts, segs, n_grid, overlap


def test_streaming_to_h5_equals_in_memory(tmp_path):
    starts, segs, n_grid, overlap = random_case(0)
    reference = merge_segments(segs, starts, n_grid, overlap, block_segments=len(segs))
    order = np.random.default_rng(1).permutation(len(segs))  # stored out of start order
    with h5py.File(tmp_path / "segments.h5", "w") as f:
        f.create_dataset("rates", data=segs[order], chunks=(1,) + segs.shape[1:])
    with h5py.File(tmp_path / "segments.h5", "r") as f, \
            h5py.File(tmp_path / "merged.h5", "w") as g:
        for block, chunk in [(1, 7), (3, 64), (50, 1000)]:
            out = create_merged_dataset(g, f"m{block}", n_grid, segs.shape[2], chunk_bins=chunk)
            merge_segments(f["rates"], starts[order], n_grid, overlap, out, block_segments=block)
            np.testing.assert_array_equal(out[()], reference)
            assert out.chunks == (chunk, segs.shape[2]) and out.dtype == np.float32
    # into a plain array, a block at a time
    streamed = np.zeros((n_grid, segs.shape[2]), np.float32)
    merge_segments(segs, starts, n_grid, overlap, streamed, block_segments=2)
    np.testing.assert_array_equal(streamed, reference)


class RecordingOut:
    """An output array that records each write (row slices only)."""

    def __init__(self, n, dims, chunk_rows):
        self.shape, self.dtype, self.chunks = (n, dims), np.float32, (chunk_rows, dims)
        self.data = np.full((n, dims), -7.0, np.float32)
        self.writes = []

    def __setitem__(self, key, value):
        assert isinstance(key, slice) and key.step is None
        self.writes.append((key.start, key.stop))
        self.data[key] = value


def test_output_is_written_in_chunk_aligned_pieces_once():
    starts, segs, n_grid, overlap = random_case(2)
    chunk, block = 64, 3
    out = RecordingOut(n_grid, segs.shape[2], chunk)
    merge_segments(segs, starts, n_grid, overlap, out, block_segments=block)
    np.testing.assert_array_equal(out.data, merge_segments(segs, starts, n_grid, overlap))
    written = np.zeros(n_grid, int)
    for a, b in out.writes:
        assert a % chunk == 0 and (b % chunk == 0 or b == n_grid)
        assert b - a <= (block + 1) * segs.shape[1] + 2 * chunk  # a block, not the recording
        written[a:b] += 1
    np.testing.assert_array_equal(written, 1)  # every bin written once, gaps included
    assert len(out.writes) > n_grid // ((block + 1) * segs.shape[1] + 2 * chunk)


def test_gaps_are_left_to_the_nan_fill(tmp_path):
    n_grid, n_bins, dims = 200_000, 20, 4
    starts = np.concatenate([cut([(0, 400)], n_bins, 4), cut([(190_000, n_grid)], n_bins, 4)])
    segs = np.ones((len(starts), n_bins, dims), np.float32)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        out = create_merged_dataset(f, "rates", n_grid, dims, chunk_bins=256)
        merge_segments(segs, starts, n_grid, 4, out, block_segments=4)
        assert out.id.get_storage_size() < 0.1 * n_grid * dims * 4  # the gap takes no space
        assert np.isnan(out[400:190_000]).all() and (out[:400] == 1).all()
        assert (out[190_000:] == 1).all()


def _peak_traced(**kw):
    tracemalloc.start()
    try:
        merge_segments(**kw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_follows_the_block_not_the_recording(tmp_path):
    n_bins, dims, overlap, block = 50, 32, 10, 8
    peaks = {}
    for n_segments in (200, 4000):
        stride = n_bins - overlap
        n_grid = n_segments * stride + overlap
        starts = np.arange(n_segments, dtype=np.int64) * stride
        with h5py.File(tmp_path / f"s{n_segments}.h5", "w") as f:
            ds = f.create_dataset("rates", (n_segments, n_bins, dims), np.float32,
                                  chunks=(1, n_bins, dims))
            for i in range(0, n_segments, 500):  # written a piece at a time, like the benchmark
                j = min(n_segments, i + 500)
                grid_bins = starts[i:j, None] + np.arange(n_bins)
                ds[i:j] = np.sin(grid_bins / 100.0)[:, :, None] * np.ones(dims, np.float32)
        with h5py.File(tmp_path / f"s{n_segments}.h5", "r") as f, \
                h5py.File(tmp_path / f"m{n_segments}.h5", "w") as g:
            out = create_merged_dataset(g, "rates", n_grid, dims, chunk_bins=128)
            peaks[n_segments] = _peak_traced(
                segments=f["rates"], start_bins=starts, n_grid_bins=n_grid,
                overlap_bins=overlap, out=out, block_segments=block)
            np.testing.assert_allclose(out[-5:, 0], np.sin(
                (starts[-1] + np.arange(n_bins - 5, n_bins)) / 100.0), atol=1e-6)
        recording = n_grid * dims * 4
        block_bytes = block * n_bins * dims * 4
        # a small multiple of the block (block read, float64 buffer, float32 piece to write)
        # and a few integers per segment (the order of the starts and its temporaries: up to
        # 16 eight-byte values, against the 5,120 bytes a segment adds to the recording)
        assert peaks[n_segments] < 8 * block_bytes + 64 * 1024 + 128 * n_segments, peaks
        if n_segments == 4000:
            assert peaks[n_segments] < recording / 10, (peaks, recording)
    # 3,800 more segments: the recording grows by 3800 x 40 bins x 32 dims x 4 bytes (19 MB),
    # the peak by no more than the segments' indices
    assert peaks[4000] - peaks[200] < 128 * 3800, peaks


# ------------------------------------------------------------------ posterior.h5 and times

def test_merge_posterior_from_split_arrays(tmp_path):
    rng = np.random.default_rng(3)
    n_grid, n_bins, overlap, width, t0 = 900, 30, 6, 0.005, 12.5
    rates = np.abs(rng.normal(size=(n_grid, 7))).astype(np.float32)
    factors = rng.normal(size=(n_grid, 4)).astype(np.float32)
    starts = cut([(0, 400), (450, n_grid)], n_bins, overlap)
    split = np.where(rng.random(len(starts)) < 0.7, "train", "valid")
    start_times = {}
    with h5py.File(tmp_path / "posterior.h5", "w") as f:
        for name in ("train", "valid", "test"):
            mine = starts[split == name]
            start_times[name] = (t0 + mine * width).tolist()
            f[f"{name}_rates"] = np.stack([rates[s:s + n_bins] for s in mine]) if len(mine) \
                else np.zeros((0, n_bins, 7), np.float32)
            f[f"{name}_factors"] = np.stack([factors[s:s + n_bins] for s in mine]) if len(mine) \
                else np.zeros((0, n_bins, 4), np.float32)
    (tmp_path / "lfads_input.json").write_text(json.dumps({"window_start_times_s": start_times}))
    meta = json.loads((tmp_path / "lfads_input.json").read_text())
    start_bins = {k: start_bins_from_times(v, t0, width) for k, v in
                  meta["window_start_times_s"].items()}
    shapes = merge_posterior(tmp_path / "posterior.h5", tmp_path / "merged.h5", start_bins,
                             n_grid, overlap, block_segments=3, attrs={"bin_width_s": width})
    assert shapes == {"rates": (n_grid, 7), "factors": (n_grid, 4)}  # no inputs: skipped
    mask = covered_mask(starts, n_bins, n_grid)
    with h5py.File(tmp_path / "merged.h5", "r") as f:
        np.testing.assert_array_equal(f["rates"][()][mask], rates[mask])
        np.testing.assert_array_equal(f["factors"][()][mask], factors[mask])
        assert np.isnan(f["rates"][()][~mask]).all()
        assert f.attrs["overlap_bins"] == overlap and f.attrs["bin_width_s"] == width


def test_start_times_off_the_grid_and_segments_off_the_grid_are_refused():
    np.testing.assert_array_equal(start_bins_from_times([1.0, 1.01, 1.5], 1.0, 0.005),
                                  [0, 2, 100])
    with pytest.raises(ValueError, match="off the grid"):
        start_bins_from_times([1.0025], 1.0, 0.005)
    segs = np.zeros((2, 10, 1), np.float32)
    for starts in ([0, 95], [-1, 10]):
        with pytest.raises(ValueError, match="outside the grid"):
            merge_segments(segs, np.array(starts), 100, 2)
    with pytest.raises(ValueError, match="start_bins"):
        merge_segments(segs, np.array([0]), 100, 2)
    with pytest.raises(ValueError, match="shape"):
        merge_segments(segs, np.array([0, 10]), 100, 2, np.zeros((99, 1), np.float32))
