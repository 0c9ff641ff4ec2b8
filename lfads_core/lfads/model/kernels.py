"""The hand-written fast-path kernels of the recurrences (``impl="fast"``).

* :func:`gru_scan` (:class:`GRUScan`): D independent GRUs (e.g. the generator without
  controller, or one direction of an encoder) over T steps from precomputed input projections.
* :func:`decoder_scan` (:class:`DecoderScan`): the controller + generator recurrence.

Gate convention as in :mod:`.generator` (PyTorch/cuDNN: reset gate applied after the
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

With ``native`` (``ModelConfig.native_kernels``, CPU float32 only) the forward and backward
loops run compiled from C instead (:mod:`.native`): same saved gates and returned gradients,
to float rounding; the weight gradients are formed here either way.
"""

from __future__ import annotations

import math

import torch

from .cuda_graphs import DecoderScanGraphed, graphs_run_on
from .native import decoder_backward_loop as native_decoder_backward_loop
from .native import decoder_forward as native_decoder_forward
from .native import gru_scan_backward as native_gru_scan_backward
from .native import gru_scan_forward as native_gru_scan_forward
from .native import runs_on as native_runs_on

__all__ = ["GRUScan", "gru_scan", "DecoderScan", "decoder_scan", "gru_backward_factors",
           "gru_step_backward"]


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


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


def _steps(x: torch.Tensor, rows: int) -> tuple[list[torch.Tensor], bool]:
    """x (T x B' x n) as a list of T step views, and whether they must be added to each of the
    ``rows // B'`` repeats of the batch separately.  A tensor broadcast over time and batch
    (such as a bias) gives one contiguous ``rows x n`` matrix for every step."""
    if x.shape[0] > 0 and x.stride(0) == 0 and x.stride(1) == 0:
        return [_bias_rows(x[0, 0], rows)] * x.shape[0], False
    return list(x.unbind(0)), x.shape[1] != rows


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
    return forward(xp, h0, w_hh, b_hh, clip, save=False)[0]


# ---------------------------------------------------------------------------- decoder scan
def _decoder_forward(g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps,
                     clip: float, save: bool):
    """The controller + generator loop (see :class:`DecoderScan`).  Returns the outputs
    (gs, gds, cps, cos) and, with ``save``, what the backward needs.  Without ``save``, cx and
    gx may cover B' trials of a batch of B = k B' rows made of k repeats of them (posterior
    samples: row j B' + b is trial b)."""
    Tr, C3 = cx.shape[0], cx.shape[2]
    B = g0.shape[0]
    C, G, K = C3 // 3, g0.shape[1], w_cg.shape[1]
    new = cx.new_empty
    gs, cps, cos = new(Tr, B, G), new(Tr, B, 2 * K), new(Tr, B, K)
    # without dropout masks the dropped states are the states (a copy only when autograd needs two outputs)
    gds = new(Tr, B, G) if masks is not None or save else gs
    hcs = new(Tr, B, C) if save else None
    if save:
        rz_g, n_g, gh_g = new(Tr, B, 2 * G), new(Tr, B, G), new(Tr, B, 3 * G)
        rz_c, n_c, gh_c = new(Tr, B, 2 * C), new(Tr, B, C), new(Tr, B, 3 * C)
        stds = new(Tr, B, K) if eps is not None else None
        rz_g_l, n_g_l, gh_g_l = rz_g.unbind(0), n_g.unbind(0), gh_g.unbind(0)
        rz_c_l, n_c_l, gh_c_l, hcs_l = rz_c.unbind(0), n_c.unbind(0), gh_c.unbind(0), hcs.unbind(0)
    else:
        one_g = (new(B, 2 * G), new(B, G), new(B, 3 * G))
        one_c = (new(B, 2 * C), new(B, C), new(B, 3 * C))
        hc_bufs = (new(B, C), new(B, C))
        std1 = new(B, K)
    ac, ag = new(B, 3 * C), new(B, 3 * G)
    w_gc_t, w_hh_c_t, w_co_t, w_cg_t, w_hh_g_t = w_gc.t(), w_hh_c.t(), w_co.t(), w_cg.t(), w_hh_g.t()
    gd0 = g0 * masks[0] if masks is not None else g0
    (cx_l, cx_rep), (gx_l, gx_rep) = _steps(cx, B), _steps(gx, B)
    if save and (cx_rep or gx_rep):
        raise ValueError("repeated trials are for sampling without gradients only")
    gs_l, gds_l, cps_l, cos_l = gs.unbind(0), gds.unbind(0), cps.unbind(0), cos.unbind(0)
    b_hh_c, b_hh_g, b_co = _bias_rows(b_hh_c, B), _bias_rows(b_hh_g, B), _bias_rows(b_co, B)
    eps_l = eps.unbind(0) if eps is not None else None
    masks_l = masks.unbind(0) if masks is not None else None
    g, hc, gd = g0, hc0, gd0
    for t in range(Tr):
        if save:
            rz_ct, n_ct, gh_ct, hc_new = rz_c_l[t], n_c_l[t], gh_c_l[t], hcs_l[t]
            rz_gt, n_gt, gh_gt = rz_g_l[t], n_g_l[t], gh_g_l[t]
            std_t = stds[t] if eps is not None else None
        else:
            (rz_ct, n_ct, gh_ct), (rz_gt, n_gt, gh_gt), hc_new, std_t = one_c, one_g, hc_bufs[t % 2], std1
        if cx_rep:
            torch.mm(gd, w_gc_t, out=ac)
            ac.view(-1, *cx_l[t].shape).add_(cx_l[t])
        else:
            torch.addmm(cx_l[t], gd, w_gc_t, out=ac)
        torch.addmm(b_hh_c, hc, w_hh_c_t, out=gh_ct)
        _gru_step(ac, gh_ct, hc, clip, rz_ct, n_ct, hc_new, C)
        hc = hc_new
        cp = cps_l[t]
        torch.addmm(b_co, hc, w_co_t, out=cp)
        if eps is not None:
            torch.exp(cp[:, K:] * 0.5, out=std_t)
            torch.addcmul(cp[:, :K], std_t, eps_l[t], out=cos_l[t])
        else:
            cos_l[t].copy_(cp[:, :K])
        if gx_rep:
            torch.mm(cos_l[t], w_cg_t, out=ag)
            ag.view(-1, *gx_l[t].shape).add_(gx_l[t])
        else:
            torch.addmm(gx_l[t], cos_l[t], w_cg_t, out=ag)
        torch.addmm(b_hh_g, g, w_hh_g_t, out=gh_gt)
        _gru_step(ag, gh_gt, g, clip, rz_gt, n_gt, gs_l[t], G)
        g = gs_l[t]
        if masks is not None:
            torch.mul(g, masks_l[t + 1], out=gds_l[t])
        elif gds is not gs:
            gds_l[t].copy_(g)
        gd = gds_l[t]
    outputs = (gs, gds, cps, cos)
    if not save:
        return outputs, None
    saved = (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c,
             n_c, gh_c, cos, stds)
    return outputs, saved


