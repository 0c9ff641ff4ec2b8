"""Scores of one dataset: NLB metrics of LFADS and of the spike-smoothing baseline, ground-truth
recovery on simulated data, and the behaviour decoding of the ``decode_behavior`` rule.

``data`` holds the arrays of ``lfads_input.h5``, ``posterior`` those of ``posterior.h5``
(trials x time bins x channels; rates in expected counts per bin).

A continuous recording's segments are merged back onto its bin grid first and scored as
stretches of consecutive bins (:mod:`.stretches`), so that every bin counts once: co-bps,
vel R^2 and the ground-truth scores on the merged bins of the scored blocks, fp-bps on the
segments' forward-prediction bins; ``n_trials`` then counts the scored stretches (one per
block of time without a gap). PSTH R^2 needs conditions and is left out of a recording
without them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics
from .decoding import bootstrap_r2_sem, decode_behavior, fit_ridge, lagged
from ..values import ms_to_bins
from .ground_truth import latent_r2, rate_r2, smooth_spikes
from .stretches import is_segmented, stretch_view


def load_arrays(path) -> dict[str, np.ndarray]:
    """Every dataset and attribute of an HDF5 file (attributes under ``attrs``)."""
    import h5py

    with h5py.File(path, "r") as f:
        arrays = {key: f[key][()] for key in f}
        arrays["attrs"] = dict(f.attrs)
    return arrays


def scored_splits(data: dict) -> list[str]:
    """The splits scores are computed on: valid, and test where ``data`` has test trials."""
    return ["valid"] + (["test"] if "test_encod_data" in data else [])


def headline_split(data: dict) -> str:
    """The split a dataset's reported scores come from: test where there are test trials
    (no training or selection saw them), else valid."""
    return scored_splits(data)[-1]


def seen_by(split: str, selections: tuple[str, ...]) -> str:
    """What chose anything on a split's trials: ``selections`` for the validation trials (the
    kept epoch, the learning-rate schedule, a sweep's or PBT's choice), ``none`` for test."""
    return "; ".join(selections) if split == "valid" and selections else "none"


def evaluate(data: dict, posterior: dict, smoothing_sigma_ms: float, psth_sigma_ms: float,
             decoding: dict, selections: tuple[str, ...] = (), n_bootstrap: int = 0,
             seed: int = 0) -> pd.DataFrame:
    """Tidy table (method, metric, split, value, err, n_trials, seen_by) of the scores on the
    validation trials and, where there are any, the test trials; ``err``: the standard error
    over ``n_bootstrap`` resamplings of the trials (``seed``) of co-bps, fp-bps and vel R^2
    (NaN for the others); ``seen_by`` names the choices that read a split's trials
    (``selections`` for valid, ``none`` for test). Segments of a continuous recording are
    scored as merged stretches (module docstring)."""
    forward = data, posterior  # the forward-prediction bins: the segments' own
    if is_segmented(data):
        data, posterior = stretch_view(data, posterior)
    attrs = data["attrs"]
    bin_width_s = float(attrs["bin_width_s"])
    n_in, fp = int(attrs["n_heldin"]), int(forward[0]["attrs"]["fp_bins"])
    n_window = data["valid_encod_data"].shape[1]
    splits = scored_splits(data)
    smoothing_bins = ms_to_bins(smoothing_sigma_ms, bin_width_s)
    # NLB's smoothing baseline, fitted once on the training trials and applied to every trial
    order = ["train"] + splits
    smooth = np.concatenate(metrics.smoothing_baseline(
        data["train_encod_data"], data["train_recon_data"][:, :n_window, n_in:],
        np.concatenate([data[f"{s}_encod_data"] for s in order]), smoothing_bins), axis=2)
    smooth = dict(zip(order, np.split(smooth, np.cumsum([len(data[f"{s}_encod_data"]) for s in order])[:-1])))
    # PSTHs from every trial of the dataset, on the held-out neurons (all neurons if none)
    has_heldout = data["valid_recon_data"].shape[2] > n_in
    psth_neurons = slice(n_in, None) if has_heldout else slice(None)
    all_spikes = np.concatenate([data[f"{s}_recon_data"] for s in order])[:, :n_window, psth_neurons]
    all_conditions = np.concatenate([data[f"{s}_cond_idx"] for s in order])
    decoders = {}
    if "train_behavior" in data:  # vel R^2: one ridge decoder per method, fitted on the training trials
        lag = int(round(ms_to_bins(decoding["lag_ms"], bin_width_s)))
        for method, train_rates in (("lfads", posterior["train_rates"][:, :n_window]),
                                    ("smoothing", smooth["train"])):
            x, y = lagged(train_rates, data["train_behavior"], lag)
            decoders[method] = fit_ridge(x, y, decoding["alphas"], decoding["inner_folds"], decoding["seed"])[0]
    rows = []
    for split in splits:
        n_trials = len(data[f"{split}_encod_data"])

        def add(method, metric, value, err=np.nan):
            rows.append((method, metric, split, float(value), float(err), n_trials, seen_by(split, selections)))

        def bps(metric, method, rates, spikes):
            add(method, metric, metrics.bits_per_spike(rates, spikes),
                metrics.bits_per_spike_sem(rates, spikes, n_bootstrap, seed))

        spikes = data[f"{split}_recon_data"]
        rates = posterior[f"{split}_rates"]
        methods = {"lfads": rates[:, :n_window], "smoothing": smooth[split]}
        if f"{split}_truth_rates" in data:  # simulated data: the true rates give each metric's ceiling
            methods["truth"] = data[f"{split}_truth_rates"][:, :n_window]
        for method, r in methods.items():
            if has_heldout:
                bps("co-bps", method, r[:, :, n_in:], spikes[:, :n_window, n_in:])
            if len(np.unique(all_conditions)) > 1:
                add(method, "psth R2", metrics.psth_r2(r[:, :, psth_neurons], data[f"{split}_cond_idx"],
                                                       all_spikes, all_conditions,
                                                       ms_to_bins(psth_sigma_ms, bin_width_s)))
        if fp:
            fp_data, fp_posterior = forward
            start = fp_data[f"{split}_encod_data"].shape[1]
            bps("fp-bps", "lfads", fp_posterior[f"{split}_rates"][:, start:],
                fp_data[f"{split}_recon_data"][:, start:])
        for method, predict in decoders.items():
            x, y = lagged(methods[method], data[f"{split}_behavior"], lag)
            predicted = predict(x)
            add(method, "vel R2", metrics.velocity_r2(predicted, y),
                bootstrap_r2_sem(y, predicted, n_bootstrap, seed, "variance_weighted")[0])
        if f"{split}_truth_rates" in data:
            truth = data[f"{split}_truth_rates"]
            add("lfads", "rate R2 (truth)", rate_r2(rates, truth))
            add("smoothing", "rate R2 (truth)", rate_r2(smooth_spikes(spikes, smoothing_bins), truth))
            add("lfads", "latent R2 (truth)", latent_r2(
                posterior["train_factors"], data["train_truth_latents"], posterior[f"{split}_factors"],
                data[f"{split}_truth_latents"]))
    return pd.DataFrame(rows, columns=["method", "metric", "split", "value", "err", "n_trials", "seen_by"])


def decoding_features(data: dict, posterior: dict, smoothing_sigma_ms: float, splits: list[str]
                      ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Feature sets of the trials of each split, for behaviour decoding (method -> split ->
    trials x bins x features: LFADS rates and factors, smoothed and binned held-in spikes),
    and the behaviour of each split."""
    n_window = data["valid_encod_data"].shape[1]
    sigma = ms_to_bins(smoothing_sigma_ms, float(data["attrs"]["bin_width_s"]))
    features = {"lfads_rates": {}, "lfads_factors": {}, "smoothed_spikes": {}, "binned_spikes": {}}
    for split in splits:
        spikes = data[f"{split}_encod_data"].astype(np.float64)
        features["lfads_rates"][split] = posterior[f"{split}_rates"][:, :n_window]
        features["lfads_factors"][split] = posterior[f"{split}_factors"][:, :n_window]
        features["smoothed_spikes"][split] = smooth_spikes(spikes, sigma)
        features["binned_spikes"][split] = spikes
    return features, {split: data[f"{split}_behavior"] for split in splits}


