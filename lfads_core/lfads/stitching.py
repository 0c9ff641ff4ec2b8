"""Stitched LFADS: one model for several sessions (Pandarinath et al. 2018, Nature Methods
15:805), with read-in and read-out initialised from an alignment shared across sessions.

Each session observes its own neurons of the same task. Before training:

1. For every session, the training trials' counts are smoothed over time (Gaussian,
   ``ALIGN_SIGMA_S``) and averaged per condition; the conditions all sessions share are used
   (all trials as one condition where a session has no condition labels).
2. The condition averages of all sessions side by side (conditions x bins rows, every session's
   held-in neurons as columns, each centred) give principal components; their scores, scaled
   together so that the first has unit variance, are the shared alignment (each component keeps
   its share of the variance, so the read-in does not amplify the weak, noisy components).
3. Per session, a ridge regression from its centred condition averages onto the first
   ``readin_dim`` scores is its read-in (``W``: neurons -> readin_dim, and a bias that centres),
   and a ridge regression of its log condition-averaged rates (every recon channel) on the
   first ``fac_dim`` scores the weights of its read-out (Poisson; the bias stays at the log mean
   rate).

Only training trials enter (validation trials stay unseen). ``model.readin_init: random``
skips this; ``model.train_readin: false`` keeps the read-ins fixed during training.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import LFADSData
from .model import LFADS

__all__ = ["ALIGN_SIGMA_S", "shared_conditions", "condition_averages", "alignment_maps",
           "init_from_alignment"]

ALIGN_SIGMA_S = 0.05  # smoothing of the counts before condition-averaging (s.d., seconds)
RIDGE = 1e-2  # ridge penalty of the per-session regressions, relative to the mean variance


def shared_conditions(sessions: list[LFADSData]) -> list[int] | None:
    """Condition ids present in every session's training trials; None when a session has no
    condition labels or they share none."""
    labels = [s.train.extras.get("cond_idx") for s in sessions]
    if any(label is None for label in labels):
        return None
    common = set.intersection(*(set(np.asarray(label).tolist()) for label in labels))
    return sorted(common) or None


def condition_averages(counts: np.ndarray, cond_idx: np.ndarray | None,
                       conditions: list[int] | None, sigma_bins: float) -> np.ndarray:
    """trials x bins x neurons counts -> (conditions x bins) x neurons smoothed averages."""
    # Imported here: training imports this module, and a bare GPU machine (benchmarks/gpu_check.sh)
    # has torch, h5py and numpy but no scipy.
    from scipy.ndimage import gaussian_filter1d

    smooth = gaussian_filter1d(counts.astype(np.float64), sigma_bins, axis=1) \
        if sigma_bins > 0 else counts.astype(np.float64)
    if conditions is None:
        return smooth.mean(axis=0)
    return np.concatenate([smooth[cond_idx == c].mean(axis=0) for c in conditions], axis=0)


def _ridge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares ``x @ w ~ y`` with a penalty relative to x's mean variance."""
    penalty = RIDGE * max(float(np.mean(np.var(x, axis=0))), 1e-12) * len(x)
    return np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ y)


def alignment_maps(inputs: list[np.ndarray], outputs: list[np.ndarray], readin_dim: int,
                   fac_dim: int) -> list[dict[str, np.ndarray]]:
    """The read-in and read-out maps of every session from its condition averages.

    ``inputs[k]``: rows x held-in neurons of session k; ``outputs[k]``: the same rows x recon
    channels (counts per bin). Returns per session ``readin_w`` (neurons x readin_dim),
    ``readin_b`` (readin_dim), ``readout_w`` (fac_dim x channels)."""
    centred = [x - x.mean(axis=0) for x in inputs]
    u, sv, _ = np.linalg.svd(np.concatenate(centred, axis=1), full_matrices=False)
    n = max(readin_dim, fac_dim)
    k = min(n, int((sv > sv[0] * 1e-8).sum()))
    scores = np.zeros((len(u), n))
    scores[:, :k] = u[:, :k] * sv[:k]
    if k:  # no variance at all (e.g. no spikes): the scores stay zero
        scores /= scores[:, 0].std()
    maps = []
    for x, xc, y in zip(inputs, centred, outputs):
        w_in = _ridge(xc, scores[:, :readin_dim])
        log_rates = np.log(np.maximum(y, 1e-3))
        w_out = _ridge(scores[:, :fac_dim], log_rates - log_rates.mean(axis=0))
        maps.append({"readin_w": w_in, "readin_b": -x.mean(axis=0) @ w_in, "readout_w": w_out})
    return maps


@torch.no_grad()
def init_from_alignment(model: LFADS, sessions: list[LFADSData]) -> None:
    """Set every session's read-in (``readin_init: align``) and read-out weights from the shared
    alignment (module docstring), and fix the read-ins when ``train_readin`` is false."""
    cfg = model.cfg
    if cfg.readin_init == "align":
        conditions = shared_conditions(sessions)
        bin_width = float(sessions[0].attrs.get("bin_width_s", 0.01))
        sigma = ALIGN_SIGMA_S / bin_width
        T = cfg.encod_seq_len
        inputs, outputs = [], []
        for s in sessions:
            labels = s.train.extras.get("cond_idx")
            inputs.append(condition_averages(s.train.encod.numpy(), labels, conditions, sigma))
            outputs.append(condition_averages(s.train.recon[:, :T].numpy(), labels, conditions,
                                              sigma))
        for k, m in enumerate(alignment_maps(inputs, outputs, cfg.readin_dim, cfg.fac_dim)):
            readin = model.readin.layers[k]
            readin.weight.copy_(torch.from_numpy(m["readin_w"].T))
            readin.bias.copy_(torch.from_numpy(m["readin_b"]))
            if cfg.likelihood == "poisson":  # log rates: the regression's target
                readout = model.readout.layers[k].weight.view(-1, model.likelihood.n_params,
                                                              cfg.fac_dim)
                readout[:, 0].copy_(torch.from_numpy(m["readout_w"].T))
    for parameter in model.readin.parameters():
        parameter.requires_grad_(cfg.train_readin)
