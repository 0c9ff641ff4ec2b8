"""Scores of one dataset: NLB metrics of LFADS and of the spike-smoothing baseline, ground-truth
recovery on simulated data, and the behaviour decoding of the ``decode_behavior`` rule.

``data`` holds the arrays of ``lfads_input.h5``, ``posterior`` those of ``posterior.h5``
(trials x time bins x channels; rates in expected counts per bin).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics
from .decoding import decode_behavior, fit_ridge, lagged
from ..values import ms_to_bins
from .ground_truth import latent_r2, rate_r2, smooth_spikes


def load_arrays(path) -> dict[str, np.ndarray]:
    """Every dataset and attribute of an HDF5 file (attributes under ``attrs``)."""
    import h5py

    with h5py.File(path, "r") as f:
        arrays = {key: f[key][()] for key in f}
        arrays["attrs"] = dict(f.attrs)
    return arrays


def evaluate(data: dict, posterior: dict, smoothing_sigma_ms: float, psth_sigma_ms: float,
             decoding: dict) -> pd.DataFrame:
    """Tidy table (method, metric, value, err) of the validation trials' scores."""
    attrs = data["attrs"]
    bin_width_s = float(attrs["bin_width_s"])
    n_in, fp = int(attrs["n_heldin"]), int(attrs["fp_bins"])
    n_window = data["valid_encod_data"].shape[1]
    spikes = data["valid_recon_data"]
    rates = posterior["valid_rates"]
    # NLB's smoothing baseline, fitted once on the training trials and applied to every trial
    # (validation trials for the metrics, training trials for the velocity decoder's fit)
    n_train = len(data["train_encod_data"])
    smooth_all = np.concatenate(metrics.smoothing_baseline(
        data["train_encod_data"], data["train_recon_data"][:, :n_window, n_in:],
        np.concatenate([data["train_encod_data"], data["valid_encod_data"]]),
        ms_to_bins(smoothing_sigma_ms, bin_width_s)), axis=2)
    methods = {"lfads": rates[:, :n_window], "smoothing": smooth_all[n_train:]}
    if "valid_truth_rates" in data:  # simulated data: the true rates give each metric's ceiling
        methods["truth"] = data["valid_truth_rates"][:, :n_window]
    rows = []

    def add(method, metric, value):
        rows.append((method, metric, float(value), np.nan))

    # PSTHs from every trial of the dataset, on the held-out neurons (all neurons if none)
    psth_neurons = slice(n_in, None) if spikes.shape[2] > n_in else slice(None)
    all_spikes = np.concatenate([data["train_recon_data"], spikes])[:, :n_window, psth_neurons]
    all_conditions = np.concatenate([data["train_cond_idx"], data["valid_cond_idx"]])
    for method, r in methods.items():
        if spikes.shape[2] > n_in:
            add(method, "co-bps", metrics.co_bps(r[:, :, n_in:], spikes[:, :n_window, n_in:]))
        if len(np.unique(all_conditions)) > 1:
            add(method, "psth R2", metrics.psth_r2(r[:, :, psth_neurons], data["valid_cond_idx"],
                                                   all_spikes, all_conditions,
                                                   ms_to_bins(psth_sigma_ms, bin_width_s)))
    if fp:
        add("lfads", "fp-bps", metrics.fp_bps(rates[:, n_window:], spikes[:, n_window:]))
    if "valid_behavior" in data:
        lag = int(round(ms_to_bins(decoding["lag_ms"], bin_width_s)))
        train_rates = {"lfads": posterior["train_rates"][:, :n_window],
                       "smoothing": smooth_all[:n_train]}
        for method, r in methods.items():
            if method == "truth":
                continue
            x, y = lagged(train_rates[method], data["train_behavior"], lag)
            predict, _ = fit_ridge(x, y, decoding["alphas"], decoding["inner_folds"],
                                   decoding["seed"])
            x_valid, y_valid = lagged(r, data["valid_behavior"], lag)
            add(method, "vel R2", metrics.velocity_r2(predict(x_valid), y_valid))
    if "valid_truth_rates" in data:
        add("lfads", "rate R2 (truth)", rate_r2(rates, data["valid_truth_rates"]))
        add("smoothing", "rate R2 (truth)",
            rate_r2(smooth_spikes(spikes, ms_to_bins(smoothing_sigma_ms, bin_width_s)),
                    data["valid_truth_rates"]))
        add("lfads", "latent R2 (truth)", latent_r2(
            posterior["train_factors"], data["train_truth_latents"], posterior["valid_factors"],
            data["valid_truth_latents"]))
    return pd.DataFrame(rows, columns=["method", "metric", "value", "err"])


def decoding_features(data: dict, posterior: dict, smoothing_sigma_ms: float
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feature sets of every trial (train then valid) for behaviour decoding, and the
    behaviour: LFADS rates and factors, smoothed and binned held-in spikes."""
    n_window = data["valid_encod_data"].shape[1]
    bin_width_s = float(data["attrs"]["bin_width_s"])

    def both(source, key, bins=n_window):
        return np.concatenate([source[f"train_{key}"][:, :bins], source[f"valid_{key}"][:, :bins]])

    spikes = both(data, "encod_data").astype(np.float64)
    features = {"lfads_rates": both(posterior, "rates"), "lfads_factors": both(posterior, "factors"),
                "smoothed_spikes": smooth_spikes(spikes,
                                                 ms_to_bins(smoothing_sigma_ms, bin_width_s)),
                "binned_spikes": spikes}
    return features, both(data, "behavior")


def decode_dataset(data: dict, posterior: dict, smoothing_sigma_ms: float, decoding: dict):
    """Scores, per-fold summary and out-of-fold predictions of every decoding method."""
    from .decoding import summarize_scores

    features, behavior = decoding_features(data, posterior, smoothing_sigma_ms)
    columns = [str(c) for c in data["attrs"]["behavior_columns"]]
    lag = int(round(ms_to_bins(decoding["lag_ms"], float(data["attrs"]["bin_width_s"]))))
    scores, predictions = decode_behavior(features, behavior, columns, decoding["n_folds"], lag,
                                          decoding["alphas"], decoding["seed"],
                                          decoding["inner_folds"])
    return scores, summarize_scores(scores), predictions, behavior, columns


def method_scores(metrics_table: pd.DataFrame,
                  decoding_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """One tidy table (dataset, method, metric, value, err) of a ``metrics.tsv`` and, where
    given, the all-targets rows of a decoding ``summary.tsv`` as metric "decoding R2" (value:
    mean R^2 over folds, err: its standard error). Either table may hold several datasets."""
    columns = ["dataset", "method", "metric", "value", "err"]
    table = metrics_table[columns]
    if decoding_summary is not None and len(decoding_summary):
        decoding = decoding_summary[decoding_summary["target"] == "all"]
        table = pd.concat([table, pd.DataFrame({
            "dataset": decoding["dataset"], "method": decoding["method"],
            "metric": "decoding R2", "value": decoding["r2_mean"],
            "err": decoding["r2_sem"]})], ignore_index=True)
    return table.reset_index(drop=True)
