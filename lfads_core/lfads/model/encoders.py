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

from .generator import gru_update
from ..loops.kernels import gru_scan
from ..loops.native import dropout
from ..loops.native import runs_on as native_runs_on

__all__ = ["ICEncoder", "CIEncoder", "bidirectional_gru"]


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


def _cudnn_rnn_in_float32() -> None:
    """cuDNN's recurrent layers multiply float32 in float32 (IEEE) from now on in this process.
    Its default rounds their products to TF32 (10-bit mantissa), which puts the encoders'
    gradients about 1e-3 (relative) from the other paths'; read at forward and at backward
    time, so it is set for the process, not around one call."""
    rnn = getattr(torch.backends.cudnn, "rnn", None)
    if rnn is not None and hasattr(rnn, "fp32_precision"):  # torch >= 2.9
        rnn.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False


def bidirectional_gru(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor, impl: str = "fast", native: bool = False):
    """Run a one-layer bidirectional batch-first ``gru`` (``native``: on CPU, the fast path's
    loops as compiled C).

    x: B x T x I; h0: 2 x H (learned, shared over trials).
    Returns outputs B x T x 2H (forward, backward) and final states 2 x B x H.
    """
    B = x.shape[0]
    hx = h0.unsqueeze(1).expand(-1, B, -1).contiguous()
    if impl == "fast" and x.is_cuda:
        _cudnn_rnn_in_float32()
        return gru(x, hx)  # cuDNN
    if impl == "fast" and native_runs_on(native, x):
        # both directions in one scan (the compiled loops run them one per thread): input
        # projections as one batched matmul over (time-major x, x reversed in time)
        xs = torch.stack([x.transpose(0, 1), x.transpose(0, 1).flip(0)])  # 2 x T x B x I
        w_ih = torch.stack([gru.weight_ih_l0, gru.weight_ih_l0_reverse])
        b_ih = torch.stack([gru.bias_ih_l0, gru.bias_ih_l0_reverse])
        xp = torch.baddbmm(b_ih.unsqueeze(1), xs.flatten(1, 2), w_ih.transpose(1, 2)).view(*xs.shape[:3], -1)
        hs = gru_scan(xp, hx, torch.stack([gru.weight_hh_l0, gru.weight_hh_l0_reverse]),
                      torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse]), native=True)
        out = torch.cat([hs[0], hs[1].flip(0)], dim=-1).transpose(0, 1)
        return out, hs[:, -1]
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
            gru_scan(F.linear(xd, w_ih, b_ih).unsqueeze(0), hx[d : d + 1], w_hh.unsqueeze(0), b_hh.unsqueeze(0),
                     native=native)[0]
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

    def forward(self, x: torch.Tensor, impl: str = "fast", native: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        _, h_n = bidirectional_gru(self.gru, x, self.h0, impl, native)
        h = torch.cat([h_n[0], h_n[1]], dim=-1)
        mean, logvar = self.to_ic(dropout(self.dropout, h, native)).chunk(2, dim=-1)
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

    def forward(self, x: torch.Tensor, out_len: int, impl: str = "fast", native: bool = False) -> torch.Tensor:
        out, _ = bidirectional_gru(self.gru, x, self.h0, impl, native)
        fwd, bwd = out[..., : self.enc_dim], out[..., self.enc_dim :]
        lag = self.lag
        fwd = F.pad(fwd, (0, 0, lag, 0))[:, : -lag]  # shift later in time
        bwd = F.pad(bwd, (0, 0, 0, lag))[:, lag:]  # shift earlier in time
        ci = torch.cat([fwd, bwd], dim=-1)
        if out_len > ci.shape[1]:
            ci = F.pad(ci, (0, 0, 0, out_len - ci.shape[1]))
        return dropout(self.dropout, ci, native)
