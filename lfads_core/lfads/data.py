"""Loading ``lfads_input.h5`` (lfads-torch layout) into tensors, plus batching.

File layout (per split ``train``, ``valid`` and, where there are test trials, ``test``):

* ``{split}_encod_data``  int32, trials x T x n_heldin spike counts (encoder input), or floats
  (calcium traces) with NaN where a frame was not observed (dropped frames, motion artefacts)
* ``{split}_recon_data``  the same for trials x (T + fp_bins) x (n_heldin + n_heldout), held-in first
* ``{split}_inds``        int64 trial indices into the original trial table
* optional ``{split}_ext_input`` (trials x T' x n_ext), ``{split}_behavior``, ``{split}_cond_idx``,
  ``{split}_truth_rates`` (expected counts per bin), ``{split}_truth_latents``
* attrs ``bin_width_s``, ``n_heldin``, ``n_heldout``, ``fp_bins``

Training loads ``train`` and ``valid`` only (the default of :func:`load_lfads_h5`): the test
trials are read by posterior sampling alone, so no training step or choice sees them.

Batching is index based (data stay in one tensor, moved to the device once) and
the shuffle order of epoch ``e`` depends only on (seed, e), so resuming at any
epoch reproduces the same batches; with several sessions each batch comes from one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

__all__ = ["SplitData", "LFADSData", "load_lfads_h5", "SessionBatcher"]

SPLITS = ("train", "valid", "test")
TRAINING_SPLITS = ("train", "valid")  # what training reads


@dataclass
class SplitData:
    """One split, as float32 tensors (counts stay integral-valued).

    NaN marks an entry that was not observed: in ``encod`` it becomes 0 (the encoders need
    finite input; coordinated dropout zeroes the entries it drops too), ``recon`` keeps it
    and ``missing`` marks it, so that the loss leaves it out (:meth:`.model.LFADS.recon_nll`)."""

    encod: torch.Tensor  # trials x T x n_heldin
    recon: torch.Tensor  # trials x T_r x n_recon
    inds: torch.Tensor  # trials (int64)
    ext_input: torch.Tensor | None = None  # trials x T' x n_ext
    sv_mask: torch.Tensor | None = None  # trials x T x n_heldin, True = held back (sample validation)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # behavior, cond_idx, truth_* (numpy)
    missing: torch.Tensor | None = field(init=False)  # trials x T_r x n_recon, True = NaN in recon; None if none

    def __post_init__(self):
        missing = torch.isnan(self.encod)
        if missing.any():
            self.encod = self.encod.masked_fill(missing, 0.0)
        missing = torch.isnan(self.recon)
        self.missing = missing if missing.any() else None

    def __len__(self) -> int:
        return self.encod.shape[0]

    def to(self, device) -> "SplitData":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return SplitData(mv(self.encod), mv(self.recon), self.inds, mv(self.ext_input), mv(self.sv_mask), self.extras)


@dataclass
class LFADSData:
    train: SplitData
    valid: SplitData
    attrs: dict[str, Any]
    test: SplitData | None = None  # loaded only when asked for (posterior sampling)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits loaded: train, valid and, if loaded and present, test."""
        return SPLITS if self.test is not None else TRAINING_SPLITS

    @property
    def n_heldin(self) -> int:
        return self.train.encod.shape[2]

    @property
    def n_recon(self) -> int:
        return self.train.recon.shape[2]

    @property
    def encod_seq_len(self) -> int:
        return self.train.encod.shape[1]

    @property
    def recon_seq_len(self) -> int:
        return self.train.recon.shape[1]

    @property
    def ext_input_dim(self) -> int:
        return 0 if self.train.ext_input is None else self.train.ext_input.shape[2]

    def split(self, name: str) -> SplitData:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


def _check(path, f, name):
    if name not in f:
        raise KeyError(f"{path}: missing dataset {name!r} (expected lfads-torch layout)")


