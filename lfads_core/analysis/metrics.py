"""Neural Latents Benchmark metrics (Pei et al. 2021, arXiv 2109.04463).

Arrays are trials x time bins x channels; rates are expected counts per bin, spikes integer
counts (NaN entries of the spikes are left out, as NLB masks them).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import r2_score

from .ground_truth import finite_rows, r2_per_channel, smooth_spikes

_RATE_FLOOR = 1e-9


def poisson_log_likelihood(rates: np.ndarray, spikes: np.ndarray) -> float:
    """Sum over entries of log P(spikes | Poisson(rates)) (nats); NaN spikes are ignored."""
    ok = np.isfinite(spikes)
    r = np.maximum(np.asarray(rates, dtype=np.float64)[ok], _RATE_FLOOR)
    k = np.asarray(spikes, dtype=np.float64)[ok]
    return float(np.sum(k * np.log(r) - r - gammaln(k + 1)))


def bits_per_spike(rates: np.ndarray, spikes: np.ndarray) -> float:
    """Log-likelihood gain over each neuron's mean-rate null, in bits per spike.

    The null rate of a neuron is its mean count per bin over all given trials and bins.
    """
    spikes = np.asarray(spikes, dtype=np.float64)
    flat = spikes.reshape(-1, spikes.shape[-1])
    null = np.broadcast_to(np.nanmean(flat, axis=0), spikes.shape)
    n_spikes = np.nansum(spikes)
    if n_spikes == 0:
        return float("nan")
    gain = poisson_log_likelihood(rates, spikes) - poisson_log_likelihood(null, spikes)
    return gain / (n_spikes * np.log(2))


def bits_per_spike_sem(rates: np.ndarray, spikes: np.ndarray, n_bootstrap: int, seed: int) -> float:
    """Standard error of :func:`bits_per_spike` over ``n_bootstrap`` resamplings of whole
    trials with replacement (the null rate refitted on each resample); NaN with fewer than 2
    trials or resamplings. From per-trial, per-neuron sums, so a resample costs trials x
    neurons, not the whole array."""
    n = len(spikes)
    if n < 2 or n_bootstrap < 2:
        return float("nan")
    spikes = np.asarray(spikes, dtype=np.float64)
    ok = np.isfinite(spikes)
    k = np.where(ok, spikes, 0.0)
    r = np.maximum(np.asarray(rates, dtype=np.float64), _RATE_FLOOR)
    model = np.sum(np.where(ok, k * np.log(r) - r, 0.0), axis=1)  # trials x neurons
    counts, bins = k.sum(axis=1), ok.sum(axis=1)
    log_fact = np.sum(np.where(ok, gammaln(k + 1), 0.0), axis=1)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        c, b = counts[idx].sum(axis=0), bins[idx].sum(axis=0)
        if c.sum() == 0:
            continue
        null_rate = np.maximum(c / np.maximum(b, 1), _RATE_FLOOR)
        gain = model[idx].sum() - np.sum(c * np.log(null_rate) - b * null_rate)
        values.append(gain / (c.sum() * np.log(2)))  # the log k! terms cancel
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def co_bps(rates_heldout: np.ndarray, spikes_heldout: np.ndarray) -> float:
    """co-bps: bits per spike of the held-out neurons over the window."""
    return bits_per_spike(rates_heldout, spikes_heldout)


def fp_bps(rates_forward: np.ndarray, spikes_forward: np.ndarray) -> float:
    """fp-bps: bits per spike of all neurons on the forward-prediction bins."""
    return bits_per_spike(rates_forward, spikes_forward)


def velocity_r2(predicted: np.ndarray, true: np.ndarray) -> float:
    """NLB vel R^2: R^2 over trials and bins, variance-weighted over velocity dimensions."""
    p = predicted.reshape(-1, predicted.shape[-1])
    t = true.reshape(-1, true.shape[-1])
    ok = finite_rows(p, t)  # NaN bins (padding of stretches) left out
    if ok is not None:
        p, t = p[ok], t[ok]
    return float(r2_score(t, p, multioutput="variance_weighted"))


def psth_r2(rates: np.ndarray, conditions: np.ndarray, spikes: np.ndarray,
            spike_conditions: np.ndarray, sigma_bins: float) -> float:
    """PSTH R^2: condition-averaged predicted rates against PSTHs of Gaussian-smoothed spikes.

    The PSTHs average ``spikes`` (e.g. every trial of the dataset, as NLB does, so they are
    not dominated by noise) within each condition; the predictions average ``rates`` (the
    evaluated trials) within the same conditions. R^2 per neuron over (conditions x bins),
    averaged over neurons. Conditions absent from ``conditions`` are left out.
    """
    smoothed = smooth_spikes(spikes, sigma_bins)
    labels = np.unique(conditions)
    predicted = np.stack([rates[conditions == c].mean(axis=0) for c in labels])
    target = np.stack([smoothed[spike_conditions == c].mean(axis=0) for c in labels])
    return float(np.nanmean(r2_per_channel(predicted, target)))


def smoothing_baseline(train_heldin: np.ndarray, train_heldout: np.ndarray,
                       test_heldin: np.ndarray, sigma_bins: float, alpha: float = 0.01,
                       max_fit_bins: int = 50_000, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """NLB's spike-smoothing baseline.

    Held-in spikes smoothed with a Gaussian kernel (``sigma_bins``) are the held-in rates; a
    Poisson GLM per held-out neuron (L2 ``alpha``, on the log of the smoothed held-in rates
    with a bias) fitted on the training trials predicts the held-out rates. At most
    ``max_fit_bins`` training bins (a seeded random subset) are used for the fit.
    Returns ``(test_heldin_rates, test_heldout_rates)``, expected counts per bin.
    """
    train_x = smooth_spikes(train_heldin, sigma_bins)
    test_x = smooth_spikes(test_heldin, sigma_bins)
    heldout = np.zeros(test_heldin.shape[:2] + (train_heldout.shape[-1],))
    if train_heldout.shape[-1] == 0:
        return test_x, heldout
    x = np.log(train_x.reshape(-1, train_x.shape[-1]) + 1e-4)
    y = train_heldout.reshape(-1, train_heldout.shape[-1]).astype(np.float64)
    ok = finite_rows(x, y)  # NaN bins (padding of stretches) left out
    if ok is not None:
        x, y = x[ok], y[ok]
    if len(x) > max_fit_bins:
        keep = np.random.default_rng(seed).choice(len(x), max_fit_bins, replace=False)
        x, y = x[keep], y[keep]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    test = (np.log(test_x.reshape(-1, test_x.shape[-1]) + 1e-4) - mean) / std
    keep = finite_rows(test)
    if keep is not None:
        heldout[~keep.reshape(heldout.shape[:2])] = np.nan
    for n in range(y.shape[1]):
        glm = PoissonRegressor(alpha=alpha, max_iter=300).fit((x - mean) / std, y[:, n])
        if keep is None:
            heldout[..., n] = glm.predict(test).reshape(test_heldin.shape[:2])
        else:
            column = heldout[..., n].reshape(-1)
            column[keep] = glm.predict(test[keep])
            heldout[..., n] = column.reshape(test_heldin.shape[:2])
    return test_x, heldout