def decode_dataset(data: dict, posterior: dict, smoothing_sigma_ms: float, decoding: dict,
                   selections: tuple[str, ...] = (), n_bootstrap: int = 0, seed: int = 0):
    """Every decoding method fitted on the training trials and scored on the validation and
    test trials (``n_bootstrap`` resamplings of them, seeded by ``seed``, for each score's standard
    error): ``(scores, summary, predictions, behavior, columns, split)`` with ``scores``
    every split's rows, ``summary`` those of the headline split (:func:`headline_split`),
    ``predictions`` (method -> trials x bins x targets) and ``behavior`` that split's.
    Segments of a continuous recording are decoded as merged stretches (module docstring;
    ``data`` is returned as the stretches' view, ``data["attrs"]["stretches"]`` True)."""
    if is_segmented(data):
        data, posterior = stretch_view(data, posterior)
    splits = ["train"] + scored_splits(data)
    features, behavior = (trace_decoding_features if is_traces(data) else decoding_features)(
        data, posterior, smoothing_sigma_ms, splits)
    columns = [str(c) for c in data["attrs"]["behavior_columns"]]
    lag = int(round(ms_to_bins(decoding["lag_ms"], float(data["attrs"]["bin_width_s"]))))
    scores, predictions = decode_behavior(features, behavior, columns, lag, decoding["alphas"],
                                          decoding["seed"], decoding["inner_folds"], n_bootstrap, seed)
    scores["seen_by"] = [seen_by(split, selections) for split in scores["split"]]
    split = headline_split(data)
    summary = scores[scores["split"] == split].drop(columns="alpha").reset_index(drop=True)
    return scores, summary, {m: p[split] for m, p in predictions.items()}, behavior[split], columns, split, data


