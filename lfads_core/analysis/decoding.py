"""Ridge-regression decoding of behaviour: fitted on the training trials, scored on others.

Arrays are trials x time bins x channels. A decoder is fitted on the training trials alone:
its ridge penalty is chosen by trial-wise cross-validation inside them and its features are
standardised with their statistics. It is then scored on the validation and test trials;
the standard error of a score is a bootstrap over the scored trials. Bins that are not
finite in the features or the behaviour (the NaN padding of a continuous recording's
stretches, :mod:`lfads_core.analysis.stretches`, which then take the trials' place) are left
out of every fit and score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import linalg
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold

from .ground_truth import finite_rows


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


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` flattened to bins x columns, bins where either is not finite left out."""
    a, b = _flat(a), _flat(b)
    ok = finite_rows(a, b)
    return (a, b) if ok is None else (a[ok], b[ok])


def finite_r2(true: np.ndarray, predicted: np.ndarray, multioutput="raw_values"):
    """sklearn's R^2 over the finite bins of trials x bins x targets."""
    t, p = _pairs(true, predicted)
    return r2_score(t, p, multioutput=multioutput)


def ridge_fits(x: np.ndarray, y: np.ndarray, alphas) -> list:
    """Ridge regressions of ``y`` on ``x`` (trials x bins x features/targets), one per penalty.

    Features are standardised with these trials' statistics and an intercept is fitted; all
    penalties share one Gram matrix (float64). Returns one ``predict`` per penalty: it maps
    trials x bins x features to trials x bins x targets.
    """
    xf, yf = _pairs(x.astype(np.float64), y.astype(np.float64))
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
        for i, predict in enumerate(ridge_fits(x_train[inner_train], y_train[inner_train], alphas)):
            scores[i] += finite_r2(y_train[inner_test], predict(x_train[inner_test]), "uniform_average")
    alpha = float(alphas[int(np.argmax(scores))])
    return ridge_fits(x_train, y_train, [alpha])[0], alpha


def bootstrap_r2_sem(true: np.ndarray, predicted: np.ndarray, n_bootstrap: int, seed: int,
                     multioutput: str = "raw_values") -> np.ndarray:
    """Standard error of R^2 (per target, or one variance-weighted value with
    ``multioutput="variance_weighted"``) over ``n_bootstrap`` resamplings of whole trials
    (trials x bins x targets) with replacement; NaN with fewer than 2 trials."""
    n = len(true)
    width = true.shape[-1] if multioutput == "raw_values" else 1
    if n < 2 or n_bootstrap < 2:
        return np.full(width, np.nan)
    rng = np.random.default_rng(seed)
    values = np.array([np.atleast_1d(finite_r2(true[k], predicted[k], multioutput))
                       for k in (rng.integers(0, n, n) for _ in range(n_bootstrap))])
    return values.std(axis=0, ddof=1)


def decode_behavior(features: dict[str, dict[str, np.ndarray]], behavior: dict[str, np.ndarray],
                    target_names: list[str], lag_bins: int = 0, alphas=tuple(np.logspace(-3, 4, 8)),
                    seed: int = 0, inner_folds: int = 3, n_bootstrap: int = 200, bootstrap_seed: int = 0
                    ) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Decode behaviour from each feature set: fitted on the ``train`` trials, scored on every
    other split given.

    features: method -> split -> trials x bins x features; behavior: split -> trials x bins x
    targets (``train`` and the scored splits). Returns the tidy scores (method, target, split,
    r2, r2_sem, n_trials, alpha; target "all" is the variance-weighted R^2 over all targets,
    r2_sem a bootstrap over the scored trials seeded by ``bootstrap_seed``; ``seed``: the inner
    folds that choose the penalty) and the predictions per
    method and scored split (trials x bins x targets; the first ``lag_bins`` bins are NaN).
    """
    scored = [split for split in behavior if split != "train"]
    rows, predictions = [], {}
    for method, by_split in features.items():
        x, y = lagged(by_split["train"], behavior["train"], lag_bins)
        predict, alpha = fit_ridge(x, y, alphas, inner_folds, seed)
        predictions[method] = {}
        for split in scored:
            x, y = lagged(by_split[split], behavior[split], lag_bins)
            predicted = predict(x)
            out = np.full(behavior[split].shape, np.nan)
            out[:, lag_bins:] = predicted
            predictions[method][split] = out
            per_target = finite_r2(y, predicted, "raw_values")
            sems = bootstrap_r2_sem(y, predicted, n_bootstrap, bootstrap_seed)
            for name, r2, sem in zip(target_names, per_target, sems):
                rows.append((method, name, split, float(r2), float(sem), len(y), alpha))
            rows.append((method, "all", split,
                         float(finite_r2(y, predicted, "variance_weighted")),
                         float(bootstrap_r2_sem(y, predicted, n_bootstrap, bootstrap_seed,
                                                "variance_weighted")[0]),
                         len(y), alpha))
    scores = pd.DataFrame(rows, columns=["method", "target", "split", "r2", "r2_sem", "n_trials", "alpha"])
    return scores, predictions
