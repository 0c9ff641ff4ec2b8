"""Which device a job uses: :func:`select_device`, and one GPU per concurrent job on a
multi-GPU workstation (:func:`claim_device`).

Snakemake caps how many jobs that declare ``gpu=1`` run at once (``resources: gpu=N``) but
does not tell a job which GPU to use. :func:`claim_device` does: each job takes the first GPU
that no other job holds, through one lock file per GPU, and keeps it until it ends (a
killed job's lock is released by the operating system).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Iterator

import torch

log = logging.getLogger(__name__)


def select_device(device: str | torch.device = "auto") -> torch.device:
    """"auto": CUDA, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


@contextlib.contextmanager
def claim_slot(n_slots: int, lock_dir: str | Path, poll_s: float = 1.0,
               timeout_s: float | None = None) -> Iterator[int]:
    """Hold the lowest free slot of ``n_slots`` (waiting while all are taken); yields its index."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        for slot in range(n_slots):
            fd = os.open(lock_dir / f"slot{slot}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield slot
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"all {n_slots} slots in {lock_dir} stayed busy for {timeout_s} s")
        time.sleep(poll_s)


@contextlib.contextmanager
def claim_device(device: str = "auto", lock_dir: str | Path = ".snakemake/gpu_locks"):
    """The torch device a job should use, held for the duration of the block.

    ``auto`` with several visible CUDA GPUs (or ``cuda``) claims a free one; an explicit
    ``cuda:K``, ``mps`` or ``cpu`` is used as given. Honours ``CUDA_VISIBLE_DEVICES`` (what a
    cluster scheduler sets for the GPUs it allocated).
    """
    chosen = select_device(device)
    if chosen.type != "cuda" or chosen.index is not None:
        yield chosen
        return
    with claim_slot(torch.cuda.device_count(), lock_dir) as slot:
        log.info("using GPU %d of %d", slot, torch.cuda.device_count())
        yield torch.device("cuda", slot)
