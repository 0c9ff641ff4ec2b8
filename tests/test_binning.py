import bisect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lfads_core.nwb.binning import bin_edges, bin_index, bin_spikes, make_grid, resample_series
from lfads_core.errors import InputDataError


def naive_counts(spike_lists, t_start, bin_width, n_bins):
    """Reference: every spike looked up one by one against the explicit edges."""
    edges = list(bin_edges(t_start, bin_width, n_bins))
    counts = np.zeros((n_bins, len(spike_lists)), dtype=np.int64)
    for unit, times in enumerate(spike_lists):
        for t in times:
            k = bisect.bisect_right(edges, t) - 1  # edges[k] <= t < edges[k + 1]
            if 0 <= k < n_bins:
                counts[k, unit] += 1
    return counts


def as_flat(spike_lists):
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in spike_lists])]).astype(np.int64)
    times = np.concatenate([np.asarray(s, float) for s in spike_lists]) if offsets[-1] else \
        np.zeros(0)
    return times, offsets


spike_times = st.lists(st.floats(min_value=-0.05, max_value=1.05, allow_nan=False), max_size=60)


@settings(max_examples=200, deadline=None)
@given(units=st.lists(spike_times, min_size=1, max_size=5),
       bin_width=st.sampled_from([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3]),
       t_start=st.sampled_from([0.0, -0.01, 0.1]),
       on_edges=st.booleans())
def test_bin_spikes_matches_naive_reference(units, bin_width, t_start, on_edges):
    n_bins = int(round(1.0 / bin_width))
    if on_edges:  # put spikes exactly on bin edges, where rounding bites
        edges = bin_edges(t_start, bin_width, n_bins)
        units = [list(edges[np.arange(len(u)) % (n_bins + 1)]) for u in units]
    units = [sorted(u) for u in units]
    times, offsets = as_flat(units)
    got = bin_spikes(times, offsets, t_start, bin_width, n_bins)
    np.testing.assert_array_equal(got, naive_counts(units, t_start, bin_width, n_bins))


def test_each_spike_in_exactly_one_bin_with_left_closed_edges():
    edges = bin_edges(0.0, 0.005, 4)
    times = np.array([edges[0], edges[1], np.nextafter(edges[1], 0), edges[4]])
    k = bin_index(times, 0.0, 0.005, 4)
    assert k.tolist() == [0, 1, 0, -1]  # the right edge of the grid is outside


def test_spikes_outside_the_grid_are_not_counted():
    rng = np.random.default_rng(0)
    units = [np.sort(rng.uniform(-1, 3, rng.integers(0, 200))) for _ in range(9)]
    times, offsets = as_flat(units)
    counts = bin_spikes(times, offsets, 0.0, 0.01, 200)
    assert counts.sum(axis=0).tolist() == [int(np.sum((u >= 0) & (u < 2.0))) for u in units]


def test_make_grid_covers_the_last_time():
    start, n = make_grid(0.0, 79.9, 0.005)
    assert start == 0.0 and start + n * 0.005 > 79.9 and start + (n - 1) * 0.005 <= 79.9
    start, n = make_grid(0.0123, 1.0, 0.005)
    assert start == pytest.approx(0.010)


@pytest.mark.parametrize("width", [0.0, -0.005, float("nan")])
def test_bin_width_must_be_positive(width):
    with pytest.raises(InputDataError, match="bin_width_ms"):
        bin_spikes(np.zeros(1), np.array([0, 1]), 0.0, width, 10)


def test_resample_removes_frequencies_above_the_bins_nyquist():
    fs, width = 1000.0, 0.02  # 1 kHz behaviour onto 20 ms bins: Nyquist 25 Hz
    t = np.arange(0, 20, 1 / fs)
    slow = np.sin(2 * np.pi * 2 * t)          # 2 Hz: must pass
    fast = np.sin(2 * np.pi * 49 * t)         # 49 Hz: would alias to 1 Hz without filtering
    n_bins = 1000
    out = resample_series(t, np.column_stack([slow + fast]), 0.0, width, n_bins)[:, 0]
    centres = (np.arange(n_bins) + 0.5) * width
    inner = slice(50, -50)
    expected = np.sin(2 * np.pi * 2 * centres)
    assert np.max(np.abs(out[inner] - expected[inner])) < 0.02
    naive = np.interp(centres, t, slow + fast)  # what plain sampling gives
    assert np.max(np.abs(naive[inner] - expected[inner])) > 0.5


