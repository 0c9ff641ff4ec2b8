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


# ------------------------------------------------------------------ calcium traces
#
# Held-out ROI prediction for traces (ROI values per bin, NaN where a frame was not observed).
# A method predicts the mean of each entry; the likelihood family is the model's (gamma, zig,
# gaussian), its other parameters constants per ROI fitted on the training trials:
#
# - gamma: shape k = 1 / mean((x / m - 1)^2) over the ROI's observed training entries (the
#   method-of-moments shape of x given the predicted means m; clipped to [0.01, 100]); values
#   below TRACE_FLOOR are read as TRACE_FLOOR, as the model reads them.
# - gaussian: variance = mean((x - m)^2) over the ROI's observed training entries.
# - zig: s_min = the ROI's smallest positive training value (as the model's); an entry is an
#   event where x > s_min; event sizes x - s_min ~ Gamma with the mean and method-of-moments
#   shape of the ROI's training event sizes; the event probability is
#   q = m / (s_min + event mean) (clipped to [0.001, 0.999]), so that the mean is m.
#
# The null of a ROI is the family fitted to it as a constant on the training trials: gamma
# with the ROI's training mean and method-of-moments shape, gaussian with its mean and
# variance, zig with its event fraction and event sizes. heldout_ll_gain is the summed
# log-likelihood of the method minus that of the null, over the observed (non-NaN) entries
# of the held-out ROIs, in bits per observed entry. A ratio of densities of one family, it
# does not depend on the traces' unit.

TRACE_LIKELIHOODS = ("gamma", "zig", "gaussian")
TRACE_FLOOR = 1e-6  # as the model's likelihoods (lfads_core.lfads.model.likelihoods.FLOOR)
SHAPE_RANGE = (1e-2, 1e2)
Q_RANGE = (1e-3, 1 - 1e-3)


def _per_roi(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])


def _nanmean0(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok, x, 0.0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)


def _moments_shape(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    shape = np.where(var > 0, mean ** 2 / np.maximum(var, 1e-300), 1.0)
    return np.clip(shape, *SHAPE_RANGE)


def _zig_events(train_values: np.ndarray):
    """Per ROI of the training values: s_min, event fraction, event-size mean and shape."""
    x = _per_roi(train_values)
    ok = np.isfinite(x)
    s_min = np.min(np.where(ok & (x > 0), x, np.inf), axis=0)
    s_min = np.where(np.isinf(s_min), 0.0, s_min)
    event = ok & (x > s_min)
    size = np.maximum(x - s_min, TRACE_FLOOR)
    n = event.sum(axis=0)
    mean = _nanmean0(size, event)
    var = _nanmean0((size - mean) ** 2, event)
    enough = n > 1
    mean = np.where(enough, np.maximum(mean, TRACE_FLOOR), 1.0)
    shape = np.where(enough, _moments_shape(mean, var), 1.0)
    q = np.clip(n / np.maximum(ok.sum(axis=0), 1), *Q_RANGE)
    return s_min, q, mean, shape


def _gamma_ll(x, mean, shape):
    """log Gamma density of x (floored) with the given mean and shape."""
    from scipy.special import gammaln as lg

    x = np.maximum(x, TRACE_FLOOR)
    return (shape * np.log(shape / mean) - lg(shape) + (shape - 1) * np.log(x)
            - shape * x / mean)


def trace_params(likelihood: str, train_predicted: np.ndarray, train_values: np.ndarray) -> dict:
    """The per-ROI constants of ``likelihood`` for a method whose predicted means on the
    training trials are ``train_predicted`` (trials x bins x ROIs; ``train_values`` the observed
    values, NaN left out). See the comment above :data:`TRACE_LIKELIHOODS`."""
    if likelihood not in TRACE_LIKELIHOODS:
        raise ValueError(f"likelihood {likelihood!r} is not one for traces {TRACE_LIKELIHOODS}")
    x, m = _per_roi(train_values), _per_roi(train_predicted)
    ok = np.isfinite(x) & np.isfinite(m)
    if likelihood == "gamma":
        m = np.maximum(m, TRACE_FLOOR)
        spread = _nanmean0((np.maximum(x, TRACE_FLOOR) / m - 1.0) ** 2, ok)
        return {"shape": np.clip(np.where(spread > 0, 1.0 / np.maximum(spread, 1e-300), 1.0),
                                 *SHAPE_RANGE)}
    if likelihood == "gaussian":
        return {"var": np.maximum(_nanmean0((x - m) ** 2, ok), 1e-12)}
    s_min, _, mean, shape = _zig_events(train_values)
    return {"s_min": s_min, "event_mean": mean, "shape": shape}


def trace_log_likelihood(likelihood: str, predicted: np.ndarray, values: np.ndarray,
                         params: dict) -> np.ndarray:
    """Log-likelihood (nats) of each entry of ``values`` under the family ``likelihood`` with
    mean ``predicted`` and the per-ROI constants ``params`` (:func:`trace_params`); NaN where
    ``values`` is NaN."""
    x = np.asarray(values, dtype=np.float64)
    m = np.asarray(predicted, dtype=np.float64)
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 1.0)
    if likelihood == "gamma":
        ll = _gamma_ll(x0, np.maximum(m, TRACE_FLOOR), params["shape"])
    elif likelihood == "gaussian":
        var = params["var"]
        ll = -0.5 * (np.log(2 * np.pi * var) + (x0 - m) ** 2 / var)
    elif likelihood == "zig":
        s_min, mean = params["s_min"], params["event_mean"]
        q = np.clip(m / (s_min + mean), *Q_RANGE)
        event = x0 > s_min
        ll = np.where(event, np.log(q) + _gamma_ll(x0 - s_min, mean, params["shape"]),
                      np.log1p(-q))
    else:
        raise ValueError(f"likelihood {likelihood!r} is not one for traces {TRACE_LIKELIHOODS}")
    return np.where(ok, ll, np.nan)


