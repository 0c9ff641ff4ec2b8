"""Hyperparameters for LFADS models and their training.

Two flat dataclasses:

* :class:`ModelConfig` -- architecture, priors, augmentations, likelihood.
* :class:`TrainConfig` -- optimiser, loss weights and their ramps, schedules, stopping.

Defaults follow published LFADS settings: the original LFADS code
(Sussillo et al. 2016; Pandarinath et al. 2018) and the lfads-torch
MC_Maze configuration (Sedler & Pandarinath 2023).  Where those two differ the
comment says which one was taken.

Loss convention (matters for the scales below): the reconstruction loss is the
negative log-likelihood *summed* over bins and channels and *averaged* over
trials, the KL terms are summed over latent dimensions and time and averaged
over trials -- i.e. the loss is the negative ELBO per trial, as in the original
LFADS.  KL scales of 1.0 therefore give the plain ELBO.

Both classes have ``from_dict`` which rejects unknown keys with an error
naming the key, and ``to_dict``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelConfig", "TrainConfig"]


class _DictMixin:
    # How the loops ran, which files written before it moved to ``lfads.execution``
    # (:mod:`.execution`) hold here: read and left out.
    EXECUTION_KEYS: frozenset = frozenset()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None):
        """Build from a mapping; unknown keys raise ``KeyError`` naming the key."""
        d = {k: v for k, v in dict(d or {}).items() if k not in cls.EXECUTION_KEYS}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in d if k not in names)
        if unknown:
            raise KeyError(
                f"unknown {cls.__name__} key(s): {', '.join(map(repr, unknown))}; "
                f"valid keys are: {', '.join(sorted(names))}"
            )
        obj = cls(**d)
        obj.validate()
        return obj

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        obj = dataclasses.replace(self, **changes)
        obj.validate()
        return obj

    def validate(self) -> None:  # overridden
        pass


@dataclass
class ModelConfig(_DictMixin):
    EXECUTION_KEYS = frozenset({"impl", "cuda_graphs", "triton_decoder", "native_kernels"})
    # ---- data dimensions (filled in from the input file by ``training.train``) ----
    # One entry per session; a single session is the default.  Held-in channels
    # feed the encoders, recon channels (held-in first, then held-out) are predicted.
    encod_data_dims: list[int] = field(default_factory=list)
    recon_data_dims: list[int] = field(default_factory=list)
    encod_seq_len: int = 0  # bins seen by the encoders (T)
    recon_seq_len: int = 0  # bins predicted (T + forward-prediction bins)
    ext_input_dim: int = 0  # external inputs fed to the generator (0 = none)

    # ---- architecture (lfads-torch MC_Maze 5 ms values) ----
    # None = identity read-in (single session, encoders see the raw counts);
    # an int = per-session linear read-in to this width (needed for multi-session).
    readin_dim: int | None = None
    readin_init: str = "align"  # several sessions: "align" (shared PCs, Pandarinath 2018) or "random"
    train_readin: bool = True  # several sessions: train the read-ins (false: keep them as initialised)
    ic_enc_dim: int = 100  # IC encoder GRU units per direction (orig. LFADS 128, lfads-torch 100)
    ci_enc_dim: int = 80  # controller-input encoder GRU units per direction
    ci_lag: int = 1  # bins by which controller inputs lag the data (no identity shortcut)
    con_dim: int = 80  # controller GRU units; 0 turns the controller off
    co_dim: int = 4  # inferred-input dimensions (0 also turns the controller off)
    ic_dim: int = 100  # initial-condition latent dimensions
    gen_dim: int = 100  # generator GRU units
    fac_dim: int = 40  # factors (low-d readout of the generator)
    dropout_rate: float = 0.05  # orig. LFADS keep_prob 0.95; lfads-torch tunes 0-0.6
    cell_clip: float = 5.0  # generator/controller state clipping (orig. LFADS cell_clip_value)

    # ---- posteriors and priors ----
    ic_post_var_min: float = 1e-4  # floor on IC posterior variance (orig. LFADS)
    ic_prior_var: float = 0.1  # initial IC prior variance (orig. ic_prior_var_scale)
    co_prior: str = "ar1"  # "ar1" (orig. LFADS) or "gaussian" (i.i.d. per bin)
    co_prior_tau: float = 10.0  # AR(1) time constant in bins (orig. prior_ar_atau)
    co_prior_nvar: float = 0.1  # AR(1) innovation (noise) variance (orig. prior_ar_nvar)
    co_prior_train_tau: bool = True  # learn tau (orig. do_train_prior_ar_atau)
    co_prior_train_nvar: bool = True  # learn variance (orig. do_train_prior_ar_nvar)
    co_prior_var: float = 0.1  # variance of the "gaussian" inferred-input prior

    # ---- observation model ----
    # key of lfads_core.lfads.model.likelihoods.LIKELIHOODS: "poisson" (spike counts), "gaussian",
    # "gamma" (positive fluorescence traces) or "zig" (deconvolved calcium events, many zeros)
    likelihood: str = "poisson"

    # ---- augmentations ----
    cd_rate: float = 0.3  # coordinated dropout rate (lfads-torch MC_Maze); 0 = off
    sv_rate: float = 0.0  # sample-validation hold-back fraction; 0 = off
    sv_seed: int = 0  # seed of the fixed sample-validation mask

    def validate(self) -> None:
        if len(self.encod_data_dims) != len(self.recon_data_dims):
            raise ValueError("encod_data_dims and recon_data_dims need one entry per session")
        for e, r in zip(self.encod_data_dims, self.recon_data_dims):
            if r < e:
                raise ValueError("recon channels must include the held-in channels (recon >= encod)")
        if self.recon_seq_len and self.recon_seq_len < self.encod_seq_len:
            raise ValueError("recon_seq_len must be >= encod_seq_len")
        if len(self.encod_data_dims) > 1 and self.readin_dim is None:
            raise ValueError("multi-session models need readin_dim (a shared encoder width)")
        if self.readin_init not in ("align", "random"):
            raise ValueError(f"readin_init must be 'align' or 'random', got {self.readin_init!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError("dropout_rate must be in [0, 1)")
        if not 0.0 <= self.cd_rate < 1.0:
            raise ValueError("cd_rate must be in [0, 1)")
        if not 0.0 <= self.sv_rate < 1.0:
            raise ValueError("sv_rate must be in [0, 1)")
        if self.co_prior not in ("ar1", "gaussian"):
            raise ValueError(f"co_prior must be 'ar1' or 'gaussian', got {self.co_prior!r}")
        if self.ci_lag < 1:
            raise ValueError("ci_lag must be >= 1")
        for name in ("ic_enc_dim", "ic_dim", "gen_dim", "fac_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @property
    def use_controller(self) -> bool:
        return self.con_dim > 0 and self.co_dim > 0 and self.ci_enc_dim > 0

    @property
    def n_sessions(self) -> int:
        return len(self.encod_data_dims)


@dataclass
class TrainConfig(_DictMixin):
    EXECUTION_KEYS = frozenset({"compile"})
    # ---- optimiser (AdamW) ----
    lr: float = 4e-3  # lfads-torch MC_Maze lr_init (orig. LFADS 0.01)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled decay; LFADS regularises with the L2 terms below instead
    grad_clip: float = 200.0  # max global grad norm (orig. LFADS max_grad_norm)
    batch_size: int = 128  # orig. LFADS batch_size
    max_epochs: int = 500

    # ---- loss weights, each ramped linearly from 0 starting at *_ramp_start for *_ramp_epochs ----
    kl_ic_scale: float = 1.0  # 1.0 = plain ELBO (orig. LFADS kl_ic_weight)
    kl_co_scale: float = 1.0  # orig. LFADS kl_co_weight
    l2_gen_scale: float = 2000.0  # on generator recurrent weights (orig. LFADS l2_gen_scale)
    l2_con_scale: float = 0.0  # on controller recurrent weights (orig. LFADS default 0)
    kl_ic_ramp_start: int = 0  # ramps avoid posterior collapse early (orig. kl_start_step)
    kl_ic_ramp_epochs: int = 80  # lfads-torch kl_increase_epoch
    kl_co_ramp_start: int = 0
    kl_co_ramp_epochs: int = 80
    l2_gen_ramp_start: int = 0
    l2_gen_ramp_epochs: int = 80  # lfads-torch l2_increase_epoch
    l2_con_ramp_start: int = 0
    l2_con_ramp_epochs: int = 80

    # ---- learning-rate schedule on the smoothed validation loss (plateau) ----
    lr_factor: float = 0.95  # multiply lr on a plateau (orig. learning_rate_decay_factor)
    lr_patience: int = 6  # epochs without improvement (orig. learning_rate_n_to_compare)
    lr_min: float = 1e-5  # floor (orig. learning_rate_stop)
    stop_at_lr_min: bool = True  # orig. LFADS stops training once lr reaches lr_stop
    loss_smoothing: float = 0.7  # EMA decay of the validation loss (0 = no smoothing)

    # ---- early stopping / model selection ----
    early_stop_patience: int = 200  # lfads-torch EarlyStopping patience on valid/recon_smth
    early_stop_burn_in: int = 80  # no stopping or best-model selection before the ramps end

    # ---- robustness ----
    max_nonfinite_rollbacks: int = 5  # NaN/Inf: roll back + halve lr this many times, then fail

    # ---- misc ----
    seed: int = 0
    posterior_samples: int = 50  # samples averaged for posterior means (lfads-torch default)
    amp: str = "none"  # "none" | "bf16" | "fp16" mixed precision (CUDA only)

    def validate(self) -> None:
        if self.batch_size < 1 or self.max_epochs < 0:
            raise ValueError("batch_size must be >= 1 and max_epochs >= 0")
        if not self.lr > 0 or self.lr_min < 0:
            raise ValueError(f"lr must be > 0 and lr_min >= 0, got lr {self.lr} and lr_min {self.lr_min}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {self.amp!r}")
        if not 0.0 < self.lr_factor <= 1.0:
            raise ValueError("lr_factor must be in (0, 1]")
        if not 0.0 <= self.loss_smoothing < 1.0:
            raise ValueError("loss_smoothing must be in [0, 1)")
        if self.posterior_samples < 1:
            raise ValueError("posterior_samples must be >= 1")
