"""The controller-generator loop as two Triton kernels (execution ``loops: triton``, CUDA,
off by default).

On a GPU the Python loop of :mod:`.decoder_scan` launches a few hundred small kernels a time
step, so a training step is bound by launches, not arithmetic.  Here each loop is one kernel:
every program carries ``BLOCK_B`` trials through all T_r steps, holding their controller and
generator states in registers and reading the (L2-resident) weights at every step, so a
step's matmuls, gates, inferred-input sampling and dropout are fused.  The forward gives the
outputs of :func:`.decoder_scan._decoder_forward` (also without gradients, on posterior
samples' repeated batches) and in training saves the same gates; the backward loop returns
the gradients of :func:`.decoder_scan._decoder_backward_loop` (the weight gradients stay one
matmul over all steps there); both to float rounding: the matmuls run in IEEE float32 (not TF32;
:data:`DOT_PRECISION`).

Hidden sizes are padded to powers of two (at least 16, as ``tl.dot`` needs); padded units
stay exactly zero.  With ``TRITON_INTERPRET=1`` set before this module is imported the
kernels run on CPU tensors through Triton's interpreter, which is how the tests check them
without a GPU.  Off until a GPU run (``benchmarks/gpu_check.sh``) has proved it.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

__all__ = ["INTERPRETED", "runs_on", "decoder_forward", "decoder_backward_loop"]

#: Triton's interpreter (``TRITON_INTERPRET=1``): the kernels run on CPU tensors (tests).
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
BLOCK_B = 16  # trials per program (tl.dot needs at least 16 rows)
NUM_WARPS = 4
#: software-pipelining stages of the loads: 1, since Triton's default (3 on Hopper) buffers the
#: weights of several steps in shared memory (1.27 MB at the MC_Maze widths, over the H200's
#: 227 KB; 72 KB forward and 88 KB backward with 1)
NUM_STAGES = 1
#: tl.dot's input precision: "ieee" (float32, the Python loop's results to rounding); for the
#: benchmark's comparison, the tensor cores' "tf32" (about 3 decimal digits per product) and
#: "tf32x3" (three TF32 products a multiply, about float32's rounding)
DOT_PRECISION = "ieee"


def runs_on(x: torch.Tensor) -> bool:
    """Whether the kernels serve ``x``: float32 on CUDA, or on CPU under the interpreter."""
    return x.dtype == torch.float32 and (x.device.type == "cuda" or (INTERPRETED and x.device.type == "cpu"))


def _padded(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


@triton.jit
def _rows(ptr, t, stride_t, stride_b, col0, rb, bmask, n, NP: tl.constexpr):
    """Block ``[BLOCK_B, NP]``: columns col0 .. col0 + n of rows ``rb`` at step t (zero-padded)."""
    j = tl.arange(0, NP)
    return tl.load(ptr + t * stride_t + rb[:, None] * stride_b + col0 + j[None, :],
                   mask=bmask[:, None] & (j[None, :] < n), other=0.0)


@triton.jit
def _store_rows(ptr, t, stride_t, stride_b, col0, rb, bmask, n, value, NP: tl.constexpr):
    j = tl.arange(0, NP)
    tl.store(ptr + t * stride_t + rb[:, None] * stride_b + col0 + j[None, :], value,
             mask=bmask[:, None] & (j[None, :] < n))


@triton.jit
def _vec(ptr, col0, n, NP: tl.constexpr):
    j = tl.arange(0, NP)
    return tl.load(ptr + col0 + j, mask=j < n, other=0.0)


@triton.jit
def _w_t(w_ptr, row0, n_rows, n_cols, ROWS_P: tl.constexpr, COLS_P: tl.constexpr):
    """Block ``[COLS_P, ROWS_P]`` of w transposed: ``[i, j] = w[row0 + j, i]`` (w: rows x n_cols,
    row-major), zero outside ``n_rows x n_cols``; ``x @ block`` is ``x @ w[row0:row0+n_rows].T``."""
    i = tl.arange(0, COLS_P)
    j = tl.arange(0, ROWS_P)
    return tl.load(w_ptr + (row0 + j[None, :]) * n_cols + i[:, None],
                   mask=(i[:, None] < n_cols) & (j[None, :] < n_rows), other=0.0)


@triton.jit
def _w(w_ptr, row0, n_rows, n_cols, ROWS_P: tl.constexpr, COLS_P: tl.constexpr):
    """Block ``[ROWS_P, COLS_P]``: ``[j, i] = w[row0 + j, i]``; ``d @ block`` is ``d @ w[row0:row0+n_rows]``."""
    j = tl.arange(0, ROWS_P)
    i = tl.arange(0, COLS_P)
    return tl.load(w_ptr + (row0 + j[:, None]) * n_cols + i[None, :],
                   mask=(j[:, None] < n_rows) & (i[None, :] < n_cols), other=0.0)


@triton.jit
def _clamp(x, clip, CLIP: tl.constexpr):
    if CLIP:
        x = tl.minimum(tl.maximum(x, -clip), clip)
    return x


@triton.jit
def _gru_forward_at(x, w_ih, xp, t, xp_st, xp_sb, rb_x, h, w_hh, b_r, b_z, b_n, rz, n_out, gh, rb, bm, B, H, I,
                    clip, CLIP: tl.constexpr, SAVE: tl.constexpr, HP: tl.constexpr, IP: tl.constexpr,
                    PREC: tl.constexpr):
    """One GRU step at t (gates as :func:`.kernels._gru_step`): input x ([BLOCK_B, IP]) through
    w_ih (3H x I) plus the precomputed input projection xp at t (rows rb_x; strides xp_st,
    xp_sb), state h ([BLOCK_B, HP]) through w_hh plus the per-gate biases b_r, b_z, b_n.
    Returns the new state; with SAVE, stores the gates (rz, n_out) and hidden-side
    pre-activations (gh) at t for the backward."""
    a_r = tl.dot(x, _w_t(w_ih, 0, H, I, HP, IP), input_precision=PREC) \
        + _rows(xp, t, xp_st, xp_sb, 0, rb_x, bm, H, HP)
    a_z = tl.dot(x, _w_t(w_ih, H, H, I, HP, IP), input_precision=PREC) \
        + _rows(xp, t, xp_st, xp_sb, H, rb_x, bm, H, HP)
    a_n = tl.dot(x, _w_t(w_ih, 2 * H, H, I, HP, IP), input_precision=PREC) \
        + _rows(xp, t, xp_st, xp_sb, 2 * H, rb_x, bm, H, HP)
    h_r = tl.dot(h, _w_t(w_hh, 0, H, H, HP, HP), input_precision=PREC) + b_r[None, :]
    h_z = tl.dot(h, _w_t(w_hh, H, H, H, HP, HP), input_precision=PREC) + b_z[None, :]
    h_n = tl.dot(h, _w_t(w_hh, 2 * H, H, H, HP, HP), input_precision=PREC) + b_n[None, :]
    r = tl.sigmoid(a_r + h_r)
    z = tl.sigmoid(a_z + h_z)
    n = 2 * tl.sigmoid(2 * (a_n + r * h_n)) - 1  # tanh
    if SAVE:
        _store_rows(rz, t, B * 2 * H, 2 * H, 0, rb, bm, H, r, HP)
        _store_rows(rz, t, B * 2 * H, 2 * H, H, rb, bm, H, z, HP)
        _store_rows(n_out, t, B * H, H, 0, rb, bm, H, n, HP)
        _store_rows(gh, t, B * 3 * H, 3 * H, 0, rb, bm, H, h_r, HP)
        _store_rows(gh, t, B * 3 * H, 3 * H, H, rb, bm, H, h_z, HP)
        _store_rows(gh, t, B * 3 * H, 3 * H, 2 * H, rb, bm, H, h_n, HP)
    return _clamp(n + z * (h - n), clip, CLIP)


@triton.jit
def _decoder_forward_kernel(
        g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps,
        gs, gds, cps, cos, hcs, rz_g, n_g, gh_g, rz_c, n_c, gh_c, stds,
        B, G, C, K, cx_st, cx_sb, cx_rows, gx_st, gx_sb, gx_rows, clip, T,
        SAVE: tl.constexpr, HAS_MASKS: tl.constexpr, HAS_EPS: tl.constexpr, CLIP: tl.constexpr,
        BB: tl.constexpr, GP: tl.constexpr, CP: tl.constexpr, KP: tl.constexpr, PREC: tl.constexpr):
    rb = tl.program_id(0) * BB + tl.arange(0, BB)
    bm = rb < B
    rb_cx, rb_gx = rb % cx_rows, rb % gx_rows  # row j B' + b of a repeated batch is trial b
    g = _rows(g0, 0, 0, G, 0, rb, bm, G, GP)
    hc = _rows(hc0, 0, 0, C, 0, rb, bm, C, CP)
    gd = g
    if HAS_MASKS:
        gd = g * _rows(masks, 0, B * G, G, 0, rb, bm, G, GP)
    bc_r, bc_z, bc_n = _vec(b_hh_c, 0, C, CP), _vec(b_hh_c, C, C, CP), _vec(b_hh_c, 2 * C, C, CP)
    bg_r, bg_z, bg_n = _vec(b_hh_g, 0, G, GP), _vec(b_hh_g, G, G, GP), _vec(b_hh_g, 2 * G, G, GP)
    bo_m, bo_v = _vec(b_co, 0, K, KP), _vec(b_co, K, K, KP)
    for t in range(T):
        # controller: input = encodings' projection (cx) + dropped generator state through w_gc
        hc = _gru_forward_at(gd, w_gc, cx, t, cx_st, cx_sb, rb_cx, hc, w_hh_c, bc_r, bc_z, bc_n, rz_c, n_c, gh_c,
                             rb, bm, B, C, G, clip, CLIP, SAVE, CP, GP, PREC)
        if SAVE:
            _store_rows(hcs, t, B * C, C, 0, rb, bm, C, hc, CP)
        # controller output: inferred-input mean and log-variance, then a sample (or the mean)
        mean = tl.dot(hc, _w_t(w_co, 0, K, C, KP, CP), input_precision=PREC) + bo_m[None, :]
        logvar = tl.dot(hc, _w_t(w_co, K, K, C, KP, CP), input_precision=PREC) + bo_v[None, :]
        _store_rows(cps, t, B * 2 * K, 2 * K, 0, rb, bm, K, mean, KP)
        _store_rows(cps, t, B * 2 * K, 2 * K, K, rb, bm, K, logvar, KP)
        co = mean
        if HAS_EPS:
            std = tl.exp(logvar * 0.5)
            if SAVE:
                _store_rows(stds, t, B * K, K, 0, rb, bm, K, std, KP)
            co = mean + std * _rows(eps, t, B * K, K, 0, rb, bm, K, KP)
        _store_rows(cos, t, B * K, K, 0, rb, bm, K, co, KP)
        # generator: input = inferred input through w_cg + external inputs' projection (gx)
        g = _gru_forward_at(co, w_cg, gx, t, gx_st, gx_sb, rb_gx, g, w_hh_g, bg_r, bg_z, bg_n, rz_g, n_g, gh_g,
                            rb, bm, B, G, K, clip, CLIP, SAVE, GP, KP, PREC)
        _store_rows(gs, t, B * G, G, 0, rb, bm, G, g, GP)
        gd = g
        if HAS_MASKS:
            gd = g * _rows(masks, t + 1, B * G, G, 0, rb, bm, G, GP)
        if SAVE or HAS_MASKS:  # otherwise the dropped states are the states (gds is gs)
            _store_rows(gds, t, B * G, G, 0, rb, bm, G, gd, GP)


@triton.jit
def _gru_backward_at(dh, t, h_prev, rz, n, gh, dx, dgh, rb, bm, B, H, clip, CLIP: tl.constexpr,
                     HP: tl.constexpr):
    """One GRU step's backward at step t (as :func:`.kernels.gru_step_backward`), from the
    saved state it started from (h_prev), gates (rz, n) and hidden-side pre-activations (gh),
    all T x B x (1, 2 or 3 H): stores the gradients of the input-side (dx) and hidden-side (dgh)
    pre-activations at t, and returns them per gate (dx r, z, n; dgh n; dgh r, z are dx r, z)
    with the direct part of the gradient w.r.t. h_prev (``dh z``)."""
    hp = _rows(h_prev, t, B * H, H, 0, rb, bm, H, HP)
    r = _rows(rz, t, B * 2 * H, 2 * H, 0, rb, bm, H, HP)
    z = _rows(rz, t, B * 2 * H, 2 * H, H, rb, bm, H, HP)
    n_ = _rows(n, t, B * H, H, 0, rb, bm, H, HP)
    if CLIP:
        dh = tl.where(tl.abs(n_ + z * (hp - n_)) <= clip, dh, 0.0)
    dx_n = dh * (1 - z) * (1 - n_ * n_)
    dx_r = dx_n * _rows(gh, t, B * 3 * H, 3 * H, 2 * H, rb, bm, H, HP) * (r * (1 - r))
    dx_z = dh * (hp - n_) * (z * (1 - z))
    dgh_n = dx_n * r
    _store_rows(dx, t, B * 3 * H, 3 * H, 0, rb, bm, H, dx_r, HP)
    _store_rows(dx, t, B * 3 * H, 3 * H, H, rb, bm, H, dx_z, HP)
    _store_rows(dx, t, B * 3 * H, 3 * H, 2 * H, rb, bm, H, dx_n, HP)
    _store_rows(dgh, t, B * 3 * H, 3 * H, 0, rb, bm, H, dx_r, HP)
    _store_rows(dgh, t, B * 3 * H, 3 * H, H, rb, bm, H, dx_z, HP)
    _store_rows(dgh, t, B * 3 * H, 3 * H, 2 * H, rb, bm, H, dgh_n, HP)
    return dx_r, dx_z, dx_n, dgh_n, dh * z


@triton.jit
def _gates_times(d_r, d_z, d_n, w, H, n_cols, HP: tl.constexpr, NP: tl.constexpr, PREC: tl.constexpr):
    """``[d_r, d_z, d_n] @ w`` for w: 3H x n_cols (gates r, z, n stacked), as [BLOCK_B, NP]."""
    return tl.dot(d_r, _w(w, 0, H, n_cols, HP, NP), input_precision=PREC) \
        + tl.dot(d_z, _w(w, H, H, n_cols, HP, NP), input_precision=PREC) \
        + tl.dot(d_n, _w(w, 2 * H, H, n_cols, HP, NP), input_precision=PREC)


@triton.jit
def _decoder_backward_kernel(
        g_prev, hc_prev, rz_g, n_g, gh_g, rz_c, n_c, gh_c, stds, eps, masks,
        w_gc, w_hh_c, w_co, w_cg, w_hh_g,
        d_gs, d_gds, d_cps, d_cos,
        dcx, dgh_c, dgx, dgh_g, dcp, dg0, dhc0,
        B, G, C, K, clip, T,
        HAS_MASKS: tl.constexpr, HAS_EPS: tl.constexpr, CLIP: tl.constexpr,
        BB: tl.constexpr, GP: tl.constexpr, CP: tl.constexpr, KP: tl.constexpr, PREC: tl.constexpr):
    rb = tl.program_id(0) * BB + tl.arange(0, BB)
    bm = rb < B
    dg = tl.zeros([BB, GP], dtype=tl.float32)
    dhc = tl.zeros([BB, CP], dtype=tl.float32)
    dgd_next = tl.zeros([BB, GP], dtype=tl.float32)  # gradient reaching gd_t from the controller at t+1
    for s in range(T):
        t = T - 1 - s
        # generator
        dgd = _rows(d_gds, t, B * G, G, 0, rb, bm, G, GP) + dgd_next
        if HAS_MASKS:
            dgd = dgd * _rows(masks, t + 1, B * G, G, 0, rb, bm, G, GP)
        dg = dg + _rows(d_gs, t, B * G, G, 0, rb, bm, G, GP) + dgd
        dx_r, dx_z, dx_n, dk_n, dg = _gru_backward_at(dg, t, g_prev, rz_g, n_g, gh_g, dgx, dgh_g, rb, bm, B, G,
                                                      clip, CLIP, GP)
        dg += _gates_times(dx_r, dx_z, dk_n, w_hh_g, G, G, GP, GP, PREC)
        # inferred input -> controller output parameters
        dco = _rows(d_cos, t, B * K, K, 0, rb, bm, K, KP) + _gates_times(dx_r, dx_z, dx_n, w_cg, G, K, GP, KP, PREC)
        d_mean = _rows(d_cps, t, B * 2 * K, 2 * K, 0, rb, bm, K, KP) + dco
        d_logvar = _rows(d_cps, t, B * 2 * K, 2 * K, K, rb, bm, K, KP)
        if HAS_EPS:
            d_logvar += dco * 0.5 * (_rows(eps, t, B * K, K, 0, rb, bm, K, KP)
                                     * _rows(stds, t, B * K, K, 0, rb, bm, K, KP))
        _store_rows(dcp, t, B * 2 * K, 2 * K, 0, rb, bm, K, d_mean, KP)
        _store_rows(dcp, t, B * 2 * K, 2 * K, K, rb, bm, K, d_logvar, KP)
        dhc += tl.dot(d_mean, _w(w_co, 0, K, C, KP, CP), input_precision=PREC)
        dhc += tl.dot(d_logvar, _w(w_co, K, K, C, KP, CP), input_precision=PREC)
        # controller
        dc_r, dc_z, dc_n, dh_n, dhc = _gru_backward_at(dhc, t, hc_prev, rz_c, n_c, gh_c, dcx, dgh_c, rb, bm, B, C,
                                                       clip, CLIP, CP)
        dhc += _gates_times(dc_r, dc_z, dh_n, w_hh_c, C, C, CP, CP, PREC)
        dgd_next = _gates_times(dc_r, dc_z, dc_n, w_gc, C, G, CP, GP, PREC)
    if HAS_MASKS:
        dgd_next = dgd_next * _rows(masks, 0, B * G, G, 0, rb, bm, G, GP)
    _store_rows(dg0, 0, 0, G, 0, rb, bm, G, dg + dgd_next, GP)
    _store_rows(dhc0, 0, 0, C, 0, rb, bm, C, dhc, CP)


def _sizes(g0, hc0, w_cg):
    G, C, K = g0.shape[1], hc0.shape[1], w_cg.shape[1]
    return dict(BB=BLOCK_B, GP=_padded(G), CP=_padded(C), KP=_padded(K), PREC=DOT_PRECISION, num_warps=NUM_WARPS,
                num_stages=NUM_STAGES)


def decoder_forward(g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps,
                    clip: float, save: bool):
    """:func:`.decoder_scan._decoder_forward` as one kernel: the same outputs (gs, gds, cps,
    cos) and, with ``save``, the same saved tensors.  Without ``save``, cx and gx may cover B'
    trials of a batch of B = k B' rows made of k repeats of them (posterior samples)."""
    Tr, B = cx.shape[0], g0.shape[0]
    G, C, K = g0.shape[1], hc0.shape[1], w_cg.shape[1]
    if save and (cx.shape[1] != B or gx.shape[1] != B):
        raise ValueError("repeated trials are for sampling without gradients only")
    cx = cx if cx.stride(-1) == 1 else cx.contiguous()
    gx = gx if gx.stride(-1) == 1 else gx.contiguous()  # an expanded bias keeps its zero strides
    g0, hc0 = g0.contiguous(), hc0.contiguous()
    w_gc, w_hh_c, w_co, w_cg, w_hh_g = (w.contiguous() for w in (w_gc, w_hh_c, w_co, w_cg, w_hh_g))
    b_hh_c, b_co, b_hh_g = b_hh_c.contiguous(), b_co.contiguous(), b_hh_g.contiguous()
    masks = masks.contiguous() if masks is not None else None
    eps = eps.contiguous() if eps is not None else None
    new = cx.new_empty
    gs, cps, cos = new(Tr, B, G), new(Tr, B, 2 * K), new(Tr, B, K)
    gds = new(Tr, B, G) if save or masks is not None else gs
    if save:
        hcs, rz_g, n_g, gh_g = new(Tr, B, C), new(Tr, B, 2 * G), new(Tr, B, G), new(Tr, B, 3 * G)
        rz_c, n_c, gh_c = new(Tr, B, 2 * C), new(Tr, B, C), new(Tr, B, 3 * C)
        stds = new(Tr, B, K) if eps is not None else None
    else:
        hcs = rz_g = n_g = gh_g = rz_c = n_c = gh_c = stds = None
    dummy = gs  # for the pointers a configuration does not use
    finite = math.isfinite(clip)
    _decoder_forward_kernel[(triton.cdiv(B, BLOCK_B),)](
        g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g,
        *(x if x is not None else dummy for x in (masks, eps)), gs, gds, cps, cos,
        *(x if x is not None else dummy for x in (hcs, rz_g, n_g, gh_g, rz_c, n_c, gh_c, stds)),
        B, G, C, K, cx.stride(0), cx.stride(1), cx.shape[1], gx.stride(0), gx.stride(1), gx.shape[1],
        clip if finite else 0.0, Tr,
        SAVE=save, HAS_MASKS=masks is not None, HAS_EPS=eps is not None, CLIP=finite, **_sizes(g0, hc0, w_cg))
    if not save:
        return (gs, gds, cps, cos), None
    gd0 = g0 * masks[0] if masks is not None else g0
    saved = (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c,
             n_c, gh_c, cos, stds)
    return (gs, gds, cps, cos), saved


