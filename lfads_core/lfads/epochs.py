"""One epoch of LFADS training or validation (:class:`EpochRunner`); the epoch loop around it
is :func:`lfads_core.lfads.training.train`.

Loss per trial: recon NLL (summed over the observed bins and channels: entries that are NaN in
the data are left out, with zero gradient) + ramped KL(IC) + ramped
KL(inferred inputs) + ramped L2 on the generator / controller recurrent weights.
With coordinated dropout, held-in recon gradients flow only through the entries
dropped from the input; with sample validation, held-back entries are left out of
the training loss and their NLL on validation trials is the model-selection metric.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Callable

import torch

from .checkpoint import TrainingState
from .config import TrainConfig
from .data import LFADSData, SessionBatcher, SplitData
from .model import LFADS, CoordinatedDropout, SampleValidation
from .schedules import PlateauScheduler, ramp_weight

__all__ = ["EpochRunner", "TrainingPreempted", "NonFiniteValue", "StopRequested"]

log = logging.getLogger(__name__)


class TrainingPreempted(RuntimeError):
    """Training stopped on SIGTERM (what SLURM sends before a kill or requeue).

    The checkpoint of the last finished epoch is on disk; calling :func:`train` again with
    the same settings resumes from it.
    """


class StopRequested:
    """Set by a SIGTERM handler; checked between batches."""

    def __init__(self):
        self.signal: int | None = None

    def __call__(self, signum, frame):
        self.signal = signum


class NonFiniteValue(Exception):
    """A training loss, gradient norm or validation loss that is NaN or Inf (``where``)."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


