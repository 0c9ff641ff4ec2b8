"""Per-session read-in and read-out layers around the shared LFADS core."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ReadIn", "ReadOut"]


class ReadIn(nn.Module):
    """Session ``s`` held-in counts (B x T x n_in[s]) -> encoder input (B x T x width).

    ``readin_dim=None`` means identity (one session; width = n_in[0]).
    """

    def __init__(self, encod_dims: list[int], readin_dim: int | None):
        super().__init__()
        if readin_dim is None:
            self.layers = nn.ModuleList([nn.Identity() for _ in encod_dims])
            self.out_dim = encod_dims[0]
        else:
            self.layers = nn.ModuleList([nn.Linear(n, readin_dim) for n in encod_dims])
            self.out_dim = readin_dim

    def forward(self, x: torch.Tensor, session: int = 0) -> torch.Tensor:
        return self.layers[session](x)


class ReadOut(nn.Module):
    """Factors (B x T_recon x fac_dim) -> likelihood parameters
    (B x T_recon x n_recon[s] x (n_params + n_fixed)), e.g. Poisson log-rates (log counts/bin)
    for every recon channel (held-in and held-out) and every recon bin.

    The first ``n_params`` are learned (a linear map of the factors); the last ``n_fixed``
    are per-channel constants of the likelihood (ZIG: s_min), buffers ``fixed_{s}``
    (n_recon[s] x n_fixed, float32 or the model's dtype) set from the training data and saved
    with the model; they stay at full precision under autocast."""

    def __init__(self, fac_dim: int, recon_dims: list[int], n_params: int, n_fixed: int = 0):
        super().__init__()
        self.n_params, self.n_fixed = n_params, n_fixed
        self.layers = nn.ModuleList([nn.Linear(fac_dim, n * n_params) for n in recon_dims])
        for s, n in enumerate(recon_dims if n_fixed else []):
            self.register_buffer(f"fixed_{s}", torch.zeros(n, n_fixed))

    def fixed(self, session: int = 0) -> torch.Tensor | None:
        """The session's fixed per-channel parameters (n_recon x n_fixed), None without."""
        return getattr(self, f"fixed_{session}") if self.n_fixed else None

    def forward(self, factors: torch.Tensor, session: int = 0) -> torch.Tensor:
        out = self.layers[session](factors).unflatten(-1, (-1, self.n_params))
        if not self.n_fixed:
            return out
        fixed = self.fixed(session)
        return torch.cat([out.to(fixed.dtype), fixed.expand(*out.shape[:-1], self.n_fixed)], dim=-1)