def decoder_backward_loop(saved, clip: float, d_gs, d_gds, d_cps, d_cos):
    """:func:`.decoder_scan._decoder_backward_loop` as one kernel: returns dcx, dgh_c, dgx,
    dgh_g, dcp (T_r x B x ...), dg0 and dhc0."""
    (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c, n_c,
     gh_c, cos, stds) = saved
    Tr, B, G = gs.shape
    C, K = hcs.shape[2], cos.shape[2]
    g_prev = torch.cat([g0.unsqueeze(0), gs[:-1]])  # the state each step started from
    hc_prev = torch.cat([hc0.unsqueeze(0), hcs[:-1]])
    d_gs, d_gds, d_cps, d_cos = (d.contiguous() for d in (d_gs, d_gds, d_cps, d_cos))
    new = gs.new_empty
    dcx, dgh_c, dgx, dgh_g, dcp = new(Tr, B, 3 * C), new(Tr, B, 3 * C), new(Tr, B, 3 * G), new(Tr, B, 3 * G), \
        new(Tr, B, 2 * K)
    dg0, dhc0 = new(B, G), new(B, C)
    finite = math.isfinite(clip)
    _decoder_backward_kernel[(triton.cdiv(B, BLOCK_B),)](
        g_prev, hc_prev, rz_g, n_g, gh_g, rz_c, n_c, gh_c,
        *(x if x is not None else gs for x in (stds, eps, masks)),  # gs: for the pointers not used
        w_gc, w_hh_c, w_co, w_cg, w_hh_g, d_gs, d_gds, d_cps, d_cos,
        dcx, dgh_c, dgx, dgh_g, dcp, dg0, dhc0,
        B, G, C, K, clip if finite else 0.0, Tr,
        HAS_MASKS=masks is not None, HAS_EPS=eps is not None, CLIP=finite, **_sizes(g0, hc0, w_cg))
    return dcx, dgh_c, dgx, dgh_g, dcp, dg0, dhc0
