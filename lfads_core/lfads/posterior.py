"""Posterior sampling: average LFADS outputs over posterior samples for every trial.

For each split and each batch of trials the encoders run once (eval mode: no dropout, so
their outputs do not change from sample to sample) and the initial conditions, controller
and generator of ``n_samples`` posterior samples run as a few larger batches of draws
(:func:`sample_split`; ``method="sequential"`` runs the whole model once per sample instead,
with the same draws in the same order); the averages are moved to the CPU batch by batch
(memory stays at one batch).

Outputs per split (``{split}_`` prefix in the HDF5 file; train, valid and, where the input has
them, test):

* ``rates``   trials x T_r x N_r  mean predicted observation (Poisson: expected counts per bin)
* ``factors`` trials x T_r x fac_dim
* ``inferred_inputs``  trials x T_r x co_dim  inferred-input posterior means, averaged over
  samples (``{split}_inputs`` in files of earlier versions)
* ``ic_mean``, ``ic_std``  trials x ic_dim  initial-condition posterior (deterministic)
* ``inds``    trial indices copied from the input file
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from ..fileio import atomic_path
from .data import SPLITS, LFADSData, SplitData, load_lfads_h5
from .checkpoint import load_model
from .devices import select_device
from .model import LFADS

__all__ = ["sample_split", "sample_posterior", "write_posterior_h5", "run_posterior", "SAMPLE_METHODS"]


SAMPLE_METHODS = ("batched", "sequential")


def default_sample_chunk(device: torch.device) -> int:
    """Trial-samples decoded in one pass by the batched sampler: large enough to keep the
    cores (or the GPU) busy, small enough that its working memory stays below that of the
    encoders' pass over a batch of trials (CPU: about 40 MB at the MC_Maze sizes)."""
    return 32768 if device.type == "cuda" else 512


