"""Generator: a clipped GRU whose state is read out to factors.

The GRU uses the PyTorch/cuDNN gate convention (reset gate applied *after*
the recurrent matmul), so one matmul per step covers all three gates and the
weights are interchangeable with ``nn.GRU`` / ``nn.GRUCell``.
Gate order in the stacked weights is (reset, update, candidate).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["gru_update", "ClippedGRUCell", "Generator"]


def gru_update(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, clip: float) -> torch.Tensor:
    """One GRU update from gate pre-activations.

    gi: input projection incl. input bias (B x 3H); gh: ``h @ W_hh.T + b_hh`` (B x 3H);
    h: previous state (B x H).  Returns the new state clipped to [-clip, clip].
    """
    H = h.shape[-1]
    rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])
    r, z = rz[:, :H], rz[:, H:]
    n = torch.tanh(torch.addcmul(gi[:, 2 * H :], r, gh[:, 2 * H :]))
    h_new = torch.lerp(n, h, z)  # (1 - z) * n + z * h
    if math.isfinite(clip):
        h_new = torch.clamp(h_new, -clip, clip)
    return h_new


class ClippedGRUCell(nn.Module):
    """GRU cell with state clipping.  x: B x I, h: B x H -> B x H.

    ``update_bias`` is added to the update-gate input bias at init so the
    cell starts out remembering (LFADS' "forget bias" of 1).
    """

    def __init__(self, input_size: int, hidden_size: int, clip: float = float("inf"), update_bias: float = 1.0):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.clip = float(clip)
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)
        with torch.no_grad():
            self.bias_ih[hidden_size : 2 * hidden_size] += update_bias

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Reference step: project inputs and state, then update."""
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        gh = F.linear(h, self.weight_hh, self.bias_hh)
        return gru_update(gi, gh, h, self.clip)


class Generator(nn.Module):
    """Generator GRU (gen_dim units) + factor readout.

    * ``ic_to_g0``: initial-condition sample (B x ic_dim) -> initial state (B x gen_dim).
    * ``cell``: clipped GRU driven by inferred inputs then external inputs (B x (co_dim + ext_dim)).
    * factors = ``state @ W.T`` with each row of ``W`` (fac_dim x gen_dim) normalised to
      unit L2 norm, so factor scale cannot trade off against readout scale.
    """

    def __init__(self, ic_dim: int, input_dim: int, gen_dim: int, fac_dim: int, clip: float):
        super().__init__()
        self.ic_to_g0 = nn.Linear(ic_dim, gen_dim)
        self.cell = ClippedGRUCell(input_dim, gen_dim, clip)
        self.factor_weight = nn.Parameter(torch.empty(fac_dim, gen_dim))
        nn.init.kaiming_uniform_(self.factor_weight, a=math.sqrt(5))

    def factor_matrix(self) -> torch.Tensor:
        """Row-normalised factor weights, fac_dim x gen_dim."""
        return F.normalize(self.factor_weight, dim=1)

    def factors(self, gen_state: torch.Tensor) -> torch.Tensor:
        """... x gen_dim -> ... x fac_dim."""
        return F.linear(gen_state, self.factor_matrix())
