"""Ridge decoding: planted maps are recovered, shuffles are not, folds never leak."""

import numpy as np
import pandas as pd
import pytest

from lfads_core.analysis.decoding import (decode_behavior, fit_ridge, ridge_fits,
                                          summarize_scores, trial_folds)


def planted(n_trials=60, n_bins=30, n_features=8, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_trials, n_bins, n_features))
    y = x @ rng.normal(size=(n_features, 2)) + noise * rng.normal(size=(n_trials, n_bins, 2))
    return x, y


def test_planted_linear_map_is_recovered():
    x, y = planted()
    scores, predictions = decode_behavior({"planted": x}, y, ["vx", "vy"], n_folds=5)
    assert (scores["r2"] > 0.95).all()
    assert set(scores["target"]) == {"vx", "vy", "all"} and scores["fold"].nunique() == 5
    assert predictions["planted"].shape == y.shape and np.isfinite(predictions["planted"]).all()
    summary = summarize_scores(scores)
    assert summary.loc[summary["target"] == "all", "r2_mean"].item() > 0.95


def test_shuffled_targets_decode_to_about_zero():
    x, y = planted(n_trials=80)
    shuffled = y[np.random.default_rng(1).permutation(len(y))]
    scores, _ = decode_behavior({"planted": x}, shuffled, ["vx", "vy"])
    assert scores["r2"].mean() < 0.05


def test_folds_partition_trials_and_are_shared_by_methods():
    folds = trial_folds(23, 5, seed=3)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests) == list(range(23))
    for train, test in folds:
        assert not set(train) & set(test)
    x, y = planted()
    scores, _ = decode_behavior({"a": x, "b": x}, y, ["vx", "vy"], seed=3)
    assert scores[scores.method == "a"]["r2"].tolist() == scores[scores.method == "b"]["r2"].tolist()


def test_penalty_and_fit_use_training_trials_only():
    x, y = planted(noise=1.0)
    train = np.arange(40)
    predict, alpha = fit_ridge(x[train], y[train], [0.01, 1.0, 100.0, 1e4])
    y_changed = y.copy()
    y_changed[40:] = 1e3  # test trials' behaviour: must not matter
    predict2, alpha2 = fit_ridge(x[train], y_changed[train], [0.01, 1.0, 100.0, 1e4])
    assert alpha == alpha2
    np.testing.assert_array_equal(predict(x[40:]), predict2(x[40:]))


def test_lag_pairs_behaviour_with_earlier_features():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 40, 3))
    y = np.zeros((50, 40, 1))
    y[:, 2:, 0] = x[:, :-2, 0]  # behaviour follows the first feature by two bins
    at_lag = decode_behavior({"x": x}, y, ["v"], lag_bins=2)[0]
    no_lag = decode_behavior({"x": x}, y, ["v"], lag_bins=0)[0]
    assert at_lag["r2"].mean() > 0.99 > no_lag["r2"].mean() + 0.5


def test_too_few_trials_for_the_folds():
    with pytest.raises(ValueError, match="folds"):
        trial_folds(3, 5, 0)


def test_method_scores_adds_decoding_r2_of_all_targets():
    from lfads_core.analysis.evaluation import method_scores

    metrics = pd.DataFrame({"dataset": ["a", "a"], "method": ["lfads", "smoothing"],
                            "metric": ["co-bps", "co-bps"], "value": [0.3, 0.2],
                            "err": [np.nan, np.nan]})
    decoding = pd.DataFrame({"dataset": ["a"] * 3, "method": ["lfads_rates"] * 3,
                             "target": ["all", "x", "y"], "r2_mean": [0.9, 0.8, 0.95],
                             "r2_std": [0.1] * 3, "n_folds": [5] * 3, "r2_sem": [0.04] * 3})
    table = method_scores(metrics, decoding)
    assert table.columns.tolist() == ["dataset", "method", "metric", "value", "err"]
    assert table.iloc[-1].tolist() == ["a", "lfads_rates", "decoding R2", 0.9, 0.04]
    assert len(table) == 3
    assert method_scores(metrics).equals(metrics)


def test_ridge_fits_match_sklearn_ridge_for_every_penalty():
    from sklearn.linear_model import Ridge

    x, y = planted(n_trials=20, noise=0.5)
    x[..., 3] *= 100.0  # features on different scales: standardised before the penalty
    alphas = [1e-3, 1.0, 1e3]
    flat_x, flat_y = x.reshape(-1, x.shape[-1]), y.reshape(-1, 2)
    mean, std = flat_x.mean(axis=0), flat_x.std(axis=0) + 1e-9
    for alpha, predict in zip(alphas, ridge_fits(x, y, alphas)):
        expected = Ridge(alpha=alpha).fit((flat_x - mean) / std, flat_y).predict(
            (flat_x - mean) / std)
        np.testing.assert_allclose(predict(x).reshape(-1, 2), expected, rtol=1e-9, atol=1e-9)
