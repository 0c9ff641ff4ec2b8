"""Training LFADS on an ``lfads_input.h5``.

``train(input_h5, out_dir, model_cfg, train_cfg)`` writes into ``out_dir``:

* ``checkpoint.pt`` -- rewritten atomically (tmp file + ``os.replace``) after every
  epoch: model, optimiser, LR scheduler, grad scaler, RNG states (torch CPU/CUDA,
  numpy, python), batch-order state, loss smoothing, best model so far, log rows, and
  what it belongs to: the sha256 of the input file and the resolved settings.
  Calling ``train`` again with the same input and configs resumes from it: a run killed after
  epoch k continues with epoch k+1 and (CPU, same seed) ends with bit-identical
  weights to an uninterrupted run.
* ``train_log.csv`` -- one row per epoch (rewritten atomically from the checkpoint).
* ``model.pt`` -- at the end: best weights + configs (see :func:`.checkpoint.load_model`).

The pieces live beside this module: the state and the files in :mod:`.checkpoint`, the
ramps and the learning-rate rule in :mod:`.schedules`.

Loss per trial: recon NLL (summed over bins and channels) + ramped KL(IC) + ramped
KL(inferred inputs) + ramped L2 on the generator / controller recurrent weights.
With coordinated dropout, held-in recon gradients flow only through the entries
dropped from the input; with sample validation, held-back entries are left out of
the training loss and their NLL on validation trials is the model-selection metric.

Model selection / schedules use the *smoothed* (EMA) validation reconstruction loss
(the sample-validation NLL when ``sv_rate > 0``): the learning rate is multiplied by
``lr_factor`` after ``lr_patience`` epochs without improvement, training stops after
``early_stop_patience`` epochs without improvement (counted after
``early_stop_burn_in``) or once the learning rate reaches ``lr_min``, and the best
epoch after the burn-in is kept (the last epoch if training ends earlier).

Non-finite guard: if a training loss or gradient norm (or a validation loss) is
NaN/Inf, the run rolls back to the last checkpoint (end of the previous good
epoch), halves the learning rate and retries.  After
``train_cfg.max_nonfinite_rollbacks`` such rollbacks it raises
:class:`NonFiniteLossError` naming the epoch and the learning rate; ``out_dir``
then still holds the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..fileio import sha256sum
from .checkpoint import (TrainingState, checkpoint_mismatch, load_checkpoint, save_checkpoint,
                         save_model, write_train_log)
from .config import ModelConfig, TrainConfig
from .data import EpochBatcher, LFADSData, SplitData, load_lfads_h5
from .devices import select_device
from .model import LFADS, CoordinatedDropout, SampleValidation
from .schedules import PlateauScheduler, ramp_weight

__all__ = ["train", "TrainingPreempted", "TrainResult", "NonFiniteLossError", "model_config_for_data"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised when training keeps producing NaN/Inf after all allowed rollbacks."""


class TrainingPreempted(RuntimeError):
    """Training stopped on SIGTERM (what SLURM sends before a kill or requeue).

    The checkpoint of the last finished epoch is on disk; calling :func:`train` again with
    the same settings resumes from it.
    """


class _StopRequested:
    """Set by a SIGTERM handler; checked between batches."""

    def __init__(self):
        self.signal: int | None = None

    def __call__(self, signum, frame):
        self.signal = signum


class _NonFinite(Exception):
    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path
    log_path: Path
    best_epoch: int
    best_metric: float
    epochs_run: int
    stop_reason: str


# ---------------------------------------------------------------- helpers
def model_config_for_data(model_cfg: ModelConfig, data: LFADSData) -> ModelConfig:
    """Fill the data dimensions of ``model_cfg`` from ``data`` (error if set and different)."""
    dims = {
        "encod_data_dims": [data.n_heldin],
        "recon_data_dims": [data.n_recon],
        "encod_seq_len": data.encod_seq_len,
        "recon_seq_len": data.recon_seq_len,
        "ext_input_dim": data.ext_input_dim,
    }
    for k, v in dims.items():
        cur = getattr(model_cfg, k)
        if cur and cur != v:
            raise ValueError(f"ModelConfig.{k}={cur!r} does not match the data ({v!r})")
    return model_cfg.replace(**dims)


