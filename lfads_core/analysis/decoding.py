"""Ridge-regression decoding of behaviour with trial-wise cross-validation.

Arrays are trials x time bins x channels. No bin of a test trial is ever in its training
fold; the ridge penalty is chosen by cross-validation inside the training trials only, and
features are standardised with training-fold statistics only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import linalg
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold


def trial_folds(n_trials: int, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded K-fold split of trial indices: ``[(train_trials, test_trials), ...]``."""
    if n_trials < n_folds:
        raise ValueError(f"{n_trials} trials cannot make {n_folds} folds")
    return list(KFold(n_folds, shuffle=True, random_state=seed).split(np.arange(n_trials)))


def lagged(features: np.ndarray, behavior: np.ndarray, lag_bins: int):
    """Pair behaviour at bin t with features at bin t - lag (drops ``lag_bins`` bins)."""
    if lag_bins == 0:
        return features, behavior
    return features[:, :-lag_bins], behavior[:, lag_bins:]


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1])


def ridge_fits(x: np.ndarray, y: np.ndarray, alphas) -> list:
    """Ridge regressions of ``y`` on ``x`` (trials x bins x features/targets), one per penalty.

    Features are standardised with these trials' statistics and an intercept is fitted; all
    penalties share one Gram matrix (float64). Returns one ``predict`` per penalty: it maps
    trials x bins x features to trials x bins x targets.
    """
    xf, yf = _flat(x).astype(np.float64), _flat(y).astype(np.float64)
    mean, std, y_mean = xf.mean(axis=0), xf.std(axis=0) + 1e-9, yf.mean(axis=0)
    z = (xf - mean) / std
    gram, zty = z.T @ z, z.T @ (yf - y_mean)
    predicts = []
    for alpha in alphas:
        system = gram + alpha * np.eye(len(gram))
        try:
            weights = linalg.solve(system, zty, assume_a="pos", check_finite=False)
        except linalg.LinAlgError:  # not positive definite to working precision
            weights = linalg.lstsq(system, zty)[0]
        weights /= std[:, None]  # of the raw features
        predicts.append(lambda v, w=weights, b=y_mean - mean @ weights:
                        (_flat(v) @ w + b).reshape(v.shape[:-1] + (-1,)))
    return predicts


def fit_ridge(x_train: np.ndarray, y_train: np.ndarray, alphas, inner_folds: int = 3,
              seed: int = 0):
    """Fit ridge regression on training trials (trials x bins x features/targets).

    The penalty is the one with the best mean R^2 over ``inner_folds`` trial-wise folds of
    the training trials. Returns ``(predict, alpha)``: ``predict(x)`` maps trials x bins x
    features to trials x bins x targets, with the standardisation of the training trials.
    """
    scores = np.zeros(len(alphas))
    for inner_train, inner_test in trial_folds(len(x_train), inner_folds, seed):
        truth = _flat(y_train[inner_test])
        for i, predict in enumerate(ridge_fits(x_train[inner_train], y_train[inner_train], alphas)):
            scores[i] += r2_score(truth, _flat(predict(x_train[inner_test])))
    alpha = float(alphas[int(np.argmax(scores))])
    return ridge_fits(x_train, y_train, [alpha])[0], alpha


def decode_behavior(features: dict[str, np.ndarray], behavior: np.ndarray,
                    target_names: list[str], n_folds: int = 5, lag_bins: int = 0,
                    alphas=tuple(np.logspace(-3, 4, 8)), seed: int = 0, inner_folds: int = 3
                    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Decode behaviour from each feature set with the same trial-wise folds.

    features: method name -> trials x bins x features; behavior: trials x bins x targets.
    Returns the tidy scores (method, target, fold, r2, alpha; target "all" is the
    variance-weighted R^2 over all targets) and the out-of-fold predictions per method
    (trials x bins x targets; the first ``lag_bins`` bins are NaN).
    """
    rows, predictions = [], {}
    folds = trial_folds(len(behavior), n_folds, seed)
    for method, x in features.items():
        x, y = lagged(x, behavior, lag_bins)
        out = np.full(behavior.shape, np.nan)
        for fold, (train, test) in enumerate(folds):
            predict, alpha = fit_ridge(x[train], y[train], alphas, inner_folds, seed)
            predicted = predict(x[test])
            out[test, lag_bins:] = predicted
            per_target = r2_score(_flat(y[test]), _flat(predicted), multioutput="raw_values")
            for name, r2 in zip(target_names, per_target):
                rows.append((method, name, fold, float(r2), alpha))
            rows.append((method, "all", fold, float(r2_score(
                _flat(y[test]), _flat(predicted), multioutput="variance_weighted")), alpha))
        predictions[method] = out
    scores = pd.DataFrame(rows, columns=["method", "target", "fold", "r2", "alpha"])
    return scores, predictions


def summarize_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and standard error of R^2 over folds, per method and target."""
    grouped = scores.groupby(["method", "target"], sort=False)["r2"]
    summary = grouped.agg(["mean", "std", "count"]).reset_index()
    summary["sem"] = summary["std"] / np.sqrt(summary["count"])
    return summary.rename(columns={"mean": "r2_mean", "std": "r2_std", "count": "n_folds",
                                   "sem": "r2_sem"})