class EpochRunner:
    """One epoch of training or validation of ``model`` on ``data``: the optimiser, the
    schedule, the grad scaler, the batch order (together: :attr:`state`), mixed precision and
    ``torch.compile`` on CUDA, coordinated dropout and sample validation."""

    def __init__(self, model: LFADS, data: LFADSData | list[LFADSData], tcfg: TrainConfig,
                 device: torch.device, loss_hook: Callable | None):
        """``data``: one session, or a list of sessions (stitched: session ``k`` uses read-in
        and read-out ``k`` of ``model``)."""
        self.model, self.cfg, self.device = model, tcfg, device
        self.sessions = list(data) if isinstance(data, (list, tuple)) else [data]
        mcfg = model.cfg
        ex = model.execution
        self.cd = CoordinatedDropout(mcfg.cd_rate, native=ex.native and ex.impl == "fast")
        self.sv = SampleValidation(mcfg.sv_rate, mcfg.sv_seed)
        self.loss_hook = loss_hook
        self.stop = StopRequested()
        self.train_splits = [session.train.to(device) for session in self.sessions]
        self.valid_splits = [session.valid.to(device) for session in self.sessions]
        # the likelihood's data-only term (Poisson: log k!) once per split, not every batch
        self.nll_constants = {id(sp): model.nll_constant(sp.recon, session)
                              for session, pair in enumerate(zip(self.train_splits, self.valid_splits))
                              for sp in pair}
        self.batcher = SessionBatcher([len(s.train) for s in self.sessions], tcfg.batch_size,
                                      seed=tcfg.seed)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=tcfg.lr, betas=(tcfg.adam_beta1, tcfg.adam_beta2), eps=tcfg.adam_eps,
            weight_decay=tcfg.weight_decay,
        )
        self.scheduler = PlateauScheduler(self.optimizer, tcfg.lr_factor, tcfg.lr_patience, tcfg.lr_min)
        cuda = device.type == "cuda"
        self.amp_dtype = None
        if tcfg.amp != "none":
            if cuda:
                self.amp_dtype = torch.bfloat16 if tcfg.amp == "bf16" else torch.float16
            else:
                log.warning("amp=%s ignored: mixed precision is only used on CUDA", tcfg.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=(cuda and tcfg.amp == "fp16"))
        self.forward = model
        if ex.compile:  # resolved: CUDA only
            self.forward = torch.compile(model)
        self.state = TrainingState(model, self.optimizer, self.scheduler, self.scaler, self.batcher)

    def run_model(self, x, **kw):
        """Forward pass; if the torch.compile'd model fails, warn once and continue eagerly."""
        if self.forward is self.model:
            return self.model(x, **kw)
        try:
            return self.forward(x, **kw)
        except Exception as e:  # compilation problems surface on the first call
            log.warning("torch.compile failed (%s: %s); continuing without compile", type(e).__name__, e)
            self.forward = self.model
            return self.model(x, **kw)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def weights(self, epoch: int) -> dict[str, float]:
        c = self.cfg
        return {
            "kl_ic": c.kl_ic_scale * ramp_weight(epoch, c.kl_ic_ramp_start, c.kl_ic_ramp_epochs),
            "kl_co": c.kl_co_scale * ramp_weight(epoch, c.kl_co_ramp_start, c.kl_co_ramp_epochs),
            "l2_gen": c.l2_gen_scale * ramp_weight(epoch, c.l2_gen_ramp_start, c.l2_gen_ramp_epochs),
            "l2_con": c.l2_con_scale * ramp_weight(epoch, c.l2_con_ramp_start, c.l2_con_ramp_epochs),
        }

    def _inputs(self, split: SplitData, idx: torch.Tensor):
        idx = idx.to(split.encod.device)
        x = split.encod[idx]
        svm = split.sv_mask[idx] if split.sv_mask is not None else None
        if svm is not None:
            x = self.sv.mask_input(x, svm)
        ext = split.ext_input[idx] if split.ext_input is not None else None
        const = self.nll_constants.get(id(split))
        missing = split.missing[idx] if split.missing is not None else None
        return x, split.recon[idx], svm, ext, (const[idx] if const is not None else None), missing

    def train_epoch(self, epoch: int) -> dict[str, float]:
        model, w = self.model, self.weights(epoch)
        model.train()
        sums = {"loss": 0.0, "recon": 0.0, "kl_ic": 0.0, "kl_co": 0.0, "l2": 0.0}
        n_total = 0
        for b, (session, idx) in enumerate(self.batcher.batches(epoch)):
            if self.stop.signal is not None:
                raise TrainingPreempted(f"signal {self.stop.signal} during epoch {epoch}")
            x, recon, svm, ext, const, missing = self._inputs(self.train_splits[session], idx)
            x, keep = self.cd.mask_input(x) if self.cd.rate > 0 else (x, None)
            with self._autocast():
                out = self.run_model(x, session=session, ext_input=ext, sample_posteriors=True)
            nll = model.recon_nll(out, recon, const, missing)
            if keep is not None:
                nll = self.cd.route_gradients(nll, keep)
            if svm is not None:
                nll, _ = self.sv.split_nll(nll, svm)
            recon_loss = nll.sum(dim=(1, 2)).mean()
            kl_ic, kl_co = model.kl_ic(out).mean(), model.kl_co(out).mean()
            l2 = w["l2_gen"] * model.l2_gen() + w["l2_con"] * model.l2_con()
            loss = recon_loss + w["kl_ic"] * kl_ic + w["kl_co"] * kl_co + l2
            if self.loss_hook is not None:
                loss = self.loss_hook(epoch, b, loss)
            if not torch.isfinite(loss):
                raise NonFiniteValue(f"training loss at epoch {epoch}, batch {b}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
            if not self.scaler.is_enabled() and not torch.isfinite(gnorm):
                raise NonFiniteValue(f"gradient norm at epoch {epoch}, batch {b}")
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = len(idx)
            n_total += n
            for k, v in (("loss", loss), ("recon", recon_loss), ("kl_ic", kl_ic), ("kl_co", kl_co), ("l2", l2)):
                sums[k] += float(v.detach()) * n
        return {k: v / max(n_total, 1) for k, v in sums.items()}

    @torch.no_grad()
    def valid_epoch(self, epoch: int) -> dict[str, float]:
        """Validation losses per trial over all sessions' validation trials; with several
        sessions also each session's reconstruction loss (``recon_session_{k}``)."""
        model, w = self.model, self.weights(epoch)
        model.eval()
        sums = {"recon": 0.0, "recon_sv": 0.0, "kl_ic": 0.0, "kl_co": 0.0}
        per_session = []
        for session, split in enumerate(self.valid_splits):
            recon_before = sums["recon"]
            for idx in torch.arange(len(split)).split(self.cfg.batch_size):
                x, recon, svm, ext, const, missing = self._inputs(split, idx)
                with self._autocast():
                    out = self.run_model(x, session=session, ext_input=ext, sample_posteriors=False)
                nll = model.recon_nll(out, recon, const, missing)
                if svm is not None:
                    nll, nll_sv = self.sv.split_nll(nll, svm)
                    sums["recon_sv"] += float(nll_sv.sum())
                sums["recon"] += float(nll.sum())
                sums["kl_ic"] += float(model.kl_ic(out).sum())
                sums["kl_co"] += float(model.kl_co(out).sum())
            per_session.append((sums["recon"] - recon_before) / max(len(split), 1))
        n_valid = sum(len(split) for split in self.valid_splits)
        res = {k: v / max(n_valid, 1) for k, v in sums.items()}
        l2 = w["l2_gen"] * float(model.l2_gen()) + w["l2_con"] * float(model.l2_con())
        res["loss"] = res["recon"] + w["kl_ic"] * res["kl_ic"] + w["kl_co"] * res["kl_co"] + l2
        if not all(math.isfinite(v) for v in res.values()):
            raise NonFiniteValue(f"validation loss at epoch {epoch}")
        res["metric"] = res["recon_sv"] if self.model.cfg.sv_rate > 0 else res["recon"]
        if len(per_session) > 1:
            res.update({f"recon_session_{k}": v for k, v in enumerate(per_session)})
        return res
