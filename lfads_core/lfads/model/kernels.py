"""The hand-written fast-path kernels of the recurrences (``impl="fast"``).

* :func:`gru_forward_into` / :func:`gru_backward_into`: one GRU step and its backward,
  written into preallocated buffers without autograd bookkeeping.
* :func:`gru_scan` (:class:`GRUScan`): D independent GRUs (the two directions of an encoder,
  or the generator without controller) over T steps from precomputed input projections.
* :class:`DecoderScan`: the controller + generator recurrence with its backward.

Gate convention as in :mod:`.generator` (PyTorch/cuDNN: reset gate applied after the
recurrent matmul; gate order reset, update, candidate). ``impl="reference"`` computes the
same with plain autograd loops; tests check that both agree to float tolerance.
"""

from __future__ import annotations

import math

import torch

__all__ = ["gru_forward_into", "gru_backward_into", "GRUScan", "gru_scan", "DecoderScan"]


def gru_forward_into(xp, gh, h, clip: float, rz, n, h_out) -> None:
    """No-autograd GRU update writing into buffers (used by the hand-written fast paths).

    xp, gh: ... x 3H input- / hidden-side pre-activations (biases included);
    h: ... x H previous state.  Writes rz (... x 2H: reset, update gates),
    n (... x H candidate) and h_out (... x H new, clipped state).
    """
    H = h.shape[-1]
    torch.add(xp[..., : 2 * H], gh[..., : 2 * H], out=rz)
    rz.sigmoid_()
    torch.addcmul(xp[..., 2 * H :], rz[..., :H], gh[..., 2 * H :], out=n)
    n.tanh_()
    torch.lerp(n, h, rz[..., H:], out=h_out)
    if math.isfinite(clip):
        h_out.clamp_(-clip, clip)


def gru_backward_into(dh, h_prev, gh, rz, n, clip: float, dxp, dgh) -> torch.Tensor:
    """Backward of :func:`gru_forward_into` for one step.

    dh: gradient w.r.t. the new state (... x H).  Writes dxp (gradient of the
    input-side pre-activation, ... x 3H) and dgh (of the hidden-side one), and
    returns the direct part of the gradient w.r.t. h_prev (``dh * z``); the caller
    adds ``dgh @ W_hh``.
    """
    H = h_prev.shape[-1]
    r, z = rz[..., :H], rz[..., H:]
    if math.isfinite(clip):
        dh = dh * (torch.lerp(n, h_prev, z).abs() <= clip)
    dpre_n = dh * (1.0 - z) * (1.0 - n * n)
    dxp[..., 2 * H :] = dpre_n
    torch.mul(dpre_n, r, out=dgh[..., 2 * H :])
    torch.mul(dpre_n * gh[..., 2 * H :], r * (1.0 - r), out=dxp[..., :H])
    torch.mul(dh * (h_prev - n), z * (1.0 - z), out=dxp[..., H : 2 * H])
    dgh[..., : 2 * H] = dxp[..., : 2 * H]
    return dh * z


