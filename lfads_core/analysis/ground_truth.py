"""How well inferred quantities recover a simulation's ground truth (rates, latents, and the
timing of input pulses).

Shapes: trials x time bins x channels. Rates are expected counts per bin.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.linear_model import LinearRegression


def finite_rows(*arrays: np.ndarray) -> np.ndarray | None:
    """Where every one of ``arrays`` (flattened to rows of their last axis) is finite, or None
    where all rows are (then nothing needs leaving out): the padding of stretches of unequal
    length (:mod:`lfads_core.analysis.stretches`) is NaN."""
    ok = None
    for a in arrays:
        rows = np.isfinite(a.reshape(-1, a.shape[-1])).all(axis=1)
        ok = rows if ok is None else ok & rows
    return None if ok is None or ok.all() else ok


def r2_per_channel(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each channel, pooling trials and bins (bins where
    either is not finite, such as the NaN padding of stretches, are left out)."""
    p = predicted.reshape(-1, predicted.shape[-1]).astype(np.float64)
    t = true.reshape(-1, true.shape[-1]).astype(np.float64)
    ok = finite_rows(p, t)
    if ok is not None:
        p, t = p[ok], t[ok]
    residual = np.sum((t - p) ** 2, axis=0)
    total = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    return 1.0 - residual / total


def rate_r2(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean over neurons of the per-neuron R^2 between predicted and true rates."""
    return float(np.mean(r2_per_channel(predicted, true)))


def fit_latent_map(factors_train: np.ndarray, latents_train: np.ndarray,
                   factors_test: np.ndarray) -> np.ndarray:
    """Affine map factors -> true latents fitted (least squares) on the training trials,
    applied to ``factors_test``; bins whose latents or factors are not finite are left out
    of the fit. Shapes: trials x time bins x dims; returns trials x time bins x latents."""
    x = np.asarray(factors_train, dtype=float).reshape(-1, factors_train.shape[-1])
    y = np.asarray(latents_train, dtype=float).reshape(-1, latents_train.shape[-1])
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    if ok.sum() <= x.shape[1]:
        raise ValueError(f"too few finite training bins ({ok.sum()}) for an affine map from "
                         f"{x.shape[1]} factors")
    fit = LinearRegression().fit(x[ok], y[ok])
    test = np.asarray(factors_test, dtype=float)
    flat = test.reshape(-1, test.shape[-1])
    keep = finite_rows(flat)
    if keep is None:
        return fit.predict(flat).reshape(test.shape[:-1] + (y.shape[1],))
    out = np.full((len(flat), y.shape[1]), np.nan)  # NaN bins (padding) stay NaN
    out[keep] = fit.predict(flat[keep])
    return out.reshape(test.shape[:-1] + (y.shape[1],))


def latent_r2(train_factors: np.ndarray, train_latents: np.ndarray,
              test_factors: np.ndarray, test_latents: np.ndarray) -> float:
    """R^2 (mean over latent dimensions) of an affine map from factors to true latents, fitted
    on the training trials and scored on the test trials."""
    predicted = fit_latent_map(train_factors, train_latents, test_factors)
    return float(np.mean(r2_per_channel(predicted, test_latents)))


def smooth_spikes(counts: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian-smoothed spike counts along time (trials x time x channels), same units.
    A trial's trailing bins that are NaN in every channel (the padding of stretches of
    unequal length) stay NaN and the trial is smoothed over its bins before them, as if it
    ended there."""
    counts = counts.astype(np.float64)
    padded = np.isnan(counts).all(axis=2) if counts.size else np.zeros(counts.shape[:2], bool)
    if not padded.any():
        return gaussian_filter1d(counts, sigma_bins, axis=1, mode="nearest")
    out = np.full(counts.shape, np.nan)
    for k in range(len(counts)):
        real = np.flatnonzero(~padded[k])
        n = real[-1] + 1 if real.size else 0
        if n:
            out[k, :n] = gaussian_filter1d(counts[k, :n], sigma_bins, axis=0, mode="nearest")
    return out


def smoothing_baseline_r2(train_counts, train_rates, test_counts, test_rates,
                          sigmas_bins=(1, 2, 4, 6, 8, 12, 16, 24, 32, 48)) -> tuple[float, float]:
    """The Gaussian-smoothed-spikes baseline: the kernel width (bins) best on the training
    trials, and the rate R^2 it reaches on the test trials. Returns ``(r2, sigma_bins)``."""
    best = max(sigmas_bins, key=lambda s: rate_r2(smooth_spikes(train_counts, s), train_rates))
    return rate_r2(smooth_spikes(test_counts, best), test_rates), float(best)


def pulse_bins(pulse_times_s: np.ndarray, window_start_times_s: np.ndarray,
               bin_width_s: float) -> np.ndarray:
    """Bin (within each trial's window) holding each input pulse's onset, as int64.

    ``pulse_times_s`` and ``window_start_times_s`` (trials,) on the recording's clock (s)."""
    offset = (np.asarray(pulse_times_s, float)
              - np.asarray(window_start_times_s, float)) / bin_width_s
    return np.floor(offset + 1e-9).astype(np.int64)


def input_peak_bins(inputs: np.ndarray) -> np.ndarray:
    """Bin of each trial's inferred-input peak, as int64 (trials,).

    Inferred inputs (trials x bins x dims) have an arbitrary sign and scale per dimension and
    may sit on a constant offset, so the peak is taken of their magnitude about the trial's
    baseline: the Euclidean norm over dimensions of the inputs minus their median over the
    trial's bins."""
    x = np.asarray(inputs, dtype=float)
    deviation = x - np.median(x, axis=1, keepdims=True)
    return np.argmax(np.linalg.norm(deviation, axis=2), axis=1).astype(np.int64)


def input_peak_error_bins(inputs: np.ndarray, true_bins: np.ndarray) -> np.ndarray:
    """Signed error (bins, int64, trials,) of each trial's inferred-input peak
    (:func:`input_peak_bins`) against the true input's bin ``true_bins`` (trials,)."""
    return input_peak_bins(inputs) - np.asarray(true_bins, dtype=np.int64)


def fraction_within(errors: np.ndarray, tolerance: int) -> float:
    """Fraction of ``errors`` whose absolute value is at most ``tolerance``."""
    return float(np.mean(np.abs(np.asarray(errors)) <= tolerance))
