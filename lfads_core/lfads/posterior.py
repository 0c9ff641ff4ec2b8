"""Posterior sampling: average LFADS outputs over posterior samples for every trial.

For each split and each batch of trials the model (eval mode: no dropout) is run
``n_samples`` times with sampled initial conditions and inferred inputs; the
averages are moved to the CPU batch by batch (GPU memory stays at one batch).

Outputs per split (``{split}_`` prefix in the HDF5 file):

* ``rates``   trials x T_r x N_r  mean predicted observation (Poisson: expected counts per bin)
* ``factors`` trials x T_r x fac_dim
* ``inputs``  trials x T_r x co_dim  inferred-input posterior means, averaged over samples
* ``ic_mean``, ``ic_std``  trials x ic_dim  initial-condition posterior (deterministic)
* ``inds``    trial indices copied from the input file
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from ..fileio import atomic_path
from .data import LFADSData, SplitData, load_lfads_h5
from .checkpoint import load_model
from .devices import select_device
from .model import LFADS

__all__ = ["sample_posterior", "write_posterior_h5", "run_posterior"]


@torch.no_grad()
def sample_split(model: LFADS, split: SplitData, n_samples: int = 50, batch_size: int = 128,
                 device: torch.device | str | None = None, session: int = 0) -> dict[str, np.ndarray]:
    """Posterior averages for one split (numpy, float32); ``session``: the read-in and read-out
    of a stitched model."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    keys = ("rates", "factors", "inputs", "ic_mean", "ic_std")
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for idx in torch.arange(len(split)).split(batch_size):
        x = split.encod[idx].to(device, non_blocking=True)
        ext = split.ext_input[idx].to(device, non_blocking=True) if split.ext_input is not None else None
        acc = {}
        for s in range(n_samples):
            out = model(x, session=session, ext_input=ext, sample_posteriors=True)
            vals = {"rates": model.predicted_mean(out), "factors": out.factors.float(), "inputs": out.co_mean.float()}
            for k, v in vals.items():
                acc[k] = v.clone() if s == 0 else acc[k].add_(v)
        for k in ("rates", "factors", "inputs"):
            chunks[k].append((acc[k] / n_samples).cpu().numpy())
        chunks["ic_mean"].append(out.ic_mean.float().cpu().numpy())
        chunks["ic_std"].append(out.ic_std.float().cpu().numpy())
    model.train(was_training)
    res = {k: np.concatenate(v, axis=0).astype(np.float32) for k, v in chunks.items()}
    res["inds"] = split.inds.cpu().numpy().astype(np.int64)
    return res


def sample_posterior(model: LFADS, data: LFADSData, n_samples: int = 50, batch_size: int = 128,
                     device: torch.device | str | None = None, seed: int = 0,
                     splits: tuple[str, ...] = ("train", "valid"),
                     session: int = 0) -> dict[str, np.ndarray]:
    """Posterior averages for every split -> ``{f"{split}_{key}": array}``.  Seeded."""
    gen_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    try:
        out = {}
        for s in splits:
            for k, v in sample_split(model, data.split(s), n_samples, batch_size, device,
                                     session).items():
                out[f"{s}_{k}"] = v
    finally:
        torch.set_rng_state(gen_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
    return out


def write_posterior_h5(path: str | Path, results: dict[str, np.ndarray], attrs: dict | None = None) -> None:
    """Write arrays to ``path`` (via a temporary file, then renamed)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in results.items():
            f.create_dataset(k, data=v, compression="gzip" if v.size > 4096 else None)
        f.attrs["rates_unit"] = "expected counts per bin"
        for k, v in (attrs or {}).items():
            try:
                f.attrs[k] = v
            except (TypeError, ValueError):
                f.attrs[k] = str(v)


def run_posterior(model_path: str | Path, input_h5: str | Path, output_h5: str | Path,
                  n_samples: int | None = None, batch_size: int = 128, device: str = "auto",
                  seed: int | None = None, session: int = 0) -> dict[str, np.ndarray]:
    """Load ``model.pt``, sample posteriors for all trials of ``input_h5`` (session ``session``
    of a stitched model), write ``output_h5``.
    ``n_samples`` and ``seed`` default to the model's ``TrainConfig.posterior_samples`` and
    ``seed``."""
    dev = select_device(device)
    model, mcfg, tcfg, meta = load_model(model_path, dev)
    data = load_lfads_h5(input_h5)
    n = n_samples or tcfg.posterior_samples
    seed = tcfg.seed if seed is None else seed
    res = sample_posterior(model, data, n, batch_size, dev, seed, session=session)
    attrs = {"n_samples": n, "seed": seed, "best_epoch": meta.get("best_epoch", -1),
             "session": session}
    for k in ("bin_width_s", "n_heldin", "n_heldout", "fp_bins"):
        if k in data.attrs:
            attrs[k] = data.attrs[k]
    write_posterior_h5(output_h5, res, attrs)
    return res