def trace_null(likelihood: str, train_values: np.ndarray) -> tuple[np.ndarray, dict]:
    """Each ROI's null: the family fitted as a constant on the training values. Returns the
    per-ROI mean (what :func:`trace_log_likelihood` takes as ``predicted``) and params."""
    x = _per_roi(train_values)
    ok = np.isfinite(x)
    mean = _nanmean0(x, ok)
    if likelihood == "zig":
        s_min, q, event_mean, shape = _zig_events(train_values)
        # the mean whose event probability is the ROI's event fraction
        return q * (s_min + event_mean), {"s_min": s_min, "event_mean": event_mean,
                                          "shape": shape}
    if likelihood == "gamma":
        floored = np.maximum(x, TRACE_FLOOR)
        mean = np.maximum(_nanmean0(floored, ok), TRACE_FLOOR)
        return mean, {"shape": _moments_shape(mean, _nanmean0((floored - mean) ** 2, ok))}
    return mean, trace_params(likelihood, np.broadcast_to(mean, x.shape), x)


def _trace_gain_terms(likelihood, predicted, values, train_predicted, train_values):
    """Per trial: the log-likelihood gain (nats) over the null and the observed entries."""
    model = trace_log_likelihood(likelihood, predicted, values,
                                 trace_params(likelihood, train_predicted, train_values))
    null_mean, null_params = trace_null(likelihood, train_values)
    null = trace_log_likelihood(likelihood, np.broadcast_to(null_mean, np.shape(values)),
                                values, null_params)
    ok = np.isfinite(np.asarray(values, dtype=np.float64))
    gain = np.where(ok, model - null, 0.0).reshape(len(ok), -1).sum(axis=1)
    return gain, ok.reshape(len(ok), -1).sum(axis=1)


def heldout_ll_gain(likelihood: str, predicted: np.ndarray, values: np.ndarray,
                    train_predicted: np.ndarray, train_values: np.ndarray) -> float:
    """Held-out ROI prediction: log-likelihood gain of ``predicted`` (the predicted means of
    the held-out ROIs, trials x bins x ROIs) over each ROI's null, in bits per observed entry
    of ``values``; the family's constants and the null are fitted on the training trials
    (``train_predicted``: the same method's predictions there, ``train_values`` the data).
    NaN entries of the values are left out; NaN if none is observed."""
    gain, n = _trace_gain_terms(likelihood, predicted, values, train_predicted, train_values)
    return float(gain.sum() / (n.sum() * np.log(2))) if n.sum() else float("nan")


def heldout_ll_gain_sem(likelihood: str, predicted: np.ndarray, values: np.ndarray,
                        train_predicted: np.ndarray, train_values: np.ndarray,
                        n_bootstrap: int, seed: int) -> float:
    """Standard error of :func:`heldout_ll_gain` over ``n_bootstrap`` resamplings of the scored
    trials with replacement (the constants and null, fitted on the training trials, kept);
    NaN with fewer than 2 trials or resamplings."""
    if len(values) < 2 or n_bootstrap < 2:
        return float("nan")
    gain, n = _trace_gain_terms(likelihood, predicted, values, train_predicted, train_values)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(gain), len(gain)) for _ in range(n_bootstrap)]
    scores = [gain[k].sum() / (n[k].sum() * np.log(2)) for k in draws if n[k].sum()]
    return float(np.std(scores, ddof=1)) if len(scores) > 1 else float("nan")