def test_resample_keeps_nan_gaps_and_handles_upsampling():
    t = np.arange(0, 2, 0.001)
    data = np.sin(2 * np.pi * t)[:, None].copy()
    data[(t > 0.9) & (t < 1.1)] = np.nan
    out = resample_series(t, data, 0.0, 0.005, 400)[:, 0]
    centres = (np.arange(400) + 0.5) * 0.005
    gap = (centres > 0.9) & (centres < 1.1)
    assert np.all(np.isnan(out[gap]))
    assert np.all(np.isfinite(out[(centres > 0.2) & (centres < 0.85)]))
    coarse_t = np.arange(0, 2, 0.01)  # slower than the bins: plain interpolation
    up = resample_series(coarse_t, np.sin(2 * np.pi * coarse_t), 0.0, 0.005, 390)[:, 0]
    np.testing.assert_allclose(up, np.sin(2 * np.pi * centres[:390]), atol=2e-3)


@settings(max_examples=100, deadline=None)
@given(units=st.lists(st.lists(st.integers(0, 199), max_size=40), min_size=1, max_size=4),
       firsts=st.lists(st.integers(-5, 195), min_size=1, max_size=6),
       n=st.integers(1, 30))
def test_window_counts_equal_a_dense_count_matrix_cut_at_the_windows(units, firsts, n):
    """The sparse path (per-spike bin indices -> counts of each window) equals cutting the
    dense bins x units matrix, overlapping windows and windows past the grid's ends included."""
    from lfads_core.nwb.binning import dense_block, window_counts

    bins = [np.sort(np.asarray(u, dtype=np.int64)) for u in units]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in bins])]).astype(np.int64)
    flat = np.concatenate(bins) if offsets[-1] else np.zeros(0, np.int64)
    dense = np.zeros((200 + 40, len(bins)), dtype=np.int32)
    for u, b in enumerate(bins):
        np.add.at(dense, (b + 5, u), 1)  # shifted by 5 so that windows may start before 0
    columns = np.arange(len(bins))[::-1]  # column order differs from unit order
    entries = window_counts(flat, offsets, np.asarray(firsts), n, columns)
    got = dense_block(entries, np.arange(len(firsts)), n, len(bins))
    for i, first in enumerate(firsts):
        np.testing.assert_array_equal(got[i][:, columns], dense[first + 5:first + 5 + n])


def test_binned_file_is_sparse_and_independent_of_the_window(small_recording, tmp_path):
    import h5py

    from lfads_core.nwb.binning import bin_session
    from lfads_core.nwb.ingest import IngestSettings, ingest_nwb

    ingest_nwb(small_recording, tmp_path / "s.h5", IngestSettings(behavior=["hand_vel"]))
    summary = bin_session(tmp_path / "s.h5", tmp_path / "b.h5", 0.001)
    with h5py.File(tmp_path / "s.h5", "r") as s, h5py.File(tmp_path / "b.h5", "r") as b:
        times = s["spikes/times_s"][()]
        assert "counts" not in b and b["spikes/bins"].dtype == np.int32
        np.testing.assert_array_equal(b["spikes/bins"][()], np.floor(times / 0.001 + 1e-9))
        np.testing.assert_array_equal(b["spikes/unit_offsets"][()], s["spikes/unit_offsets"][()])
        # behaviour stays at its own 1 kHz samples (not upsampled onto the grid)
        assert b["behavior/hand_vel/data"].shape == s["behavior/hand_vel/data"].shape
    assert summary["spikes_binned"] == len(times) and summary["spikes_outside_grid"] == 0
