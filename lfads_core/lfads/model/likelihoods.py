"""Observation models.  A likelihood maps readout parameters to a per-entry
negative log-likelihood and to a predicted mean.

Readout output per channel has ``n_params`` entries; ``nll`` takes
params (B x T x N x n_params) and data (B x T x N) and returns B x T x N.
Add a new one with :func:`register_likelihood`.
"""

from __future__ import annotations

import math

import torch

__all__ = ["PoissonLikelihood", "GaussianLikelihood", "LIKELIHOODS", "register_likelihood", "get_likelihood"]


class PoissonLikelihood:
    """Poisson counts; the parameter is the log of the expected count per bin."""

    n_params = 1

    @staticmethod
    def nll(params: torch.Tensor, data: torch.Tensor, constant: torch.Tensor | None = None) -> torch.Tensor:
        """``constant``: :meth:`constant` of ``data`` if already at hand (it depends on the data only)."""
        log_rate = params[..., 0]
        return torch.exp(log_rate) - data * log_rate + (torch.lgamma(data + 1.0) if constant is None else constant)

    @staticmethod
    def constant(data: torch.Tensor) -> torch.Tensor:
        """The part of the NLL that does not depend on the parameters: log(k!) per entry."""
        return torch.lgamma(data + 1.0)

    @staticmethod
    def mean(params: torch.Tensor) -> torch.Tensor:
        """Expected counts per bin, B x T x N."""
        return torch.exp(params[..., 0])


class GaussianLikelihood:
    """Gaussian observations; parameters are (mean, log-variance)."""

    n_params = 2

    @staticmethod
    def nll(params: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        mean, logvar = params[..., 0], params[..., 1]
        return 0.5 * (math.log(2 * math.pi) + logvar + (data - mean) ** 2 * torch.exp(-logvar))

    @staticmethod
    def mean(params: torch.Tensor) -> torch.Tensor:
        return params[..., 0]


LIKELIHOODS: dict[str, type] = {"poisson": PoissonLikelihood, "gaussian": GaussianLikelihood}


def register_likelihood(name: str, cls: type) -> None:
    """Make ``cls`` (with ``n_params``, ``nll``, ``mean``) available as ``ModelConfig.likelihood = name``."""
    for attr in ("n_params", "nll", "mean"):
        if not hasattr(cls, attr):
            raise TypeError(f"likelihood {name!r} lacks {attr!r}")
    LIKELIHOODS[name] = cls


def get_likelihood(name: str):
    try:
        return LIKELIHOODS[name]()
    except KeyError:
        raise KeyError(f"unknown likelihood {name!r}; registered: {', '.join(sorted(LIKELIHOODS))}") from None
