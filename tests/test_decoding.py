"""Ridge decoding: planted maps are recovered, shuffles are not, scored trials never leak into
the fit."""

import numpy as np
import pandas as pd
import pytest

from lfads_core.analysis.decoding import (bootstrap_r2_sem, decode_behavior, fit_ridge, ridge_fits,
                                          trial_folds)


def planted(n_trials=60, n_bins=30, n_features=8, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_trials, n_bins, n_features))
    y = x @ rng.normal(size=(n_features, 2)) + noise * rng.normal(size=(n_trials, n_bins, 2))
    return x, y


def by_split(x, y, n_train=36, n_valid=12):
    """Features and behaviour of one method cut into train, valid and test trials."""
    cut = {"train": slice(0, n_train), "valid": slice(n_train, n_train + n_valid),
           "test": slice(n_train + n_valid, None)}
    return {k: x[c] for k, c in cut.items()}, {k: y[c] for k, c in cut.items()}


def test_planted_linear_map_is_recovered():
    x, y = planted()
    features, behavior = by_split(x, y)
    scores, predictions = decode_behavior({"planted": features}, behavior, ["vx", "vy"])
    assert (scores["r2"] > 0.95).all()
    assert set(scores["target"]) == {"vx", "vy", "all"} and set(scores["split"]) == {"valid", "test"}
    assert (scores.loc[scores["split"] == "test", "n_trials"] == 12).all()
    for split in ("valid", "test"):
        assert predictions["planted"][split].shape == behavior[split].shape
        assert np.isfinite(predictions["planted"][split]).all()
    assert (scores["r2_sem"] > 0).all() and (scores["r2_sem"] < 0.05).all()


def test_shuffled_targets_decode_to_about_zero():
    x, y = planted(n_trials=120)
    shuffled = y[np.random.default_rng(1).permutation(len(y))]
    features, behavior = by_split(x, shuffled, 80, 20)
    scores, _ = decode_behavior({"planted": features}, behavior, ["vx", "vy"])
    assert scores["r2"].mean() < 0.05


def test_folds_partition_trials_and_methods_share_the_split():
    folds = trial_folds(23, 5, seed=3)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests) == list(range(23))
    for train, test in folds:
        assert not set(train) & set(test)
    x, y = planted()
    features, behavior = by_split(x, y)
    scores, _ = decode_behavior({"a": features, "b": features}, behavior, ["vx", "vy"], seed=3)
    assert scores[scores.method == "a"]["r2"].tolist() == scores[scores.method == "b"]["r2"].tolist()


def test_scored_trials_never_reach_the_fit():
    """Changing the test trials' behaviour changes their scores, never the decoder: its
    predictions on them and its scores on the validation trials stay the same."""
    x, y = planted(noise=0.5)
    features, behavior = by_split(x, y)
    scores, predictions = decode_behavior({"m": features}, behavior, ["vx", "vy"])
    changed = dict(behavior, test=behavior["test"] * 3 + 7)
    scores2, predictions2 = decode_behavior({"m": features}, changed, ["vx", "vy"])
    np.testing.assert_array_equal(predictions["m"]["test"], predictions2["m"]["test"])
    valid = scores["split"] == "valid"
    assert scores.loc[valid, "r2"].tolist() == scores2.loc[valid, "r2"].tolist()
    assert scores.loc[~valid, "r2"].tolist() != scores2.loc[~valid, "r2"].tolist()


def test_bootstrap_standard_error_shrinks_with_more_trials():
    rng = np.random.default_rng(5)
    true = rng.normal(size=(400, 10, 1))
    predicted = true + rng.normal(size=true.shape)
    few, many = (bootstrap_r2_sem(true[:n], predicted[:n], 200, 0)[0] for n in (25, 400))
    assert 0 < many < few
    assert np.isnan(bootstrap_r2_sem(true[:1], predicted[:1], 200, 0)).all()


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
    features, behavior = by_split(x, y, 30, 10)
    at_lag = decode_behavior({"x": features}, behavior, ["v"], lag_bins=2)[0]
    no_lag = decode_behavior({"x": features}, behavior, ["v"], lag_bins=0)[0]
    assert at_lag["r2"].mean() > 0.99 > no_lag["r2"].mean() + 0.5


def test_too_few_trials_for_the_folds():
    with pytest.raises(ValueError, match="folds"):
        trial_folds(3, 5, 0)


def test_method_scores_adds_decoding_r2_of_all_targets():
    from lfads_core.analysis.evaluation import method_scores

    metrics = pd.DataFrame({"dataset": ["a"] * 4, "method": ["lfads", "smoothing"] * 2,
                            "metric": ["co-bps"] * 4, "split": ["valid", "valid", "test", "test"],
                            "value": [0.35, 0.25, 0.3, 0.2], "err": [np.nan] * 4,
                            "seen_by": ["early stopping"] * 2 + ["none"] * 2})
    decoding = pd.DataFrame({"dataset": ["a"] * 3, "method": ["lfads_rates"] * 3,
                             "target": ["all", "x", "y"], "split": ["test"] * 3, "r2": [0.9, 0.8, 0.95],
                             "r2_sem": [0.04] * 3, "n_trials": [20] * 3, "seen_by": ["none"] * 3})
    table = method_scores(metrics, decoding)
    assert table.columns.tolist() == ["dataset", "method", "metric", "split", "value", "err", "seen_by"]
    assert table.iloc[-1].tolist() == ["a", "lfads_rates", "decoding R2", "test", 0.9, 0.04, "none"]
    assert len(table) == 3 and (table["split"] == "test").all()  # the headline split only
    valid_only = metrics[metrics["split"] == "valid"]
    assert method_scores(valid_only).equals(valid_only.reset_index(drop=True))


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