def load_lfads_h5(path: str | Path, sv_rate: float = 0.0, sv_seed: int = 0,
                  splits: tuple[str, ...] = TRAINING_SPLITS) -> LFADSData:
    """Read an lfads_input.h5: the ``splits`` asked for (train and valid always; test where
    asked for and the file has it; training never asks).  ``sv_rate > 0`` draws the fixed
    sample-validation masks."""
    from .model.augmentations import SampleValidation

    path = Path(path)
    loaded = {}
    with h5py.File(path, "r") as f:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v.item() if hasattr(v, "item") else v)
                 for k, v in f.attrs.items()}
        for offset, s in enumerate(SPLITS):
            if s not in TRAINING_SPLITS and (s not in splits or f"{s}_encod_data" not in f):
                continue
            for key in ("encod_data", "recon_data", "inds"):
                _check(path, f, f"{s}_{key}")
            encod = torch.from_numpy(np.asarray(f[f"{s}_encod_data"], dtype=np.float32))
            recon = torch.from_numpy(np.asarray(f[f"{s}_recon_data"], dtype=np.float32))
            inds = torch.from_numpy(np.asarray(f[f"{s}_inds"], dtype=np.int64))
            ext = None
            if f"{s}_ext_input" in f:
                ext = torch.from_numpy(np.asarray(f[f"{s}_ext_input"], dtype=np.float32))
            extras = {}
            for key in ("behavior", "cond_idx", "truth_rates", "truth_latents"):
                if f"{s}_{key}" in f:
                    extras[key] = np.asarray(f[f"{s}_{key}"])
            if encod.shape[0] != recon.shape[0] or encod.shape[0] != inds.shape[0]:
                raise ValueError(f"{path}: {s} encod/recon/inds disagree on the number of trials")
            if recon.shape[1] < encod.shape[1] or recon.shape[2] < encod.shape[2]:
                raise ValueError(f"{path}: {s}_recon_data must be at least as long and wide as {s}_encod_data")
            sv = SampleValidation(sv_rate, sv_seed)
            sv_mask = sv.make_mask(tuple(encod.shape), offset) if sv_rate > 0 else None
            loaded[s] = SplitData(encod, recon, inds, ext, sv_mask, extras)
    tr = loaded["train"]
    for name, other in loaded.items():
        if tr.encod.shape[1:] != other.encod.shape[1:] or tr.recon.shape[1:] != other.recon.shape[1:]:
            raise ValueError(f"{path}: train and {name} shapes differ")
    return LFADSData(loaded["train"], loaded["valid"], attrs, loaded.get("test"))


class SessionBatcher:
    """Training batches over one or more sessions (stitched LFADS): each batch holds trials of
    one session. Epoch ``e`` shuffles each session's trials with ``randperm`` seeded by
    (seed, e, session), cuts them into batches, and interleaves the sessions' batches in an
    order seeded by (seed, e); so the order is reproducible and resumable."""

    def __init__(self, sizes: list[int], batch_size: int, seed: int = 0):
        self.sizes, self.batch_size, self.seed = list(sizes), batch_size, seed
        self.epoch = 0

    def batches(self, epoch: int) -> list[tuple[int, torch.Tensor]]:
        """``(session, trial indices)`` pairs of epoch ``epoch``, in training order."""
        self.epoch = epoch + 1
        pairs = []
        for session, n in enumerate(self.sizes):
            seed = int(self.seed) * 7919 + int(epoch) + 1_000_003 * session
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            pairs += [(session, idx) for idx in order.split(self.batch_size)]
        if len(self.sizes) > 1:
            g = torch.Generator().manual_seed((int(self.seed) * 7919 + int(epoch)) * 31 + 17)
            pairs = [pairs[i] for i in torch.randperm(len(pairs), generator=g).tolist()]
        return pairs

    def state_dict(self) -> dict[str, Any]:
        return {"sizes": self.sizes, "batch_size": self.batch_size, "seed": self.seed,
                "epoch": self.epoch}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.sizes = d["sizes"] if "sizes" in d else [d["n"]]  # written before stitching
        self.batch_size, self.seed, self.epoch = d["batch_size"], d["seed"], d["epoch"]
