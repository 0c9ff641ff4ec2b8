"""Encoders: bidirectional GRUs over the (read-in) encoder input.

* :class:`ICEncoder` -> posterior over the generator initial condition.
* :class:`CIEncoder` -> per-bin controller inputs, lagged so the controller
  cannot copy the current bin.

Both hold an ``nn.GRU`` with a learned initial state.  ``impl="fast"`` runs it
with cuDNN on CUDA; elsewhere each direction runs through :func:`gru_scan`
(input projections for all bins in one matmul before the loop, hand-written
backward).  ``impl="reference"`` runs the same weights through a
plain per-step Python loop; it is the correctness reference for the fast paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .generator import gru_backward_into, gru_forward_into, gru_update

__all__ = ["ICEncoder", "CIEncoder", "bidirectional_gru", "gru_scan"]


class _GRUScan(torch.autograd.Function):
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
    """See :class:`_GRUScan`.  xp: D x T x B x 3H -> states D x T x B x H."""
    return _GRUScan.apply(xp, h0, w_hh, b_hh, clip)


def _gru_direction_reference(x, h, w_ih, w_hh, b_ih, b_hh, reverse: bool):
    T = x.shape[1]
    outs = [None] * T
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        gi = F.linear(x[:, t], w_ih, b_ih)
        gh = F.linear(h, w_hh, b_hh)
        h = gru_update(gi, gh, h, float("inf"))
        outs[t] = h
    return torch.stack(outs, dim=1), h


def bidirectional_gru(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor, impl: str = "fast"):
    """Run a one-layer bidirectional batch-first ``gru``.

    x: B x T x I; h0: 2 x H (learned, shared over trials).
    Returns outputs B x T x 2H (forward, backward) and final states 2 x B x H.
    """
    B = x.shape[0]
    hx = h0.unsqueeze(1).expand(-1, B, -1).contiguous()
    if impl == "fast" and x.is_cuda:
        return gru(x, hx)  # cuDNN
    if impl == "fast":
        # one scan per direction: keeps each buffer small enough (< 32 MB for the
        # MC_Maze sizes) for the C allocator to recycle it instead of page-faulting
        # fresh memory every step, which costs more than the shared gate arithmetic saves
        x_tm = x.transpose(0, 1)
        params = [
            (x_tm, gru.weight_ih_l0, gru.bias_ih_l0, gru.weight_hh_l0, gru.bias_hh_l0),
            (x_tm.flip(0), gru.weight_ih_l0_reverse, gru.bias_ih_l0_reverse, gru.weight_hh_l0_reverse,
             gru.bias_hh_l0_reverse),
        ]
        hs = [
            gru_scan(F.linear(xd, w_ih, b_ih).unsqueeze(0), hx[d : d + 1], w_hh.unsqueeze(0), b_hh.unsqueeze(0))[0]
            for d, (xd, w_ih, b_ih, w_hh, b_hh) in enumerate(params)
        ]  # each T x B x H; the backward direction in reversed time
        out = torch.cat([hs[0], hs[1].flip(0)], dim=-1).transpose(0, 1)
        return out, torch.stack([hs[0][-1], hs[1][-1]])
    fwd, hf = _gru_direction_reference(
        x, hx[0], gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0, reverse=False
    )
    bwd, hb = _gru_direction_reference(
        x, hx[1], gru.weight_ih_l0_reverse, gru.weight_hh_l0_reverse, gru.bias_ih_l0_reverse,
        gru.bias_hh_l0_reverse, reverse=True,
    )
    return torch.cat([fwd, bwd], dim=-1), torch.stack([hf, hb])


class ICEncoder(nn.Module):
    """Bidirectional GRU (enc_dim per direction) -> IC posterior.

    forward(x: B x T x I) -> (mean, std), each B x ic_dim.  The posterior
    variance is ``exp(logvar) + var_min`` (variance floor).
    """

    def __init__(self, input_dim: int, enc_dim: int, ic_dim: int, dropout: float, var_min: float):
        super().__init__()
        self.gru = nn.GRU(input_dim, enc_dim, batch_first=True, bidirectional=True)
        self.h0 = nn.Parameter(torch.zeros(2, enc_dim))
        self.dropout = nn.Dropout(dropout)
        self.to_ic = nn.Linear(2 * enc_dim, 2 * ic_dim)
        self.var_min = var_min

    def forward(self, x: torch.Tensor, impl: str = "fast") -> tuple[torch.Tensor, torch.Tensor]:
        _, h_n = bidirectional_gru(self.gru, x, self.h0, impl)
        h = torch.cat([h_n[0], h_n[1]], dim=-1)
        mean, logvar = self.to_ic(self.dropout(h)).chunk(2, dim=-1)
        std = torch.sqrt(torch.exp(logvar) + self.var_min)
        return mean, std


class CIEncoder(nn.Module):
    """Bidirectional GRU (enc_dim per direction) -> controller inputs.

    forward(x: B x T x I, out_len) -> B x out_len x 2*enc_dim.  The forward half at
    bin t has seen bins < t - lag + 1 and the backward half bins >= t + lag, so with
    lag >= 1 the controller never sees bin t directly.  Bins past T (forward
    prediction) get zeros.
    """

    def __init__(self, input_dim: int, enc_dim: int, lag: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(input_dim, enc_dim, batch_first=True, bidirectional=True)
        self.h0 = nn.Parameter(torch.zeros(2, enc_dim))
        self.dropout = nn.Dropout(dropout)
        self.lag = lag
        self.enc_dim = enc_dim

    def forward(self, x: torch.Tensor, out_len: int, impl: str = "fast") -> torch.Tensor:
        out, _ = bidirectional_gru(self.gru, x, self.h0, impl)
        fwd, bwd = out[..., : self.enc_dim], out[..., self.enc_dim :]
        lag = self.lag
        fwd = F.pad(fwd, (0, 0, lag, 0))[:, : -lag]  # shift later in time
        bwd = F.pad(bwd, (0, 0, 0, lag))[:, lag:]  # shift earlier in time
        ci = torch.cat([fwd, bwd], dim=-1)
        if out_len > ci.shape[1]:
            ci = F.pad(ci, (0, 0, 0, out_len - ci.shape[1]))
        return self.dropout(ci)