@torch.no_grad()
def sample_split(model: LFADS, split: SplitData, n_samples: int = 50, batch_size: int = 128,
                 device: torch.device | str | None = None, method: str = "batched",
                 sample_chunk: int | None = None, session: int = 0) -> dict[str, np.ndarray]:
    """Posterior averages for one split (numpy, float32); ``session``: the read-in and read-out
    of a stitched model.

    ``method="batched"`` (default): per batch of trials the encoders run once (in evaluation
    mode their outputs are the same for every sample), then the initial conditions,
    controller and generator of several samples run as one larger batch of about
    ``sample_chunk`` trial-samples.  ``method="sequential"``: the whole model runs once per
    sample (the earlier sampler, kept for comparison).  Both draw the same random numbers
    in the same order, so for a fixed seed they give the same averages up to float rounding.
    """
    if method not in SAMPLE_METHODS:
        raise ValueError(f"method must be one of {SAMPLE_METHODS}, got {method!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    keys = ("rates", "factors", "inferred_inputs", "ic_mean", "ic_std")
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    sample = _sample_batch_sequential if method == "sequential" else _sample_batch
    chunk = sample_chunk or default_sample_chunk(device)
    try:
        for idx in torch.arange(len(split)).split(batch_size):
            x = split.encod[idx].to(device, non_blocking=True)
            ext = split.ext_input[idx].to(device, non_blocking=True) if split.ext_input is not None else None
            for k, v in sample(model, x, ext, n_samples, chunk, session).items():
                chunks[k].append(v.float().cpu().numpy())
    finally:
        model.train(was_training)
    res = {k: np.concatenate(v, axis=0).astype(np.float32) for k, v in chunks.items()}
    res["inds"] = split.inds.cpu().numpy().astype(np.int64)
    return res


def _sample_batch_sequential(model: LFADS, x, ext, n_samples: int, chunk: int,
                             session: int = 0) -> dict[str, torch.Tensor]:
    """The whole model once per sample."""
    acc = {}
    for s in range(n_samples):
        out = model(x, session=session, ext_input=ext, sample_posteriors=True)
        vals = {"rates": model.predicted_mean(out), "factors": out.factors.float(),
                "inferred_inputs": out.co_mean.float()}
        for k, v in vals.items():
            acc[k] = v.clone() if s == 0 else acc[k].add_(v)
    res = {k: v / n_samples for k, v in acc.items()}
    res["ic_mean"], res["ic_std"] = out.ic_mean, out.ic_std
    return res


def _sample_batch(model: LFADS, x, ext, n_samples: int, chunk: int,
                  session: int = 0) -> dict[str, torch.Tensor]:
    """Encoders once; the decoder for ``chunk // B`` samples at a time as one batch."""
    B, Tr = x.shape[0], model.cfg.recon_seq_len
    ic_mean, ic_std, ci = model.encode(x, session)
    ext_tm = model.ext_time_major(ext, ic_mean.dtype)
    # the random draws of the sequential sampler, in its order: per sample the IC noise,
    # then the inferred-input noise
    ic_eps, co_eps = [], []
    for _ in range(n_samples):
        ic_eps.append(torch.randn_like(ic_mean))
        if model.use_controller:
            co_eps.append(torch.randn(Tr, B, model.co_dim, device=x.device, dtype=ic_mean.dtype))
    fac_w = model.generator.factor_matrix()
    sums = {"rates": None, "factors": None, "inferred_inputs": None}
    per_pass = max(1, chunk // B)
    for s0 in range(0, n_samples, per_pass):
        k = min(per_pass, n_samples - s0)
        ic_sample = (ic_mean + ic_std * torch.stack(ic_eps[s0 : s0 + k])).reshape(k * B, -1)
        eps = torch.cat(co_eps[s0 : s0 + k], dim=1) if co_eps else None
        gs, cps = model.decode_repeated(ic_sample, ci, ext_tm, eps)
        gs = gs.view(Tr, k, B, -1)
        for j in range(k):  # factors and rates sample by sample (time-major): the readout's output is the largest array
            f = torch.nn.functional.linear(gs[:, j], fac_w)
            rates = model.likelihood.mean(model.readout(f, session).float())
            sums["rates"] = rates if sums["rates"] is None else sums["rates"].add_(rates)
            sums["factors"] = f.float() if sums["factors"] is None else sums["factors"].add_(f)
        del gs
        if cps is not None:
            co_mean = cps[..., : model.co_dim].view(Tr, k, B, -1).sum(dim=1).transpose(0, 1).float()
        else:
            co_mean = ic_mean.new_zeros(B, Tr, 0)
        inputs = sums["inferred_inputs"]
        sums["inferred_inputs"] = co_mean if inputs is None else inputs.add_(co_mean)
    res = {k: (v / n_samples).transpose(0, 1) if k != "inferred_inputs" else v / n_samples
           for k, v in sums.items()}
    res["ic_mean"], res["ic_std"] = ic_mean, ic_std
    return res


def sample_posterior(model: LFADS, data: LFADSData, n_samples: int = 50, batch_size: int = 128,
                     device: torch.device | str | None = None, seed: int = 0,
                     splits: tuple[str, ...] | None = None, method: str = "batched",
                     sample_chunk: int | None = None, session: int = 0) -> dict[str, np.ndarray]:
    """Posterior averages for every split (default: every split of ``data``) ->
    ``{f"{split}_{key}": array}``.  Seeded.  ``method``, ``sample_chunk``: see :func:`sample_split`."""
    gen_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    try:
        out = {}
        for s in splits or data.splits:
            for k, v in sample_split(model, data.split(s), n_samples, batch_size, device, method,
                                     sample_chunk, session).items():
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
        f.attrs["rates_unit"] = "expected counts per bin"  # ``attrs`` says otherwise for other likelihoods
        for k, v in (attrs or {}).items():
            try:
                f.attrs[k] = v
            except (TypeError, ValueError):
                f.attrs[k] = str(v)


def run_posterior(model_path: str | Path, input_h5: str | Path, output_h5: str | Path,
                  n_samples: int | None = None, batch_size: int = 128, device: str = "auto",
                  seed: int | None = None, session: int = 0,
                  execution: dict | None = None) -> dict[str, np.ndarray]:
    """Load ``model.pt``, sample posteriors for all trials of ``input_h5`` (session ``session``
    of a stitched model), write ``output_h5``.
    ``n_samples`` and ``seed`` default to the model's ``TrainConfig.posterior_samples`` and
    ``seed``.  ``execution``: how the loops run (:mod:`.execution`)."""
    dev = select_device(device)
    model, mcfg, tcfg, meta = load_model(model_path, dev, execution)
    data = load_lfads_h5(input_h5, splits=SPLITS)
    n = n_samples or tcfg.posterior_samples
    seed = tcfg.seed if seed is None else seed
    res = sample_posterior(model, data, n, batch_size, dev, seed, session=session)
    attrs = {"n_samples": n, "seed": seed, "best_epoch": meta.get("best_epoch", -1),
             "session": session}
    if mcfg.likelihood != "poisson":
        attrs["rates_unit"] = "expected observation per bin (data units)"
    for k in ("bin_width_s", "n_heldin", "n_heldout", "fp_bins"):
        if k in data.attrs:
            attrs[k] = data.attrs[k]
    write_posterior_h5(output_h5, res, attrs)
    return res
