"""The hand-written fast-path kernels of the recurrences (``impl="fast"``).

* :func:`gru_scan` (:class:`GRUScan`): D independent GRUs (e.g. the generator without
  controller, or one direction of an encoder) over T steps from precomputed input projections.
* :func:`.decoder_scan.decoder_scan` (in :mod:`.decoder_scan`): the controller + generator
  recurrence, from the step helpers here.

Gate convention as in :mod:`..model.generator` (PyTorch/cuDNN: reset gate applied after the
recurrent matmul; gate order reset, update, candidate). ``impl="reference"`` computes the
same with plain autograd loops; tests check that both agree to float tolerance.

How the loops are kept short (on CPU each small tensor op costs a few microseconds of
dispatch, more than its arithmetic):

* Forward: only what depends on the previous state is inside the loop, written into
  preallocated buffers without autograd bookkeeping. Without gradients (validation,
  posterior sampling) the per-step gate buffers are reused from step to step, so memory is
  that of the outputs only.
* Backward: the factors of each step's local derivatives that do not depend on the incoming
  gradient (``1 - z``, ``1 - n^2``, ``r(1 - r)``, ...) are computed from the saved gates for a
  block of a few steps at a time (:func:`gru_backward_factors`, cache-sized blocks), each as
  the expression the earlier per-step derivative used; the step itself is then 8
  multiplications on contiguous blocks (:func:`gru_step_backward`) instead of about 20
  operations on strided views, with the same result to the last bit (and on a GPU fewer
  kernel launches).
* Weight gradients are one matmul over all steps after the backward loop.

With ``native`` (``Execution.native``, execution ``loops: native``; CPU float32 only) the
forward and backward
loops run compiled from C instead (:mod:`.native`): same saved gates and returned gradients,
to float rounding; the weight gradients are formed here either way.
"""

from __future__ import annotations

import contextlib

import math

import torch

from .native import gru_scan_backward as native_gru_scan_backward
from .native import gru_scan_forward as native_gru_scan_forward
from .native import runs_on as native_runs_on

__all__ = ["GRUScan", "gru_scan", "gru_backward_factors", "gru_step_backward"]


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def float32_under_autocast(device_type: str, tensors: tuple) -> tuple[tuple, contextlib.AbstractContextManager]:
    """The recurrences run in float32 under autocast (with gradients, the autograd functions'
    ``custom_fwd(cast_inputs=float32)`` does this): ``tensors`` cast to float32 and a context
    with autocast off; unchanged, and a null context, without autocast."""
    if not torch.is_autocast_enabled(device_type):
        return tensors, contextlib.nullcontext()
    cast = tuple(t.float() if t is not None and t.is_floating_point() else t for t in tensors)
    return cast, torch.autocast(device_type, enabled=False)


N_FACTORS = 9  # h_prev - n, 1 - z, z, 1 - n^2, r, gh_n, r(1 - r), z(1 - z), not-clipped mask


def gru_backward_factors(h_prev, rz, n, gh, clip: float, out) -> None:
    """The factors of a GRU's local derivatives that do not depend on the incoming gradient,
    for a block of steps (leading dims ``...``), from the gates the forward saved.

    Writes ``out`` (N_FACTORS x ... x H, factor-major so that every factor of a step is one
    contiguous block) = ``[h_prev - n, 1 - z, z, 1 - n^2, r, gh_n, r (1 - r), z (1 - z),
    mask]``, mask being 1 where the new state was not clipped (only with a finite ``clip``).
    Each factor is the expression the earlier per-step derivative used, so training gives the
    same numbers to the last bit as before the factors were computed in blocks.
    """
    H = n.shape[-1]
    r, z = rz[..., :H], rz[..., H:]
    torch.sub(h_prev, n, out=out[0])
    torch.neg(z, out=out[1]).add_(1.0)  # -z + 1 is 1 - z, rounded once
    out[2].copy_(z)
    torch.mul(n, n, out=out[3]).neg_().add_(1.0)
    out[4].copy_(r)
    out[5].copy_(gh[..., 2 * H :])
    torch.neg(r, out=out[6]).add_(1.0).mul_(r)  # (1 - r) r
    torch.mul(z, out[1], out=out[7])
    if math.isfinite(clip):
        torch.lerp(n, h_prev, z, out=out[8])
        out[8].copy_(out[8].abs() <= clip)


