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

The pieces live beside this module: one epoch (and the loss) in :mod:`.epochs`, the state and
the files in :mod:`.checkpoint`, the ramps and the learning-rate rule in :mod:`.schedules`.

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
from .checkpoint import (checkpoint_mismatch, load_checkpoint, save_checkpoint, save_model,
                         write_train_log)
from .config import ModelConfig, TrainConfig
from .data import LFADSData, SplitData, load_lfads_h5
from .devices import select_device
from .execution import ExecutionConfig, resolve_execution
from .epochs import EpochRunner, NonFiniteValue, StopRequested, TrainingPreempted
from .model import LFADS
from .stitching import init_from_alignment

__all__ = ["train", "TrainingPreempted", "TrainResult", "NonFiniteLossError", "model_config_for_data"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised when training keeps producing NaN/Inf after all allowed rollbacks."""


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path
    log_path: Path
    best_epoch: int
    best_valid_loss_smooth: float
    epochs_run: int
    stop_reason: str


# ---------------------------------------------------------------- helpers
def model_config_for_data(model_cfg: ModelConfig, data: LFADSData | list[LFADSData]) -> ModelConfig:
    """Fill the data dimensions of ``model_cfg`` from ``data`` (one session or a list of them;
    error if set and different, or if the sessions' bins or external inputs differ). Several
    sessions without a ``readin_dim`` get the fewest held-in units of any session."""
    sessions = data if isinstance(data, (list, tuple)) else [data]
    for name in ("encod_seq_len", "recon_seq_len", "ext_input_dim"):
        values = [getattr(s, name) for s in sessions]
        if len(set(values)) > 1:
            raise ValueError(f"the sessions disagree on {name}: {values}")
    first = sessions[0]
    dims = {
        "encod_data_dims": [s.n_heldin for s in sessions],
        "recon_data_dims": [s.n_recon for s in sessions],
        "encod_seq_len": first.encod_seq_len,
        "recon_seq_len": first.recon_seq_len,
        "ext_input_dim": first.ext_input_dim,
    }
    for k, v in dims.items():
        cur = getattr(model_cfg, k)
        if cur and cur != v:
            raise ValueError(f"ModelConfig.{k}={cur!r} does not match the data ({v!r})")
    if len(sessions) > 1 and model_cfg.readin_dim is None:  # the fewest held-in units
        dims["readin_dim"] = min(dims["encod_data_dims"])
    return model_cfg.replace(**dims)


def _clock(seconds: float) -> str:
    """Seconds as ``h:mm:ss``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _training_recon(split: SplitData) -> torch.Tensor:
    """The recon data as training sees it: NaN where not observed or held back (sample validation)."""
    if split.sv_mask is None:
        return split.recon
    recon = split.recon.clone()
    T, N = split.sv_mask.shape[1:]
    recon[:, :T, :N].masked_fill_(split.sv_mask, float("nan"))
    return recon


# ---------------------------------------------------------------- main entry
@contextlib.contextmanager
def _stop_on_sigterm(stop: StopRequested, ckpt_path: Path):
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


def _continue_from(tr: EpochRunner, path: str | Path, input_sha256: str, tcfg: TrainConfig) -> None:
    """Load another run's checkpoint into ``tr.state`` for :func:`train`'s ``start_from``."""
    blob = load_checkpoint(Path(path))
    if blob.get("input_sha256") != input_sha256:
        raise ValueError(f"{path} belongs to another input file (sha256 "
                         f"{str(blob.get('input_sha256'))[:12]}, the input's is {input_sha256[:12]})")
    st = tr.state
    st.load_state_dict(blob)
    _seed_everything(tcfg.seed)
    tr.batcher.seed = tcfg.seed
    for group in tr.optimizer.param_groups:
        group["weight_decay"] = tcfg.weight_decay
    tr.scheduler.set_lr(tcfg.lr)
    st.stop_reason, st.rollbacks, st.bad_epochs = "", 0, 0


def _run_epochs(tr: "EpochRunner", tcfg: TrainConfig, save, rollback, ckpt_path: Path, log_path: Path,
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
        except NonFiniteValue as e:
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
        smooth = st.valid_loss_smooth
        st.valid_loss_smooth = vam["metric"] if smooth is None else \
            s * smooth + (1 - s) * vam["metric"]
        tr.scheduler.step(st.valid_loss_smooth)
        if epoch >= tcfg.early_stop_burn_in:
            if st.valid_loss_smooth < st.best_valid_loss_smooth:
                st.best_valid_loss_smooth, st.best_epoch = st.valid_loss_smooth, epoch
                st.bad_epochs = 0
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
            "valid_kl_co": vam["kl_co"], "valid_loss_smooth": st.valid_loss_smooth, "lr": lr_used,
            "kl_ic_weight": w["kl_ic"], "kl_co_weight": w["kl_co"], "time_s": time.perf_counter() - t0,
        }
        row.update({f"valid_{k}": v for k, v in vam.items() if k.startswith("recon_session_")})
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
            vam["recon"], st.valid_loss_smooth, lr_used, row["time_s"], _clock(elapsed),
            _clock(left),
        )
        if progress is not None:
            progress(dict(row))


def train(
    input_h5: str | Path | list[str | Path],
    out_dir: str | Path,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    device: str | torch.device = "auto",
    progress: Callable[[dict[str, Any]], None] | None = None,
    resume: bool | str = True,
    loss_hook: Callable[[int, int, torch.Tensor], torch.Tensor] | None = None,
    start_from: str | Path | None = None,
    execution: ExecutionConfig | dict | None = None,
) -> TrainResult:
    """Train LFADS on ``input_h5``; outputs go to ``out_dir`` (see module docstring).

    input_h5: one ``lfads_input.h5``, or a list of them (stitched LFADS: one model for several
      sessions with the same bins, each with its own read-in and read-out; see
      :mod:`.stitching`). Model selection then uses the loss per trial over all sessions'
      validation trials, and the log adds each session's (``valid_recon_session_{k}``).

    progress: called with the epoch's log row (a dict) after each epoch's checkpoint
      is written (a line is also logged at INFO level).
    resume: continue from ``out_dir/checkpoint.pt`` when present. With True the configs
      must match (else ValueError); with ``"if_compatible"`` a checkpoint written with other
      configs is discarded with a warning and training starts afresh (what the workflow
      wants when a user changes a setting); with False the checkpoint is ignored.
    loss_hook: ``(epoch, batch, loss) -> loss``, applied to each training loss before
      the finiteness check (fault injection for tests).
    start_from: the checkpoint of another run of the same input to continue under these
      settings (population-based training: a member starting from its parent). Its weights,
      optimiser moments, epoch count and log rows are loaded; the learning rate and weight
      decay become ``train_cfg``'s and the RNGs and the batch order are reseeded with
      ``train_cfg.seed``. Training then runs up to ``train_cfg.max_epochs`` in all. The
      checkpoint this run writes records the parent's checksum, so after an interruption it
      resumes from its own checkpoint only when that started from the same parent.
    execution: how the loops run (:mod:`.execution`; default ``auto``), resolved for the
      device; not part of the settings a checkpoint is matched on.
    """
    model_cfg = model_cfg or ModelConfig()
    train_cfg = train_cfg or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = select_device(device)
    ex = resolve_execution(execution, dev)
    paths = list(input_h5) if isinstance(input_h5, (list, tuple)) else [input_h5]
    sessions = [load_lfads_h5(path, model_cfg.sv_rate, model_cfg.sv_seed) for path in paths]
    mcfg = model_config_for_data(model_cfg, sessions)

    _seed_everything(train_cfg.seed)
    model = LFADS(mcfg, ex)
    for k, session in enumerate(sessions):
        model.init_readout(_training_recon(session.train), session=k)
    if len(sessions) > 1:
        init_from_alignment(model, sessions)
    model.to(dev)
    tr = EpochRunner(model, sessions, train_cfg, dev, loss_hook)

    ckpt_path = out_dir / "checkpoint.pt"
    log_path = out_dir / "train_log.csv"
    # A checkpoint belongs to its data and its settings: it records both, and only a
    # checkpoint whose input checksum and resolved settings both match is resumed.
    input_sha256 = "+".join(sha256sum(path) for path in paths)
    settings = {"model": mcfg.to_dict(), "training": train_cfg.to_dict()}
    if start_from is not None:
        settings["start_from"] = {"sha256": sha256sum(start_from)}
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
        if start_from is not None:
            _continue_from(tr, start_from, input_sha256, train_cfg)
            log.info("starting from %s at epoch %d", start_from, st.epoch)
        save()  # the rollback target for a failure in the first epoch

    with _stop_on_sigterm(tr.stop, ckpt_path):
        _run_epochs(tr, train_cfg, save, rollback, ckpt_path, log_path, progress)

    write_train_log(log_path, st.rows)
    if st.best_state is not None:
        best_state, best_epoch, best_loss = st.best_state, st.best_epoch, st.best_valid_loss_smooth
    else:  # ended before the burn-in: keep the last epoch
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        best_epoch = st.epoch - 1
        best_loss = st.valid_loss_smooth if st.valid_loss_smooth is not None else math.nan
    stop_reason = st.stop_reason or "max_epochs reached"
    model_path = out_dir / "model.pt"
    save_model(model_path, best_state, mcfg, train_cfg, {
        "best_epoch": best_epoch, "best_valid_loss_smooth": best_loss, "epochs_run": st.epoch,
        "stop_reason": stop_reason,
        "data_attrs": sessions[0].attrs if len(sessions) == 1 else [s.attrs for s in sessions],
        "input_h5": str(paths[0]) if len(paths) == 1 else [str(path) for path in paths],
        "input_sha256": input_sha256,
    })
    return TrainResult(out_dir, model_path, log_path, best_epoch, best_loss, st.epoch, stop_reason)