def _clock(seconds: float) -> str:
    """Seconds as ``h:mm:ss``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _channel_means(split: SplitData) -> torch.Tensor:
    """Per-channel mean of the recon data, ignoring sample-validation entries."""
    recon = split.recon
    if split.sv_mask is None:
        return recon.mean(dim=(0, 1))
    keep = torch.ones_like(recon, dtype=torch.bool)
    T, N = split.sv_mask.shape[1:]
    keep[:, :T, :N] = ~split.sv_mask
    return (recon * keep).sum(dim=(0, 1)) / keep.sum(dim=(0, 1)).clamp_min(1)


# ---------------------------------------------------------------- epochs
class _Trainer:
    def __init__(self, model: LFADS, data: LFADSData, tcfg: TrainConfig, device: torch.device,
                 loss_hook: Callable | None):
        self.model, self.data, self.cfg, self.device = model, data, tcfg, device
        mcfg = model.cfg
        self.cd = CoordinatedDropout(mcfg.cd_rate)
        self.sv = SampleValidation(mcfg.sv_rate, mcfg.sv_seed)
        self.loss_hook = loss_hook
        self.stop = _StopRequested()
        self.train_split = data.train.to(device)
        self.valid_split = data.valid.to(device)
        self.batcher = EpochBatcher(len(data.train), tcfg.batch_size, shuffle=True, seed=tcfg.seed)
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
        if tcfg.compile:
            if cuda:
                self.forward = torch.compile(model)
            else:
                log.warning("compile=True ignored: torch.compile is only used on CUDA")
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
        return x, split.recon[idx], svm, ext

    def train_epoch(self, epoch: int) -> dict[str, float]:
        model, w = self.model, self.weights(epoch)
        model.train()
        sums = {"loss": 0.0, "recon": 0.0, "kl_ic": 0.0, "kl_co": 0.0, "l2": 0.0}
        n_total = 0
        for b, idx in enumerate(self.batcher.batches(epoch)):
            if self.stop.signal is not None:
                raise TrainingPreempted(f"signal {self.stop.signal} during epoch {epoch}")
            x, recon, svm, ext = self._inputs(self.train_split, idx)
            x, keep = self.cd.mask_input(x) if self.cd.rate > 0 else (x, None)
            with self._autocast():
                out = self.run_model(x, ext_input=ext, sample_posteriors=True)
            nll = model.recon_nll(out, recon)
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
                raise _NonFinite(f"training loss at epoch {epoch}, batch {b}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
            if not self.scaler.is_enabled() and not torch.isfinite(gnorm):
                raise _NonFinite(f"gradient norm at epoch {epoch}, batch {b}")
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = len(idx)
            n_total += n
            for k, v in (("loss", loss), ("recon", recon_loss), ("kl_ic", kl_ic), ("kl_co", kl_co), ("l2", l2)):
                sums[k] += float(v.detach()) * n
        return {k: v / max(n_total, 1) for k, v in sums.items()}

    @torch.no_grad()
    def valid_epoch(self, epoch: int) -> dict[str, float]:
        model, w = self.model, self.weights(epoch)
        model.eval()
        split = self.valid_split
        sums = {"recon": 0.0, "recon_sv": 0.0, "kl_ic": 0.0, "kl_co": 0.0}
        for idx in torch.arange(len(split)).split(self.cfg.batch_size):
            x, recon, svm, ext = self._inputs(split, idx)
            with self._autocast():
                out = self.run_model(x, ext_input=ext, sample_posteriors=False)
            nll = model.recon_nll(out, recon)
            if svm is not None:
                nll, nll_sv = self.sv.split_nll(nll, svm)
                sums["recon_sv"] += float(nll_sv.sum())
            sums["recon"] += float(nll.sum())
            sums["kl_ic"] += float(model.kl_ic(out).sum())
            sums["kl_co"] += float(model.kl_co(out).sum())
        res = {k: v / max(len(split), 1) for k, v in sums.items()}
        l2 = w["l2_gen"] * float(model.l2_gen()) + w["l2_con"] * float(model.l2_con())
        res["loss"] = res["recon"] + w["kl_ic"] * res["kl_ic"] + w["kl_co"] * res["kl_co"] + l2
        if not all(math.isfinite(v) for v in res.values()):
            raise _NonFinite(f"validation loss at epoch {epoch}")
        res["metric"] = res["recon_sv"] if self.model.cfg.sv_rate > 0 else res["recon"]
        return res


# ---------------------------------------------------------------- main entry
@contextlib.contextmanager
def _stop_on_sigterm(stop: _StopRequested, ckpt_path: Path):
    """While training, SIGTERM (what SLURM sends before a kill or requeue) ends the current
    batch and raises :class:`TrainingPreempted`; the checkpoint of the last finished epoch,
    written atomically after every epoch, is where a rerun resumes (at most one epoch of work
    is lost, and the resumed run stays exact)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except TrainingPreempted as exc:
        log.warning("%s: stopped; rerun to resume from %s", exc, ckpt_path)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_epochs(tr: "_Trainer", tcfg: TrainConfig, save, rollback, ckpt_path: Path, log_path: Path,
                progress) -> None:
    """The epoch loop of :func:`train`: train, validate, schedule, checkpoint, log.
    ``save()`` writes the checkpoint, ``rollback()`` restores the last one."""
    st = tr.state
    started, first_epoch = time.perf_counter(), st.epoch
    while st.epoch < tcfg.max_epochs and not st.stop_reason:
        epoch = st.epoch
        t0 = time.perf_counter()
        try:
            trm = tr.train_epoch(epoch)
            vam = tr.valid_epoch(epoch)
        except _NonFinite as e:
            lr_failed = tr.scheduler.lr
            n_rb = st.rollbacks + 1
            if n_rb > tcfg.max_nonfinite_rollbacks:
                raise NonFiniteLossError(
                    f"non-finite {e.where} (lr={lr_failed:.3g}); gave up after "
                    f"{tcfg.max_nonfinite_rollbacks} rollback(s) with the learning rate halved each time. "
                    f"The last good checkpoint (epoch {epoch}) is in {ckpt_path}. Check the input data "
                    f"for NaN/Inf, lower TrainConfig.lr or grad_clip, or raise max_nonfinite_rollbacks."
                ) from None
            rollback()
            st.rollbacks = n_rb
            tr.scheduler.set_lr(lr_failed * 0.5)
            log.warning("non-finite %s: rolled back to epoch %d, lr halved to %.3g (rollback %d/%d)",
                        e.where, st.epoch, tr.scheduler.lr, n_rb, tcfg.max_nonfinite_rollbacks)
            continue

        lr_used = tr.scheduler.lr
        s = tcfg.loss_smoothing
        st.ema = vam["metric"] if st.ema is None else s * st.ema + (1 - s) * vam["metric"]
        tr.scheduler.step(st.ema)
        if epoch >= tcfg.early_stop_burn_in:
            if st.ema < st.best_metric:
                st.best_metric, st.best_epoch, st.bad_epochs = st.ema, epoch, 0
                st.best_state = {k: v.detach().cpu().clone() for k, v in tr.model.state_dict().items()}
            else:
                st.bad_epochs += 1
                if st.bad_epochs >= tcfg.early_stop_patience:
                    st.stop_reason = f"early stopping: no improvement for {st.bad_epochs} epochs"
        if tcfg.stop_at_lr_min and tr.scheduler.lr <= tcfg.lr_min and not st.stop_reason:
            st.stop_reason = f"learning rate reached lr_min={tcfg.lr_min:g}"
        w = tr.weights(epoch)
        row = {
            "epoch": epoch, "train_loss": trm["loss"], "train_recon": trm["recon"], "train_kl_ic": trm["kl_ic"],
            "train_kl_co": trm["kl_co"], "train_l2": trm["l2"], "valid_loss": vam["loss"],
            "valid_recon": vam["recon"], "valid_recon_sv": vam["recon_sv"], "valid_kl_ic": vam["kl_ic"],
            "valid_kl_co": vam["kl_co"], "valid_metric_smooth": st.ema, "lr": lr_used,
            "kl_ic_weight": w["kl_ic"], "kl_co_weight": w["kl_co"], "time_s": time.perf_counter() - t0,
        }
        st.rows.append(row)
        st.epoch = epoch + 1
        save()
        write_train_log(log_path, st.rows)
        elapsed = time.perf_counter() - started
        left = elapsed / (st.epoch - first_epoch) * (tcfg.max_epochs - st.epoch)
        log.info(
            "epoch %d/%d | train loss %.3f recon %.3f kl_ic %.3f kl_co %.3f l2 %.3f | valid recon %.3f "
            "(smooth %.3f) | lr %.2e | %.1fs | elapsed %s, left at most %s",
            epoch + 1, tcfg.max_epochs, trm["loss"], trm["recon"], trm["kl_ic"], trm["kl_co"], trm["l2"],
            vam["recon"], st.ema, lr_used, row["time_s"], _clock(elapsed), _clock(left),
        )
        if progress is not None:
            progress(dict(row))