def trace_r2(predicted: np.ndarray, values: np.ndarray) -> float:
    """R^2 of predicted means against the observed values: per ROI over its observed entries
    (trials x bins; NaN entries left out), averaged over ROIs (those with a spread)."""
    x, m = _per_roi(values), _per_roi(predicted)
    ok = np.isfinite(x)
    mean = _nanmean0(x, ok)
    total = np.where(ok, (x - mean) ** 2, 0.0).sum(axis=0)
    residual = np.where(ok, (x - m) ** 2, 0.0).sum(axis=0)
    keep = total > 0
    return float(np.mean(1.0 - residual[keep] / total[keep])) if keep.any() else float("nan")


def fill_missing(values: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """NaN entries of traces (trials x bins x ROIs) filled by linear interpolation in time
    within their trial (the nearest observed bin at a trial's edges); a ROI with no observed
    bin in a trial takes ``fallback`` (per ROI; default its mean over all given trials)."""
    x = np.array(values, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.all():
        return x
    if fallback is None:
        fallback = np.nan_to_num(_nanmean0(_per_roi(x), _per_roi(ok)))
    t = np.arange(x.shape[1])
    for i, j in zip(*np.nonzero(~ok.all(axis=1))):
        seen = ok[i, :, j]
        x[i, :, j] = np.interp(t, t[seen], x[i, seen, j]) if seen.any() else fallback[j]
    return x


def smooth_observed(values: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian smoothing along time that leaves NaN entries out (the kernel renormalised
    over the observed bins); NaN where no observed bin is near."""
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    weight = smooth_spikes(ok.astype(np.float64), sigma_bins)
    total = smooth_spikes(np.where(ok, x, 0.0), sigma_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 1e-6, total / weight, np.nan)


def trace_psth_r2(rates: np.ndarray, conditions: np.ndarray, values: np.ndarray,
                  value_conditions: np.ndarray, sigma_bins: float) -> float:
    """PSTH R^2 for traces: as :func:`psth_r2`, the PSTHs condition-averaging the values
    smoothed with NaN entries left out (:func:`smooth_observed`) and averaged over the trials
    where observed; bins of a condition never observed are left out."""
    smoothed = smooth_observed(values, sigma_bins)
    labels = np.unique(conditions)
    predicted = np.stack([rates[conditions == c].mean(axis=0) for c in labels])
    with np.errstate(invalid="ignore"):
        target = np.stack([np.nanmean(smoothed[value_conditions == c], axis=0) for c in labels])
    return trace_r2(predicted, target)


def trace_smoothing_baseline(train_heldin: np.ndarray, train_heldout: np.ndarray,
                             heldin: np.ndarray, sigma_bins: float, alphas, inner_folds: int = 3,
                             seed: int = 0, floor: np.ndarray | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """The smoothing baseline for traces: held-in traces with their NaN entries interpolated
    (:func:`fill_missing`, fallback the training means) and smoothed with a Gaussian kernel
    (``sigma_bins``) are the held-in rates; a ridge regression (penalty from ``alphas`` by
    ``inner_folds`` trial-wise folds) fitted on the training trials maps them to the held-out
    ROIs' values (NaN targets interpolated for the fit only). Predictions are kept at or
    above ``floor`` (per held-out ROI; default 1% of its training mean where that is positive,
    so that a gamma or zig mean stays positive). Returns ``(heldin_rates, heldout_rates)``."""
    from .decoding import fit_ridge

    fallback = np.nan_to_num(_nanmean0(_per_roi(train_heldin), np.isfinite(_per_roi(train_heldin))))
    train_x = smooth_spikes(fill_missing(train_heldin, fallback), sigma_bins)
    x = smooth_spikes(fill_missing(heldin, fallback), sigma_bins)
    n_out = train_heldout.shape[-1]
    if n_out == 0:
        return x, np.zeros(heldin.shape[:2] + (0,))
    y = fill_missing(train_heldout)
    predict, _ = fit_ridge(train_x, y, alphas, inner_folds, seed)
    if floor is None:
        mean = _nanmean0(_per_roi(train_heldout), np.isfinite(_per_roi(train_heldout)))
        floor = np.where(mean > 0, 0.01 * mean, -np.inf)
    return x, np.maximum(predict(x), floor)