def gru_step_backward(dh, f, clip: float, dxp, dgh, tmp) -> torch.Tensor:
    """Backward of one GRU step (:func:`_gru_step`) from its factors ``f`` (the N_FACTORS
    tensors ... x H of this step from :func:`gru_backward_factors`).

    dh: gradient w.r.t. the new state (... x H).  Writes dxp (gradient of the input-side
    pre-activation, ... x 3H) and dgh (of the hidden-side one), and returns the direct part
    of the gradient w.r.t. h_prev (``dh * z``, in ``tmp``: 6 tensors ... x H of scratch); the
    caller adds ``dgh @ W_hh``.  The factors and scratch are contiguous: on CPU an operation on
    strided views costs several times one on contiguous memory.
    """
    if math.isfinite(clip):
        dh = torch.mul(dh, f[8], out=tmp[0])
    H = dh.shape[-1]
    w, u, dhz, dpre_n, v = tmp[1:6]
    torch.mul(dh, f[0], out=w)
    torch.mul(dh, f[1], out=u)
    torch.mul(dh, f[2], out=dhz)
    torch.mul(u, f[3], out=dpre_n)  # dh (1 - z)(1 - n^2)
    torch.mul(dpre_n, f[4], out=dgh[..., 2 * H :])
    torch.mul(dpre_n, f[5], out=v)
    torch.mul(v, f[6], out=dxp[..., :H])
    torch.mul(w, f[7], out=dxp[..., H : 2 * H])
    dxp[..., 2 * H :] = dpre_n
    dgh[..., : 2 * H] = dxp[..., : 2 * H]
    return dhz


