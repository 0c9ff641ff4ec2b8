"""How well inferred quantities recover a simulation's ground truth (rates, latents, and the
timing of input pulses).

Shapes: trials x time bins x channels. Rates are expected counts per bin.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.linear_model import LinearRegression


def r2_per_channel(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each channel, pooling trials and bins."""
    p = predicted.reshape(-1, predicted.shape[-1]).astype(np.float64)
    t = true.reshape(-1, true.shape[-1]).astype(np.float64)
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
    return fit.predict(test.reshape(-1, test.shape[-1])).reshape(
        test.shape[:-1] + (y.shape[1],))


def latent_r2(train_factors: np.ndarray, train_latents: np.ndarray,
              test_factors: np.ndarray, test_latents: np.ndarray) -> float:
    """R^2 (mean over latent dimensions) of an affine map from factors to true latents, fitted
    on the training trials and scored on the test trials."""
    predicted = fit_latent_map(train_factors, train_latents, test_factors)
    return float(np.mean(r2_per_channel(predicted, test_latents)))


def smooth_spikes(counts: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian-smoothed spike counts along time (trials x time x channels), same units."""
    return gaussian_filter1d(counts.astype(np.float64), sigma_bins, axis=1, mode="nearest")


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
