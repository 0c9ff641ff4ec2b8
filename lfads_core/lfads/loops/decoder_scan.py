"""The fast-path kernel of the controller + generator recurrence (``impl="fast"``):
:func:`decoder_scan` (:class:`DecoderScan`), built from the GRU step helpers of
:mod:`.kernels` (gate convention, blocked backward factors and the ``native`` compiled loops
as described there)."""

from __future__ import annotations

import os

import torch

from .cuda_graphs import DecoderScanGraphed, graphs_run_on
from .kernels import (N_FACTORS, _bias_rows, _block_len, _gru_step, _needs_grad, float32_under_autocast,
                      gru_backward_factors, gru_step_backward)
from .native import decoder_backward_loop as native_decoder_backward_loop
from .native import decoder_forward as native_decoder_forward
from .native import runs_on as native_runs_on

__all__ = ["DecoderScan", "decoder_scan"]


def _steps(x: torch.Tensor, rows: int) -> tuple[list[torch.Tensor], bool]:
    """x (T x B' x n) as a list of T step views, and whether they must be added to each of the
    ``rows // B'`` repeats of the batch separately.  A tensor broadcast over time and batch
    (such as a bias) gives one contiguous ``rows x n`` matrix for every step."""
    if x.shape[0] > 0 and x.stride(0) == 0 and x.stride(1) == 0:
        return [_bias_rows(x[0, 0], rows)] * x.shape[0], False
    return list(x.unbind(0)), x.shape[1] != rows


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
                clip: float, loops: str = "python"):
        forward, ctx.backward_loop = _loops(loops)
        outputs, saved = forward(g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks,
                                 eps, clip, save=True)
        ctx.save_for_backward(*saved)
        ctx.clip = clip
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, d_gs, d_gds, d_cps, d_cos):
        return _decoder_backward(ctx.saved_tensors, ctx.clip, d_gs, d_gds, d_cps, d_cos, ctx.backward_loop) + \
            (None,) * 4


def _loops(name: str):
    """The (forward, backward loop) pair of :class:`DecoderScan`: ``python`` (the loops here),
    ``native`` (compiled C, :mod:`.native`) or ``triton`` (one GPU kernel each,
    :mod:`.triton_decoder`, imported only when asked for)."""
    if name == "native":
        return native_decoder_forward, native_decoder_backward_loop
    if name == "triton":
        return _triton_kernels()[:2]
    return _decoder_forward, _decoder_backward_loop


def _triton_runs_on(x: torch.Tensor) -> bool:
    """Whether the Triton decoder serves ``x`` (:func:`.triton_decoder.runs_on`), without
    importing Triton where it cannot run."""
    if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return False
    return _triton_kernels()[2](x)


def _triton_kernels():
    """(forward, backward loop, runs_on) of :mod:`.triton_decoder`, imported on first use, with
    an error naming the setting where Triton is missing."""
    try:
        from .triton_decoder import decoder_backward_loop, decoder_forward, runs_on
    except ImportError as e:
        raise RuntimeError(f"the Triton loops need Triton ({e}); install it (pip install triton) "
                           "or set lfads.execution.loops: auto") from e
    return decoder_forward, decoder_backward_loop, runs_on


def _decoder_backward(saved, clip: float, d_gs, d_gds, d_cps, d_cos, loop=None):
    """The backward of :func:`_decoder_forward` (``saved``: what it returned with ``save``);
    returns the gradients of its first 12 inputs.  ``loop``: the backward loop (default
    :func:`_decoder_backward_loop`)."""
    (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c, n_c,
     gh_c, cos, stds) = saved
    loop = loop or _decoder_backward_loop
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
                 clip: float, cuda_graphs: bool = False, native: bool = False, triton: bool = False):
    """See :class:`DecoderScan`.  Without gradients it runs the forward loop alone, keeping
    no per-step gates (and, without dropout masks, returns the states as the dropped states).
    ``cuda_graphs``: on CUDA, replay the loops as CUDA graphs
    (:class:`~.cuda_graphs.DecoderScanGraphed`).  ``native``: on CPU, run the loops as
    compiled C (:mod:`.native`).  ``triton``: on CUDA, run each loop as one Triton kernel
    (:mod:`.triton_decoder`; takes precedence over ``cuda_graphs``)."""
    args = (g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps)
    args, precision = float32_under_autocast(g0.device.type, args)
    g0 = args[0]
    loops = "triton" if triton and _triton_runs_on(g0) else "native" if native_runs_on(native, g0) else "python"
    if _needs_grad(*args):
        if loops == "python" and cuda_graphs and graphs_run_on(g0.device):
            return DecoderScanGraphed.apply((_decoder_forward, _decoder_backward), *args, clip)
        return DecoderScan.apply(*args, clip, loops)
    with precision:
        return _loops(loops)[0](*args, clip, save=False)[0]