class DecoderScan(torch.autograd.Function):
    """Controller + generator recurrence over T_r bins with a hand-written backward.

    Time-major inputs: g0 (B x G) initial generator state; hc0 (B x C) initial
    controller state; cx (T_r x B x 3C) controller input projection of the
    encodings (+ input bias); gx (T_r x B x 3G) generator input projection of
    external inputs (+ input bias); w_gc (3C x G) = controller factor-input weights
    @ factor matrix; w_hh_c, b_hh_c; w_co, b_co (controller -> inferred-input
    mean/logvar); w_cg (3G x K) inferred input -> generator; w_hh_g, b_hh_g;
    masks ((T_r+1) x B x G, pre-scaled dropout masks, or None); eps (T_r x B x K
    posterior noise, or None for the posterior mean).
    Returns gen states, dropped gen states (T_r x B x G), controller output
    params (T_r x B x 2K) and inferred inputs (T_r x B x K).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # recurrence in fp32 under autocast
    def forward(ctx, g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps,
                clip: float, native: bool = False):
        forward = native_decoder_forward if native else _decoder_forward
        outputs, saved = forward(g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks,
                                 eps, clip, save=True)
        ctx.save_for_backward(*saved)
        ctx.clip, ctx.native = clip, native
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, d_gs, d_gds, d_cps, d_cos):
        return _decoder_backward(ctx.saved_tensors, ctx.clip, d_gs, d_gds, d_cps, d_cos, ctx.native) + \
            (None,) * 4


def _decoder_backward(saved, clip: float, d_gs, d_gds, d_cps, d_cos, native: bool = False):
    """The backward of :func:`_decoder_forward` (``saved``: what it returned with ``save``);
    returns the gradients of its first 12 inputs.  ``native``: the loop in compiled C."""
    (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c, n_c,
     gh_c, cos, stds) = saved
    loop = native_decoder_backward_loop if native else _decoder_backward_loop
    dcx, dgh_c, dgx, dgh_g, dcp, dg0, dhc = loop(saved, clip, d_gs, d_gds, d_cps, d_cos)
    Tr = gs.shape[0]

    def wgrad(dpre, xs, x0):
        """sum_t dpre_t^T @ x_{t-1} with x_{-1} = x0."""
        n_out, n_in = dpre.shape[2], xs.shape[2]
        w = torch.mm(dpre[0].t(), x0)
        if Tr > 1:
            w.addmm_(dpre[1:].reshape(-1, n_out).t(), xs[:-1].reshape(-1, n_in))
        return w

    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
    dw_gc = wgrad(dcx, gds, gd0)
    dw_hh_c = wgrad(dgh_c, hcs, hc0)
    dw_hh_g = wgrad(dgh_g, gs, g0)
    dw_co = torch.mm(flat(dcp).t(), flat(hcs))
    dw_cg = torch.mm(flat(dgx).t(), flat(cos))
    return (dg0, dhc, dcx, dgx, dw_gc, dw_hh_c, flat(dgh_c).sum(0), dw_co, flat(dcp).sum(0), dw_cg, dw_hh_g,
            flat(dgh_g).sum(0))


def _decoder_backward_loop(saved, clip: float, d_gs, d_gds, d_cps, d_cos):
    """The backward loop of :func:`_decoder_backward`: returns dcx, dgh_c, dgx, dgh_g, dcp, dg0, dhc0."""
    (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c, n_c,
     gh_c, cos, stds) = saved
    Tr, B, G = gs.shape
    C, K = hcs.shape[2], cos.shape[2]
    new = gs.new_empty
    dcx, dgh_c, dgx, dgh_g, dcp = new(Tr, B, 3 * C), new(Tr, B, 3 * C), new(Tr, B, 3 * G), new(Tr, B, 3 * G), \
        new(Tr, B, 2 * K)
    dg = torch.zeros_like(g0)
    dhc = torch.zeros_like(hc0)
    dgd_next = torch.zeros_like(g0)  # gradient reaching gd_t from the controller at t+1
    L = min(Tr, _block_len(B * G, gs.device))
    f_g, tmp_g = new(N_FACTORS, L, B, G), new(6, B, G).unbind(0)
    f_c, tmp_c = new(N_FACTORS, L, B, C), new(6, B, C).unbind(0)
    for t in range(Tr - 1, -1, -1):
        if t == Tr - 1 or (t + 1) % L == 0:  # the factors of the block of steps t0..t
            t0 = t - t % L
            k, sl = t + 1 - t0, slice(t0, t + 1)
            g_prev = gs[t0 - 1 : t] if t0 > 0 else torch.cat([g0.unsqueeze(0), gs[:t]])
            gru_backward_factors(g_prev, rz_g[sl], n_g[sl], gh_g[sl], clip, f_g[:, :k])
            hc_prev = hcs[t0 - 1 : t] if t0 > 0 else torch.cat([hc0.unsqueeze(0), hcs[:t]])
            gru_backward_factors(hc_prev, rz_c[sl], n_c[sl], gh_c[sl], clip, f_c[:, :k])
            fg_steps = [f.unbind(0) for f in f_g[:, :k].unbind(1)]
            fc_steps = [f.unbind(0) for f in f_c[:, :k].unbind(1)]
        dgd = d_gds[t] + dgd_next
        dg = dg + d_gs[t] + (dgd * masks[t + 1] if masks is not None else dgd)
        dgz = gru_step_backward(dg, fg_steps[t - t0], clip, dgx[t], dgh_g[t], tmp_g)
        dg = torch.addmm(dgz, dgh_g[t], w_hh_g)
        dco = torch.addmm(d_cos[t], dgx[t], w_cg)
        torch.add(d_cps[t][:, :K], dco, out=dcp[t][:, :K])
        if eps is not None:
            torch.addcmul(d_cps[t][:, K:], dco * 0.5, eps[t] * stds[t], out=dcp[t][:, K:])
        else:
            dcp[t][:, K:] = d_cps[t][:, K:]
        dhc = torch.addmm(dhc, dcp[t], w_co)
        dhz = gru_step_backward(dhc, fc_steps[t - t0], clip, dcx[t], dgh_c[t], tmp_c)
        dhc = torch.addmm(dhz, dgh_c[t], w_hh_c)
        dgd_next = torch.mm(dcx[t], w_gc)
    dg0 = dg + (dgd_next * masks[0] if masks is not None else dgd_next)
    return dcx, dgh_c, dgx, dgh_g, dcp, dg0, dhc


def decoder_scan(g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps,
                 clip: float, cuda_graphs: bool = False, native: bool = False):
    """See :class:`DecoderScan`.  Without gradients it runs the forward loop alone, keeping
    no per-step gates (and, without dropout masks, returns the states as the dropped states).
    ``cuda_graphs``: on CUDA, replay the loops as CUDA graphs
    (:class:`~.cuda_graphs.DecoderScanGraphed`).  ``native``: on CPU, run the loops as
    compiled C (:mod:`.native`)."""
    args = (g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps)
    native = native_runs_on(native, g0)
    if _needs_grad(*args):
        if cuda_graphs and graphs_run_on(g0.device):
            return DecoderScanGraphed.apply((_decoder_forward, _decoder_backward), *args, clip)
        return DecoderScan.apply(*args, clip, native)
    forward = native_decoder_forward if native else _decoder_forward
    return forward(*args, clip, save=False)[0]
