"""What training writes and reads: the resumable training state, ``checkpoint.pt``,
``train_log.csv`` and the finished ``model.pt``.

A checkpoint belongs to its data and its settings: it records the sha256 of the input file
and the resolved model and training settings, and :func:`checkpoint_mismatch` says why one
cannot be resumed for another input or other settings.
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_path
from .config import ModelConfig, TrainConfig
from .data import SessionBatcher
from .devices import select_device
from .execution import ExecutionConfig, resolve_execution
from .model import LFADS
from .schedules import PlateauScheduler

__all__ = ["TrainingState", "save_checkpoint", "load_checkpoint", "checkpoint_mismatch",
           "write_train_log", "LOG_COLUMNS", "save_model", "load_model"]

LOG_COLUMNS = [
    "epoch", "train_loss", "train_recon", "train_kl_ic", "train_kl_co", "train_l2",
    "valid_loss", "valid_recon", "valid_recon_sv", "valid_kl_ic", "valid_kl_co",
    "valid_loss_smooth", "lr", "kl_ic_weight", "kl_co_weight", "time_s",
]

# The progress counters of TrainingState, stored under the checkpoint's "state" key.
_PROGRESS = ("epoch", "valid_loss_smooth", "best_valid_loss_smooth", "best_epoch", "best_state",
             "bad_epochs", "rollbacks", "rows", "stop_reason")
# Names of earlier versions, read from their checkpoints: progress counters and log columns.
_OLD_PROGRESS = {"ema": "valid_loss_smooth", "best_metric": "best_valid_loss_smooth"}
_OLD_LOG_COLUMNS = {"valid_metric_smooth": "valid_loss_smooth"}


@dataclass
class TrainingState:
    """Everything a resumed run needs: the model, optimiser, LR schedule, grad scaler and
    batch order, the RNG states, and the progress of the run (epochs done, the smoothed
    validation loss, the best epoch and its weights, the log rows, why it stopped)."""

    model: LFADS
    optimizer: torch.optim.Optimizer
    scheduler: PlateauScheduler
    scaler: torch.amp.GradScaler
    batcher: SessionBatcher
    epoch: int = 0  # epochs done = the next epoch's index
    valid_loss_smooth: float | None = None  # smoothed validation reconstruction loss
    best_valid_loss_smooth: float = math.inf  # its lowest value after the burn-in
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None  # weights of the best epoch (CPU)
    bad_epochs: int = 0  # epochs since the best one (after the burn-in)
    rollbacks: int = 0  # non-finite rollbacks so far
    rows: list[dict[str, Any]] = field(default_factory=list)  # train_log.csv rows
    stop_reason: str = ""

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "batcher": self.batcher.state_dict(),
            "rng": _rng_state(),
            "state": {name: getattr(self, name) for name in _PROGRESS},
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.scheduler.load_state_dict(d["scheduler"])
        self.scaler.load_state_dict(d["scaler"])
        self.batcher.load_state_dict(d["batcher"])
        _set_rng_state(d["rng"])
        progress = {_OLD_PROGRESS.get(name, name): value for name, value in d["state"].items()}
        progress["rows"] = [{_OLD_LOG_COLUMNS.get(k, k): v for k, v in row.items()}
                            for row in progress.get("rows", [])]
        for name in _PROGRESS:
            setattr(self, name, progress[name])


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: Path, state: TrainingState, input_sha256: str, settings: dict) -> None:
    """Write ``state`` with the input checksum and the settings it belongs to (atomically)."""
    atomic_torch_save({"input_sha256": input_sha256, "settings": settings, **state.state_dict()},
                      path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def checkpoint_mismatch(blob: dict[str, Any], input_sha256: str, settings: dict[str, dict]) -> str:
    """Why the checkpoint ``blob`` cannot be resumed for this input and these settings
    ("" when it can): the input file's checksum or the first differing setting."""
    recorded = blob.get("input_sha256")
    if recorded is None:
        return "the checkpoint records no input checksum (written by an older version)"
    if recorded != input_sha256:
        return (f"the input file changed (sha256 {recorded[:12]} in the checkpoint, "
                f"{input_sha256[:12]} now)")
    old = blob.get("settings", {})
    for section, values in settings.items():
        before = old.get(section, {})
        for key in sorted(set(values) | set(before)):
            if before.get(key, "<unset>") != values.get(key, "<unset>"):
                return (f"setting {section}.{key} differs ({before.get(key, '<unset>')!r} in the "
                        f"checkpoint, {values.get(key, '<unset>')!r} now)")
    return ""


def write_train_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """``train_log.csv``: one row per epoch (atomically); :data:`LOG_COLUMNS`, then a stitched
    model's per-session validation losses."""
    out = io.StringIO()
    extra = [k for k in (rows[0] if rows else {}) if k not in LOG_COLUMNS]  # per session
    w = csv.DictWriter(out, fieldnames=LOG_COLUMNS + extra, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    with atomic_path(path, fsync=True) as tmp:
        tmp.write_text(out.getvalue())


def save_model(path: Path, state_dict: dict, model_cfg: ModelConfig, train_cfg: TrainConfig,
               meta: dict) -> None:
    """``model.pt``: the kept weights, both configs and metadata (see :func:`load_model`)."""
    atomic_torch_save({"state_dict": state_dict, "model_cfg": model_cfg.to_dict(),
                       "train_cfg": train_cfg.to_dict(), "meta": meta}, path)


def load_model(path: str | Path, device: str | torch.device = "cpu",
               execution: ExecutionConfig | dict | None = None
               ) -> tuple[LFADS, ModelConfig, TrainConfig, dict]:
    """Load ``model.pt`` -> (model in eval mode, ModelConfig, TrainConfig, metadata), its loops
    run as ``execution`` asks (:mod:`.execution`), whichever way it was trained."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = ModelConfig.from_dict(blob["model_cfg"])
    tcfg = TrainConfig.from_dict(blob["train_cfg"])
    dev = select_device(device)
    model = LFADS(mcfg, resolve_execution(execution, dev))
    model.load_state_dict(blob["state_dict"])
    model.to(dev).eval()
    return model, mcfg, tcfg, blob.get("meta", {})


def _rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
