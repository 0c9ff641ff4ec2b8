"""How the model's loops run: asked for once (config ``lfads.execution``), resolved once.

The choice changes no result beyond float rounding, so it is not part of a model: it lives
apart from :class:`.config.ModelConfig`, never enters a checkpoint, and a model trained one
way samples any other way.  :func:`resolve_execution` meets the request against the device
and what is installed, logs what runs and why, and warns once where a request cannot be
met; the model's modules receive the resolved :class:`Execution`, not the request.

``loops`` (the request):

============== =====================================================================
``auto``       CPU: the fast path; CUDA: cuDNN encoders + the decoder as CUDA graphs
``reference``  plain per-step loops (GRU cells), autograd's backward: the readable model
``fast``       precomputed projections and hand-written backward; cuDNN encoders on CUDA
``native``     the fast path's loops compiled from C (CPU; needs a C compiler)
``cuda_graphs`` the fast path with the decoder loop replayed as CUDA graphs (CUDA)
``triton``     the fast path with the decoder loop as Triton kernels (CUDA; needs Triton)
============== =====================================================================

``compile``: ``torch.compile`` the model (CUDA only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

__all__ = ["LOOPS", "ExecutionConfig", "Execution", "resolve_execution"]

log = logging.getLogger(__name__)

LOOPS = ("auto", "reference", "fast", "native", "cuda_graphs", "triton")


@dataclass(frozen=True)
class ExecutionConfig:
    """The request (config ``lfads.execution``): ``loops`` one of :data:`LOOPS`."""

    loops: str = "auto"
    compile: bool = False

    def __post_init__(self):
        if self.loops not in LOOPS:
            raise ValueError(f"loops must be one of {', '.join(LOOPS)}; got {self.loops!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "ExecutionConfig":
        d = dict(d or {})
        unknown = sorted(set(d) - {"loops", "compile"})
        if unknown:
            raise KeyError(f"unknown execution setting(s) {unknown}; allowed: loops, compile")
        return cls(**d)


@dataclass(frozen=True)
class Execution:
    """What runs (resolved): ``impl`` ``fast`` or ``reference``; with the fast path, the loops
    as compiled C (``native``, CPU float32 tensors), the decoder loop as CUDA graphs
    (``cuda_graphs``) or as Triton kernels (``triton``); ``compile``: torch.compile.
    ``what``: the choice in words, as logged."""

    impl: str = "fast"
    native: bool = False
    cuda_graphs: bool = False
    triton: bool = False
    compile: bool = False
    what: str = "fast path"


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _cuda_loops(request: str) -> Execution:
    """The fast path on CUDA: cuDNN encoders, and the decoder loop as asked."""
    if request == "fast":
        return Execution(what="cuDNN encoders + decoder loop in Python")
    if request == "triton":
        try:
            import triton  # noqa: F401
        except ImportError as e:
            _warn_once(f"Triton loops asked for, Triton not installed ({e}): "
                       "cuDNN encoders + CUDA graphs")
        else:
            return Execution(triton=True, what="cuDNN encoders + Triton decoder")
    if request == "native":
        _warn_once("C loops asked for, they run on CPU only: cuDNN encoders + CUDA graphs")
    return Execution(cuda_graphs=True, what="cuDNN encoders + CUDA graphs")


def _cpu_loops(request: str) -> Execution:
    if request == "native":
        from .loops.native import NativeKernelsUnavailable, library

        try:
            library()  # built on first use and cached; without a compiler this fails now
        except NativeKernelsUnavailable as e:
            reason = "no compiler found" if "none found as" in str(e) else "could not build them"
            _warn_once(f"C loops asked for, {reason}: fast path ({e})")
            return Execution(what="fast path")
        return Execution(native=True, what="C loops on CPU")
    if request in ("cuda_graphs", "triton"):
        _warn_once(f"{request} loops asked for, they run on CUDA only: fast path on CPU")
    return Execution(what="fast path on CPU")


def resolve_execution(request: ExecutionConfig | dict | None,
                      device: str | torch.device = "cpu") -> Execution:
    """What runs for ``request`` (an :class:`ExecutionConfig` or its dict) on ``device``;
    logs the choice and why, and warns once for a request that cannot be met."""
    if not isinstance(request, ExecutionConfig):
        request = ExecutionConfig.from_dict(request)
    device = torch.device(device)
    if request.loops == "reference":
        ex = Execution(impl="reference", what="reference loops")
    elif device.type == "cuda":
        ex = _cuda_loops(request.loops)
    elif device.type == "cpu":
        ex = _cpu_loops(request.loops)
    else:
        if request.loops not in ("auto", "fast"):
            _warn_once(f"{request.loops} loops asked for, not on {device.type}: fast path")
        ex = Execution(what=f"fast path on {device.type}")
    compile_ = request.compile and device.type == "cuda"
    if request.compile and not compile_:
        _warn_once(f"compile asked for, torch.compile is used on CUDA only: not compiled on "
                   f"{device.type}")
    if compile_:
        ex = Execution(**{**ex.__dict__, "compile": True, "what": ex.what + " + torch.compile"})
    log.info("loops: %s (execution.loops %s on %s)", ex.what, request.loops, device)
    return ex
