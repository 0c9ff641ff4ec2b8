"""The fast path's recurrence loops as compiled C on CPU (execution ``loops: native``).

:mod:`.kernels` runs the GRU scans and the controller-generator loop as Python loops of small
tensor operations; on CPU each costs a few microseconds of dispatch, and a training step is
about 12,000 of them.  ``native_kernels.c`` runs the same loops in C: the recurrent matmuls
call the BLAS ``sgemm_`` inside PyTorch's own ``libtorch_cpu`` and each step's gate
arithmetic is one fused, vectorised pass.  Results agree with the Python loops to float
rounding (exp/tanh/sigmoid are polynomial approximations of about 1-2 ulp), not to the bit.

The library is compiled on first use with the machine's C compiler (``$CC``, else ``cc``;
about a second) for this CPU (``-march=native``), with OpenMP from PyTorch's own runtime, and
kept in ``$LFADS_CORE_CACHE`` (default ``~/.cache/lfads_core``) under a name that hashes the
source, the flags, the torch build and the CPU's feature flags, so nodes of a cluster that
share a home directory each get their own.  Loading it also tells glibc's allocator to keep
large freed buffers for reuse (:func:`_keep_large_buffers`).  The dropout masks of the model
and of coordinated dropout are drawn here too (:func:`dropout`, :func:`dropout_draw`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

__all__ = ["NativeKernelsUnavailable", "library", "unavailable_reason", "runs_on", "gru_scan_forward",
           "gru_scan_backward", "decoder_forward", "decoder_backward_loop", "dropout_mask", "dropout_draw", "dropout"]

SOURCE = Path(__file__).with_name("native_kernels.c")
FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math"]


class NativeKernelsUnavailable(RuntimeError):
    """The compiled kernels cannot be built or loaded here (no C compiler, no BLAS in torch)."""


def _torch_lib_dir() -> Path:
    return Path(torch.__file__).parent / "lib"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _library_path() -> Path:
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(FLAGS), torch.__version__,
                                    str(_torch_lib_dir()), platform.machine(), _cpu_flags()]).encode())
    cache = Path(os.environ.get("LFADS_CORE_CACHE") or Path.home() / ".cache" / "lfads_core")
    return cache / f"native_kernels-{key.hexdigest()[:16]}.so"


def _build(target: Path) -> None:
    """Compile SOURCE into ``target``: with OpenMP from PyTorch's own runtime where torch ships
    one (so the row passes use torch's threads), else serial."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise NativeKernelsUnavailable(
            "the C loops need a C compiler (none found as $CC or cc); install one "
            "(e.g. gcc) or set lfads.execution.loops: fast")
    lib_dir = _torch_lib_dir()
    link = [f"-L{lib_dir}", "-ltorch_cpu", f"-Wl,-rpath,{lib_dir}"]
    gomp = sorted(lib_dir.glob("libgomp*.so*"))
    attempts = ([["-fopenmp", *link, str(gomp[0])]] if gomp else []) + [link]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        for extra in attempts:
            cmd = [cc, *FLAGS, str(SOURCE), "-o", tmp, *extra]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                os.replace(tmp, target)  # atomic: concurrent jobs building it do not clash
                return
        raise NativeKernelsUnavailable(
            f"C loops: building {SOURCE.name} failed ({' '.join(cmd)}):\n"
            f"{proc.stderr.strip()[-2000:]}\nset lfads.execution.loops: fast to use the Python loops")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _keep_large_buffers() -> None:
    """glibc only: serve allocations up to 1 GiB from the heap and keep freed memory there.
    By default glibc maps each buffer above 32 MiB fresh from the kernel and unmaps it when
    freed, so the per-step gate buffers of a batch of 256 trials (tens of MB each) cost about
    75,000 page faults a training step; reused, they cost none.  The process holds its
    high-water mark instead of returning it; its peak was 3-5% higher at batch 256 (freed gaps
    are not always reusable)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
    libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)


_P, _I, _L, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong, ctypes.c_float
_SIGNATURES = {
    "lfads_gru_scan_forward": [_I, _I, _I, _I, _P, _L, _L, _L, _I, _P, _P, _P, _F, _I, _P, _P, _P, _P],
    "lfads_gru_scan_backward": [_I, _I, _I, _I, _P, _L, _L, _L, _P, _P, _P, _P, _P, _P, _F, _P, _P, _P],
    "lfads_decoder_forward": [_I] * 5 + [_P] * 3 + [_P, _L, _L, _I] * 2 + [_P] * 10 + [_F, _I] + [_P] * 14,
    "lfads_decoder_backward": [_I] * 5 + [_P] * 18 + [_F] + [_P] * 14,
    "lfads_dropout_mask": [_P, _L, _F, ctypes.c_ulonglong],
    "lfads_dropout_forward": [_P, _P, _P, _L, _F, ctypes.c_ulonglong],
    "lfads_dropout_backward": [_P, _P, _P, _L, _F],
}


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled kernels, built on first use; raises :class:`NativeKernelsUnavailable`."""
    path = _library_path()
    if not path.exists():
        _build(path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise NativeKernelsUnavailable(f"C loops: cannot load {path}: {e}") from e
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
    _keep_large_buffers()
    return lib


def unavailable_reason() -> str | None:
    """None if the compiled kernels load here, else why not."""
    try:
        library()
    except NativeKernelsUnavailable as e:
        return str(e)
    return None


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def _check(*tensors: torch.Tensor | None) -> None:
    for t in tensors:
        if t is not None and (t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous()):
            raise ValueError("native kernels take contiguous float32 CPU tensors")


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x itself if each of its rows (last dim) is contiguous, else a contiguous copy: the C
    loops take other strides as they are (gradients arrive as slices and transposes)."""
    return x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def _source(x: torch.Tensor, rows: int):
    """A T x B' x n input (time and row strides in elements; a stride 0 broadcasts) as the
    C kernels' (pointer, time stride, row stride, row count); B' < rows repeats the B' trials."""
    x = _rows(x)
    bp = x.shape[1] if x.stride(1) else rows
    if rows % bp:
        raise ValueError(f"{rows} rows are not repeats of {bp} trials")
    return x, (x.data_ptr(), x.stride(0), x.stride(1), bp)


def gru_scan_forward(xp, h0, w_hh, b_hh, clip: float, save: bool):
    """As :func:`.kernels._gru_scan_forward` (xp: D x T x B x 3H, each direction's T x B x 3H
    with unit stride on the last dim; h0: D x B x H) -> hs and, with ``save``, (rz, n, gh)."""
    D, T, B, G = xp.shape
    H = G // 3
    xp = xp.contiguous() if D > 1 and xp.stride(0) == 0 else _rows(xp)
    h0, w_hh, b_hh = h0.contiguous(), w_hh.contiguous(), b_hh.contiguous()
    _check(h0, w_hh, b_hh)
    new = xp.new_empty
    hs = new(D, T, B, H)
    steps = T if save else 1
    rz, n, gh = new(D, steps, B, 2 * H), new(D, steps, B, H), new(D, steps, B, G)
    bp = B if xp.stride(2) else 1
    library().lfads_gru_scan_forward(D, T, B, H, xp.data_ptr(), xp.stride(0), xp.stride(1), xp.stride(2), bp,
                                     h0.data_ptr(), w_hh.data_ptr(), b_hh.data_ptr(), clip, int(save),
                                     hs.data_ptr(), rz.data_ptr(), n.data_ptr(), gh.data_ptr())
    return hs, ((rz, n, gh) if save else None)


def gru_scan_backward(grad_hs, h0, w_hh, hs, rz, n, gh, clip: float):
    """The backward loop of :class:`.kernels.GRUScan`: returns dxp, dgh (D x T x B x 3H) and
    dh0 (D x B x H); the caller forms the weight gradients."""
    D, T, B, H = hs.shape
    grad_hs, h0 = _rows(grad_hs), h0.contiguous()
    _check(h0, w_hh, hs, rz, n, gh)
    dxp, dgh = hs.new_empty(D, T, B, 3 * H), hs.new_empty(D, T, B, 3 * H)
    dh = torch.zeros_like(h0)
    library().lfads_gru_scan_backward(D, T, B, H, grad_hs.data_ptr(), *grad_hs.stride()[:3],
                                      *map(_ptr, (h0, w_hh, hs, rz, n, gh)), clip, dxp.data_ptr(),
                                      dgh.data_ptr(), dh.data_ptr())
    return dxp, dgh, dh


def decoder_forward(g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps,
                    clip: float, save: bool):
    """As :func:`.decoder_scan._decoder_forward`, same arguments and returns."""
    Tr, B, G = cx.shape[0], g0.shape[0], g0.shape[1]
    C, K = cx.shape[2] // 3, w_cg.shape[1]
    weights = [t.contiguous() for t in (w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g)]
    g0, hc0 = g0.contiguous(), hc0.contiguous()
    masks = masks.contiguous() if masks is not None else None
    eps = eps.contiguous() if eps is not None else None
    _check(g0, hc0, masks, eps, *weights)
    cx, cx_src = _source(cx, B)
    gx, gx_src = _source(gx, B)
    if save and (cx_src[3] != B or gx_src[3] != B):
        raise ValueError("repeated trials are for sampling without gradients only")
    new = cx.new_empty
    gd0 = g0 * masks[0] if masks is not None else g0
    gs, cps, cos = new(Tr, B, G), new(Tr, B, 2 * K), new(Tr, B, K)
    gds = new(Tr, B, G) if masks is not None or save else gs
    steps = Tr if save else 1
    hcs = new(Tr if save else 2, B, C)
    rz_c, n_c, gh_c = new(steps, B, 2 * C), new(steps, B, C), new(steps, B, 3 * C)
    rz_g, n_g, gh_g = new(steps, B, 2 * G), new(steps, B, G), new(steps, B, 3 * G)
    stds = new(steps, B, K) if eps is not None else None
    ac, ag = new(B, 3 * C), new(B, 3 * G)
    library().lfads_decoder_forward(
        B, Tr, C, G, K, g0.data_ptr(), hc0.data_ptr(), gd0.data_ptr(), *cx_src, *gx_src,
        *map(_ptr, weights), _ptr(masks), _ptr(eps), clip, int(save),
        *map(_ptr, (gs, gds, cps, cos, hcs, rz_c, n_c, gh_c, rz_g, n_g, gh_g, stds, ac, ag)))
    outputs = (gs, gds, cps, cos)
    if not save:
        return outputs, None
    saved = (g0, hc0, gd0, weights[0], weights[1], weights[3], weights[5], weights[6], masks, eps, gs, gds,
             rz_g, n_g, gh_g, hcs, rz_c, n_c, gh_c, cos, stds)
    return outputs, saved


def decoder_backward_loop(saved, clip: float, d_gs, d_gds, d_cps, d_cos):
    """The backward loop of :func:`.decoder_scan._decoder_backward` (``saved`` from
    :func:`decoder_forward` with ``save``): returns dcx, dgh_c, dgx, dgh_g, dcp, dg0, dhc0."""
    (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c, n_c,
     gh_c, cos, stds) = saved
    Tr, B, G = gs.shape
    C, K = hcs.shape[2], cos.shape[2]
    grads = [_rows(g) for g in (d_gs, d_gds, d_cps, d_cos)]
    strides = (ctypes.c_longlong * 8)(*(s for g in grads for s in g.stride()[:2]))
    new = gs.new_empty
    dcx, dgh_c, dgx, dgh_g, dcp = (new(Tr, B, 3 * C), new(Tr, B, 3 * C), new(Tr, B, 3 * G), new(Tr, B, 3 * G),
                                   new(Tr, B, 2 * K))
    dg, dhc = torch.zeros_like(g0), torch.zeros_like(hc0)
    scratch = (new(B, G), new(B, K))  # kept referenced until the call returns
    library().lfads_decoder_backward(
        B, Tr, C, G, K, *map(_ptr, (g0, hc0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, rz_g, n_g, gh_g,
                                    hcs, rz_c, n_c, gh_c, stds)), clip, *map(_ptr, grads), strides,
        *map(_ptr, (dcx, dgh_c, dgx, dgh_g, dcp, dg, dhc, *scratch)))
    return dcx, dgh_c, dgx, dgh_g, dcp, dg, dhc


def runs_on(native: bool, x: torch.Tensor) -> bool:
    """Whether the compiled kernels serve ``x``: asked for, and float32 on CPU (elsewhere the
    Python loops run; on CUDA they launch GPU kernels)."""
    return native and x.device.type == "cpu" and x.dtype == torch.float32


def _seed() -> int:
    """A seed for a compiled dropout draw, from PyTorch's default generator (so
    ``torch.manual_seed`` fixes the draws)."""
    return int(torch.randint(0, 2**62, (1,)))


def dropout_mask(shape, rate: float) -> torch.Tensor:
    """An inverted-dropout mask (float32, CPU): ``1 / (1 - rate)`` with probability
    ``1 - rate``, else 0; several times faster than ``bernoulli_`` on CPU."""
    out = torch.empty(shape)
    library().lfads_dropout_mask(out.data_ptr(), out.numel(), rate, _seed())
    return out


def dropout_draw(x: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverted dropout of x (float32, CPU) in one pass: returns ``x / (1 - rate)`` where kept
    (probability ``1 - rate``), else 0, and the keep mask (bool, same shape)."""
    x = x.contiguous()
    y, keep = torch.empty_like(x), torch.empty(x.shape, dtype=torch.uint8)
    library().lfads_dropout_forward(x.data_ptr(), y.data_ptr(), keep.data_ptr(), x.numel(), rate, _seed())
    return y, keep.view(torch.bool)


class _Dropout(torch.autograd.Function):
    """Inverted dropout with the compiled draw; keeps a byte per element for the backward."""

    @staticmethod
    def forward(ctx, x, rate: float):
        y, keep = dropout_draw(x, rate)
        ctx.save_for_backward(keep)
        ctx.rate = rate
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        (keep,) = ctx.saved_tensors
        dy = dy.contiguous()
        dx = torch.empty_like(dy)
        library().lfads_dropout_backward(dy.data_ptr(), keep.data_ptr(), dx.data_ptr(), dy.numel(), ctx.rate)

        return dx, None


def dropout(layer: torch.nn.Dropout, x: torch.Tensor, native: bool) -> torch.Tensor:
    """``layer(x)``, drawn by the compiled kernels where they serve x."""
    if layer.training and layer.p > 0 and runs_on(native, x):
        return _Dropout.apply(x, layer.p)
    return layer(x)