def train(
    input_h5: str | Path,
    out_dir: str | Path,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    device: str | torch.device = "auto",
    progress: Callable[[dict[str, Any]], None] | None = None,
    resume: bool | str = True,
    loss_hook: Callable[[int, int, torch.Tensor], torch.Tensor] | None = None,
) -> TrainResult:
    """Train LFADS on ``input_h5``; outputs go to ``out_dir`` (see module docstring).

    progress: called with the epoch's log row (a dict) after each epoch's checkpoint
      is written (a line is also logged at INFO level).
    resume: continue from ``out_dir/checkpoint.pt`` when present. With True the configs
      must match (else ValueError); with ``"if_compatible"`` a checkpoint written with other
      configs is discarded with a warning and training starts afresh (what the workflow
      wants when a user changes a setting); with False the checkpoint is ignored.
    loss_hook: ``(epoch, batch, loss) -> loss``, applied to each training loss before
      the finiteness check (fault injection for tests).
    """
    model_cfg = model_cfg or ModelConfig()
    train_cfg = train_cfg or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = select_device(device)
    data = load_lfads_h5(input_h5, model_cfg.sv_rate, model_cfg.sv_seed)
    mcfg = model_config_for_data(model_cfg, data)

    _seed_everything(train_cfg.seed)
    model = LFADS(mcfg)
    model.init_readout_bias(_channel_means(data.train))
    model.to(dev)
    tr = _Trainer(model, data, train_cfg, dev, loss_hook)

    ckpt_path = out_dir / "checkpoint.pt"
    log_path = out_dir / "train_log.csv"
    # A checkpoint belongs to its data and its settings: it records both, and only a
    # checkpoint whose input checksum and resolved settings both match is resumed.
    input_sha256 = sha256sum(input_h5)
    settings = {"model": mcfg.to_dict(), "training": train_cfg.to_dict()}
    st = tr.state

    def save() -> None:
        save_checkpoint(ckpt_path, st, input_sha256, settings)

    def rollback() -> None:
        blob = load_checkpoint(ckpt_path)
        mismatch = checkpoint_mismatch(blob, input_sha256, settings)
        if mismatch:
            raise ValueError(f"{ckpt_path} cannot be resumed: {mismatch}; use a new out_dir or "
                             f"resume='if_compatible' (start afresh)")
        st.load_state_dict(blob)

    if resume == "if_compatible" and ckpt_path.exists():
        mismatch = checkpoint_mismatch(load_checkpoint(ckpt_path), input_sha256, settings)
        if mismatch:
            log.warning("not resuming %s: %s; starting afresh", ckpt_path, mismatch)
            ckpt_path.unlink()
    if resume and ckpt_path.exists():
        rollback()
        log.info("resuming from %s at epoch %d", ckpt_path, st.epoch)
    else:
        save()  # epoch-0 state: the rollback target for a failure in the first epoch

    with _stop_on_sigterm(tr.stop, ckpt_path):
        _run_epochs(tr, train_cfg, save, rollback, ckpt_path, log_path, progress)

    write_train_log(log_path, st.rows)
    if st.best_state is not None:
        best_state, best_epoch, best_metric = st.best_state, st.best_epoch, st.best_metric
    else:  # ended before the burn-in: keep the last epoch
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        best_epoch = st.epoch - 1
        best_metric = st.ema if st.ema is not None else math.nan
    stop_reason = st.stop_reason or "max_epochs reached"
    model_path = out_dir / "model.pt"
    save_model(model_path, best_state, mcfg, train_cfg, {
        "best_epoch": best_epoch, "best_metric": best_metric, "epochs_run": st.epoch,
        "stop_reason": stop_reason, "data_attrs": data.attrs, "input_h5": str(input_h5),
        "input_sha256": input_sha256,
    })
    return TrainResult(out_dir, model_path, log_path, best_epoch, best_metric, st.epoch, stop_reason)