def method_scores(metrics_table: pd.DataFrame,
                  decoding_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """One tidy table (dataset, method, metric, split, value, err, seen_by) of each dataset's
    headline scores: the rows of a ``metrics.tsv`` on its headline split (test where it has
    test trials, else valid) and, where given, the all-targets rows of a decoding
    ``summary.tsv`` as metric "decoding R2" (value: R^2, err: its bootstrap standard error).
    Either table may hold several datasets."""
    columns = ["dataset", "method", "metric", "split", "value", "err", "seen_by"]
    headline = metrics_table.groupby("dataset")["split"].transform(lambda s: "test" if (s == "test").any()
                                                                   else "valid")
    table = metrics_table.loc[metrics_table["split"] == headline, columns]
    if decoding_summary is not None and len(decoding_summary):
        decoding = decoding_summary[decoding_summary["target"] == "all"]
        table = pd.concat([table, pd.DataFrame({
            "dataset": decoding["dataset"], "method": decoding["method"],
            "metric": "decoding R2", "split": decoding["split"], "value": decoding["r2"],
            "err": decoding["r2_sem"], "seen_by": decoding["seen_by"]})], ignore_index=True)
    return table.reset_index(drop=True)


# ------------------------------------------------------------------ calcium traces

TRACE_METRICS = ("heldout_ll_gain", "heldout_r2", "vel R2", "psth R2", "latent R2 (truth)")


def is_traces(data: dict) -> bool:
    """Whether ``data`` (the arrays of ``lfads_input.h5``) holds calcium traces (attr ``kind``)."""
    from ..values import KIND_TRACES, kind_of

    return kind_of(data["attrs"]) == KIND_TRACES


def evaluate_traces(data: dict, posterior: dict, likelihood: str, smoothing_sigma_ms: float,
                    psth_sigma_ms: float, decoding: dict, selections: tuple[str, ...] = (),
                    n_bootstrap: int = 0, seed: int = 0) -> pd.DataFrame:
    """:func:`evaluate` for calcium traces (``kind`` = ``traces``): the same table and splits,
    with ``heldout_ll_gain`` (bits per observed entry: the held-out ROIs' log-likelihood
    under ``likelihood``, the model's family, over each ROI's null; ``err`` its bootstrap
    standard error) and ``heldout_r2`` (R^2 of the predicted means of the held-out ROIs
    against their values, per ROI, averaged) in place of co-bps, and vel R^2 and PSTH R^2 as
    for spikes (:mod:`.metrics`, section calcium traces). The smoothing baseline is
    :func:`metrics.trace_smoothing_baseline` (NaN entries interpolated for the baseline
    only). Entries that are NaN in the data are left out of every score. On simulated data
    the latents' R^2 against the truth is scored; the true rates (spikes/s) are not traces,
    so they are no method here."""
    attrs = data["attrs"]
    bin_width_s = float(attrs["bin_width_s"])
    n_in = int(attrs["n_heldin"])
    n_window = data["valid_encod_data"].shape[1]
    splits = scored_splits(data)
    order = ["train"] + splits
    sigma = ms_to_bins(smoothing_sigma_ms, bin_width_s)
    values = {s: data[f"{s}_recon_data"][:, :n_window].astype(np.float64) for s in order}
    has_heldout = values["train"].shape[2] > n_in
    heldin, heldout = metrics.trace_smoothing_baseline(
        values["train"][..., :n_in], values["train"][..., n_in:],
        np.concatenate([values[s][..., :n_in] for s in order]), sigma, decoding["alphas"],
        decoding["inner_folds"], decoding["seed"])
    cuts = np.cumsum([len(values[s]) for s in order])[:-1]
    smooth = dict(zip(order, np.split(np.concatenate([heldin, heldout], axis=2), cuts)))
    rates = {s: posterior[f"{s}_rates"][:, :n_window].astype(np.float64) for s in order}
    methods = {"lfads": rates, "smoothing": smooth}
    psth_rois = slice(n_in, None) if has_heldout else slice(None)
    all_values = np.concatenate([values[s] for s in order])[..., psth_rois]
    all_conditions = np.concatenate([data[f"{s}_cond_idx"] for s in order])
    decoders = {}
    if "train_behavior" in data:
        lag = int(round(ms_to_bins(decoding["lag_ms"], bin_width_s)))
        for method, by_split in methods.items():
            x, y = lagged(by_split["train"], data["train_behavior"], lag)
            decoders[method] = fit_ridge(x, y, decoding["alphas"], decoding["inner_folds"],
                                         decoding["seed"])[0]
    rows = []
    for split in splits:
        n_trials = len(values[split])

        def add(method, metric, value, err=np.nan):
            rows.append((method, metric, split, float(value), float(err), n_trials,
                         seen_by(split, selections)))

        for method, by_split in methods.items():
            r = by_split[split]
            if has_heldout:
                args = (likelihood, r[..., n_in:], values[split][..., n_in:],
                        by_split["train"][..., n_in:], values["train"][..., n_in:])
                add(method, "heldout_ll_gain", metrics.heldout_ll_gain(*args),
                    metrics.heldout_ll_gain_sem(*args, n_bootstrap, seed))
                add(method, "heldout_r2", metrics.trace_r2(r[..., n_in:], values[split][..., n_in:]))
            if len(np.unique(all_conditions)) > 1:
                add(method, "psth R2", metrics.trace_psth_r2(
                    r[..., psth_rois], data[f"{split}_cond_idx"], all_values, all_conditions,
                    ms_to_bins(psth_sigma_ms, bin_width_s)))
        for method, predict in decoders.items():
            x, y = lagged(methods[method][split], data[f"{split}_behavior"], lag)
            ok = np.isfinite(y).all(axis=-1)  # bins with NaN behaviour are left out
            predicted = predict(x)
            add(method, "vel R2", metrics.velocity_r2(predicted[ok][None], y[ok][None]),
                bootstrap_r2_sem(y, predicted, n_bootstrap, seed, "variance_weighted")[0]
                if ok.all() else np.nan)
        if f"{split}_truth_latents" in data:
            add("lfads", "latent R2 (truth)", latent_r2(
                posterior["train_factors"], data["train_truth_latents"],
                posterior[f"{split}_factors"], data[f"{split}_truth_latents"]))
    return pd.DataFrame(rows, columns=["method", "metric", "split", "value", "err", "n_trials",
                                       "seen_by"])


def trace_decoding_features(data: dict, posterior: dict, smoothing_sigma_ms: float,
                            splits: list[str]) -> tuple[dict, dict]:
    """:func:`decoding_features` for traces: LFADS rates and factors, and the held-in traces
    smoothed (``smoothed_traces``) and as they are (``binned_traces``), their NaN entries
    interpolated in time (:func:`metrics.fill_missing`, fallback each ROI's training mean)."""
    n_window = data["valid_encod_data"].shape[1]
    sigma = ms_to_bins(smoothing_sigma_ms, float(data["attrs"]["bin_width_s"]))
    train = data["train_encod_data"].astype(np.float64)
    ok = np.isfinite(train)
    fallback = np.nan_to_num(np.where(ok, train, 0).sum(axis=(0, 1)) / np.maximum(ok.sum(axis=(0, 1)), 1))
    features = {"lfads_rates": {}, "lfads_factors": {}, "smoothed_traces": {}, "binned_traces": {}}
    for split in splits:
        traces = metrics.fill_missing(data[f"{split}_encod_data"], fallback)
        features["lfads_rates"][split] = posterior[f"{split}_rates"][:, :n_window]
        features["lfads_factors"][split] = posterior[f"{split}_factors"][:, :n_window]
        features["smoothed_traces"][split] = smooth_spikes(traces, sigma)
        features["binned_traces"][split] = traces
    return features, {split: data[f"{split}_behavior"] for split in splits}