def _block_len(n_per_step: int, device: torch.device) -> int:
    """Steps per block of :func:`gru_backward_factors`: about 64k elements a factor on CPU
    (cache-sized), up to 16M elsewhere (a GPU pays per kernel launch, not for cache misses)."""
    return max(1, (65536 if device.type == "cpu" else 1 << 24) // max(n_per_step, 1))


def _bias_rows(b: torch.Tensor, rows: int) -> torch.Tensor:
    """A bias as a contiguous rows x n matrix: ``addmm`` copies its input into the output first,
    and copying a contiguous matrix is several times cheaper than broadcasting a vector."""
    return b.expand(rows, b.shape[-1]).contiguous()


def _gru_step(xp_t, gh_t, h, clip, rz_t, n_t, h_out, H):
    """One GRU update into buffers: gh_t holds ``h @ W_hh.T + b_hh``."""
    torch.add(xp_t[..., : 2 * H], gh_t[..., : 2 * H], out=rz_t)
    rz_t.sigmoid_()
    torch.addcmul(xp_t[..., 2 * H :], rz_t[..., :H], gh_t[..., 2 * H :], out=n_t)
    n_t.tanh_()
    torch.lerp(n_t, h, rz_t[..., H:], out=h_out)
    if math.isfinite(clip):
        h_out.clamp_(-clip, clip)


# ---------------------------------------------------------------------------- GRU scan
def _gru_scan_forward(xp, h0, w_hh, b_hh, clip: float, save: bool):
    """xp: D x T x B x 3H; h0: D x B x H.  Returns hs (D x T x B x H) and, with ``save``,
    the per-step gates (rz D x T x B x 2H, n, gh D x T x B x 3H)."""
    D, T, B, G = xp.shape
    H = G // 3
    w_t = [w_hh[d].t() for d in range(D)]
    b_2d = [_bias_rows(b_hh[d], B) for d in range(D)]
    hs = xp.new_empty(D, T, B, H)
    if save:
        rz, n, gh = xp.new_empty(D, T, B, 2 * H), xp.new_empty(D, T, B, H), xp.new_empty(D, T, B, G)
        rz_l, n_l, gh_l = rz.unbind(1), n.unbind(1), gh.unbind(1)
    else:
        rz1, n1, gh1 = xp.new_empty(D, B, 2 * H), xp.new_empty(D, B, H), xp.new_empty(D, B, G)
    xp_l, hs_l = xp.unbind(1), hs.unbind(1)
    h = h0
    for t in range(T):
        rz_t, n_t, gh_t = (rz_l[t], n_l[t], gh_l[t]) if save else (rz1, n1, gh1)
        for d in range(D):
            torch.addmm(b_2d[d], h[d], w_t[d], out=gh_t[d])
        _gru_step(xp_l[t], gh_t, h, clip, rz_t, n_t, hs_l[t], H)
        h = hs_l[t]
    return hs, ((rz, n, gh) if save else None)


class GRUScan(torch.autograd.Function):
    """D independent GRUs advanced together over T steps from precomputed input projections.

    xp: D x T x B x 3H (input projection incl. input bias, gates r,z,n);
    h0: D x B x H; w_hh: D x 3H x H; b_hh: D x 3H.  Returns states D x T x B x H.
    Only the recurrent matmuls are inside the loop (one ``addmm`` per direction:
    faster on CPU than a batched matmul); elementwise gate arithmetic covers all
    directions at once, and the weight gradients are one matmul per direction
    after the backward loop.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # recurrence in fp32 under autocast
    def forward(ctx, xp, h0, w_hh, b_hh, clip: float, native: bool = False):
        forward = native_gru_scan_forward if native else _gru_scan_forward
        hs, (rz, n, gh) = forward(xp, h0, w_hh, b_hh, clip, save=True)
        ctx.save_for_backward(h0, w_hh, hs, rz, n, gh)
        ctx.clip, ctx.native = clip, native
        return hs

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_hs):
        h0, w_hh, hs, rz, n, gh = ctx.saved_tensors
        D, T, B, H = hs.shape
        if ctx.native:
            dxp, dgh, dh = native_gru_scan_backward(grad_hs, h0, w_hh, hs, rz, n, gh, ctx.clip)
        else:
            dxp, dgh, dh = _gru_scan_backward_loop(grad_hs, h0, w_hh, hs, rz, n, gh, ctx.clip)
        dw = torch.empty_like(w_hh)
        for d in range(D):
            torch.mm(dgh[d, 1:].reshape(-1, 3 * H).t(), hs[d, :-1].reshape(-1, H), out=dw[d])
            dw[d].addmm_(dgh[d, 0].t(), h0[d])
        db = dgh.view(D, T * B, 3 * H).sum(dim=1)
        return dxp, dh, dw, db, None, None


def _gru_scan_backward_loop(grad_hs, h0, w_hh, hs, rz, n, gh, clip: float):
    """The backward loop of :class:`GRUScan`: returns dxp, dgh (D x T x B x 3H) and dh0."""
    D, T, B, H = hs.shape
    new = hs.new_empty
    dxp, dgh = new(D, T, B, 3 * H), new(D, T, B, 3 * H)
    L = min(T, _block_len(D * B * H, hs.device))
    fbuf, tmp = new(N_FACTORS, D, L, B, H), new(6, D, B, H).unbind(0)
    dh, dh_in = torch.zeros_like(h0), new(D, B, H)
    grad_l, dxp_l, dgh_l = grad_hs.unbind(1), dxp.unbind(1), dgh.unbind(1)
    for t in range(T - 1, -1, -1):
        if t == T - 1 or (t + 1) % L == 0:  # the factors of the block of steps t0..t
            t0 = t - t % L
            hp = hs[:, t0 - 1 : t] if t0 > 0 else torch.cat([h0.unsqueeze(1), hs[:, :t]], dim=1)
            k = t + 1 - t0
            gru_backward_factors(hp, rz[:, t0 : t + 1], n[:, t0 : t + 1], gh[:, t0 : t + 1], clip,
                                 fbuf[:, :, :k])
            f_steps = [f.unbind(0) for f in fbuf[:, :, :k].unbind(2)]
        torch.add(dh, grad_l[t], out=dh_in)
        dhz = gru_step_backward(dh_in, f_steps[t - t0], clip, dxp_l[t], dgh_l[t], tmp)
        for d in range(D):
            torch.addmm(dhz[d], dgh_l[t][d], w_hh[d], out=dh[d])
    return dxp, dgh, dh


def gru_scan(xp, h0, w_hh, b_hh, clip: float = float("inf"), native: bool = False):
    """See :class:`GRUScan`.  xp: D x T x B x 3H -> states D x T x B x H.  Without
    gradients it runs the forward loop alone, keeping no per-step gates.  ``native``: on CPU,
    run the loops as compiled C (:mod:`.native`)."""
    native = native_runs_on(native, xp)
    if _needs_grad(xp, h0, w_hh, b_hh):
        return GRUScan.apply(xp, h0, w_hh, b_hh, clip, native)
    forward = native_gru_scan_forward if native else _gru_scan_forward
    (xp, h0, w_hh, b_hh), precision = float32_under_autocast(xp.device.type, (xp, h0, w_hh, b_hh))
    with precision:
        return forward(xp, h0, w_hh, b_hh, clip, save=False)[0]
