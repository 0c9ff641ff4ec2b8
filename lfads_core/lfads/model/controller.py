"""Controller: a clipped GRU that sees the controller-input encodings and the
previous step's factors and emits the posterior over inferred inputs."""

from __future__ import annotations

import torch
from torch import nn

from .generator import ClippedGRUCell

__all__ = ["Controller"]


class Controller(nn.Module):
    """Controller GRU (con_dim units).

    Step input: ``cat(ci_t, factors_{t-1})`` (B x (2*ci_enc_dim + fac_dim)).
    Output: inferred-input posterior mean and log-variance (B x co_dim each),
    from ``to_co`` applied to the controller state.  The initial state is learned.
    """

    def __init__(self, ci_dim: int, fac_dim: int, con_dim: int, co_dim: int, clip: float):
        super().__init__()
        self.ci_dim = ci_dim
        self.cell = ClippedGRUCell(ci_dim + fac_dim, con_dim, clip)
        self.h0 = nn.Parameter(torch.zeros(con_dim))
        self.to_co = nn.Linear(con_dim, 2 * co_dim)

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.h0.unsqueeze(0).expand(batch, -1)

    def co_params(self, con_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """con_state (... x con_dim) -> (mean, logvar), each ... x co_dim."""
        return self.to_co(con_state).chunk(2, dim=-1)