class GRUScan(torch.autograd.Function):
    """D independent GRUs (e.g. the two directions of a bidirectional GRU) advanced
    together over T steps from precomputed input projections.

    xp: D x T x B x 3H (input projection incl. input bias, gates r,z,n);
    h0: D x B x H; w_hh: D x 3H x H; b_hh: D x 3H.  Returns states D x T x B x H.
    Only the recurrent matmuls are inside the loop (one ``addmm`` per direction:
    faster on CPU than a batched matmul); elementwise gate arithmetic covers all
    directions at once, and the weight gradients are one matmul per direction
    after the backward loop.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # recurrence in fp32 under autocast
    def forward(ctx, xp, h0, w_hh, b_hh, clip: float):
        D, T, B, G = xp.shape
        H = G // 3
        w_t = [w_hh[d].t() for d in range(D)]
        hs = xp.new_empty(D, T, B, H)
        rz = xp.new_empty(D, T, B, 2 * H)
        n = xp.new_empty(D, T, B, H)
        gh = xp.new_empty(D, T, B, G)
        h = h0
        for t in range(T):
            for d in range(D):
                torch.addmm(b_hh[d], h[d], w_t[d], out=gh[d, t])
            gru_forward_into(xp[:, t], gh[:, t], h, clip, rz[:, t], n[:, t], hs[:, t])
            h = hs[:, t]
        ctx.save_for_backward(h0, w_hh, hs, rz, n, gh)
        ctx.clip = clip
        return hs

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_hs):
        h0, w_hh, hs, rz, n, gh = ctx.saved_tensors
        D, T, B, H = hs.shape
        dxp = hs.new_empty(D, T, B, 3 * H)
        dgh = hs.new_empty(D, T, B, 3 * H)
        dh = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            hp = hs[:, t - 1] if t > 0 else h0
            dhz = gru_backward_into(dh + grad_hs[:, t], hp, gh[:, t], rz[:, t], n[:, t], ctx.clip,
                                    dxp[:, t], dgh[:, t])
            dh = torch.stack([torch.addmm(dhz[d], dgh[d, t], w_hh[d]) for d in range(D)])
        dw = torch.empty_like(w_hh)
        for d in range(D):
            torch.mm(dgh[d, 1:].reshape(-1, 3 * H).t(), hs[d, :-1].reshape(-1, H), out=dw[d])
            dw[d].addmm_(dgh[d, 0].t(), h0[d])
        db = dgh.view(D, T * B, 3 * H).sum(dim=1)
        return dxp, dh, dw, db, None


def gru_scan(xp, h0, w_hh, b_hh, clip: float = float("inf")):
    """See :class:`GRUScan`.  xp: D x T x B x 3H -> states D x T x B x H."""
    return GRUScan.apply(xp, h0, w_hh, b_hh, clip)


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
                clip: float):
        Tr, B, C3 = cx.shape
        C, G, K = C3 // 3, g0.shape[1], w_cg.shape[1]
        new = cx.new_empty
        gs, gds, rz_g, n_g, gh_g = new(Tr, B, G), new(Tr, B, G), new(Tr, B, 2 * G), new(Tr, B, G), new(Tr, B, 3 * G)
        hcs, rz_c, n_c, gh_c = new(Tr, B, C), new(Tr, B, 2 * C), new(Tr, B, C), new(Tr, B, 3 * C)
        cps, cos = new(Tr, B, 2 * K), new(Tr, B, K)
        stds = new(Tr, B, K) if eps is not None else None
        ac, ag = new(B, 3 * C), new(B, 3 * G)
        w_gc_t, w_hh_c_t, w_co_t, w_cg_t, w_hh_g_t = w_gc.t(), w_hh_c.t(), w_co.t(), w_cg.t(), w_hh_g.t()
        gd0 = g0 * masks[0] if masks is not None else g0
        g, hc, gd = g0, hc0, gd0
        for t in range(Tr):
            torch.addmm(cx[t], gd, w_gc_t, out=ac)
            torch.addmm(b_hh_c, hc, w_hh_c_t, out=gh_c[t])
            gru_forward_into(ac, gh_c[t], hc, clip, rz_c[t], n_c[t], hcs[t])
            hc = hcs[t]
            cp = cps[t]
            torch.addmm(b_co, hc, w_co_t, out=cp)
            if eps is not None:
                torch.exp(cp[:, K:] * 0.5, out=stds[t])
                torch.addcmul(cp[:, :K], stds[t], eps[t], out=cos[t])
            else:
                cos[t].copy_(cp[:, :K])
            torch.addmm(gx[t], cos[t], w_cg_t, out=ag)
            torch.addmm(b_hh_g, g, w_hh_g_t, out=gh_g[t])
            gru_forward_into(ag, gh_g[t], g, clip, rz_g[t], n_g[t], gs[t])
            g = gs[t]
            if masks is not None:
                torch.mul(g, masks[t + 1], out=gds[t])
            else:
                gds[t].copy_(g)
            gd = gds[t]
        ctx.save_for_backward(g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g,
                              gh_g, hcs, rz_c, n_c, gh_c, cos, stds)
        ctx.clip = clip
        return gs, gds, cps, cos

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, d_gs, d_gds, d_cps, d_cos):
        (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c, n_c,
         gh_c, cos, stds) = ctx.saved_tensors
        clip = ctx.clip
        Tr, B, G = gs.shape
        C, K = hcs.shape[2], cos.shape[2]
        new = gs.new_empty
        dcx, dgh_c, dgx, dgh_g, dcp = new(Tr, B, 3 * C), new(Tr, B, 3 * C), new(Tr, B, 3 * G), new(Tr, B, 3 * G), \
            new(Tr, B, 2 * K)
        dg = torch.zeros_like(g0)
        dhc = torch.zeros_like(hc0)
        dgd_next = torch.zeros_like(g0)  # gradient reaching gd_t from the controller at t+1
        for t in range(Tr - 1, -1, -1):
            dgd = d_gds[t] + dgd_next
            dg = dg + d_gs[t] + (dgd * masks[t + 1] if masks is not None else dgd)
            g_prev = gs[t - 1] if t > 0 else g0
            dgz = gru_backward_into(dg, g_prev, gh_g[t], rz_g[t], n_g[t], clip, dgx[t], dgh_g[t])
            dg = torch.addmm(dgz, dgh_g[t], w_hh_g)
            dco = torch.addmm(d_cos[t], dgx[t], w_cg)
            torch.add(d_cps[t][:, :K], dco, out=dcp[t][:, :K])
            if eps is not None:
                torch.addcmul(d_cps[t][:, K:], dco * 0.5, eps[t] * stds[t], out=dcp[t][:, K:])
            else:
                dcp[t][:, K:] = d_cps[t][:, K:]
            dhc = torch.addmm(dhc, dcp[t], w_co)
            hc_prev = hcs[t - 1] if t > 0 else hc0
            dhz = gru_backward_into(dhc, hc_prev, gh_c[t], rz_c[t], n_c[t], clip, dcx[t], dgh_c[t])
            dhc = torch.addmm(dhz, dgh_c[t], w_hh_c)
            dgd_next = torch.mm(dcx[t], w_gc)
        dg0 = dg + (dgd_next * masks[0] if masks is not None else dgd_next)

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
                flat(dgh_g).sum(0), None, None, None)
