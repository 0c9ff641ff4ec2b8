"""Priors and closed-form KL divergences.

All ``kl`` methods return one value per trial (shape B), summed over latent
dimensions (and time), for a diagonal-Gaussian posterior given by its mean
and standard deviation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "kl_diag_gaussians",
    "kl_diag_vs_ar1",
    "GaussianPrior",
    "AR1Prior",
    "make_co_prior",
]


def kl_diag_gaussians(mq: torch.Tensor, sq: torch.Tensor, mp: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """Elementwise KL( N(mq, sq^2) || N(mp, exp(logvar_p)) ) (broadcasting)."""
    var_p = torch.exp(logvar_p)
    return 0.5 * (logvar_p - 2.0 * torch.log(sq) + (sq**2 + (mq - mp) ** 2) / var_p - 1.0)


def kl_diag_vs_ar1(mq: torch.Tensor, sq: torch.Tensor, alpha: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL( prod_t N(mq_t, sq_t^2) || AR(1) ) per trial, summed over time and dims.

    mq, sq: B x T x D.  The prior, per dimension d, is the stationary AR(1)
    process z_0 ~ N(0, var), z_t = alpha z_{t-1} + e_t, e_t ~ N(0, var (1 - alpha^2))
    (alpha, var: D; var is the stationary variance).  Exact:
    E_q[log q] - E_q[log p] with E_q[(z_t - a z_{t-1})^2] = (m_t - a m_{t-1})^2 + s_t^2 + a^2 s_{t-1}^2.
    Returns B.
    """
    vq = sq**2
    neg_entropy = -0.5 - torch.log(sq)  # E_q[log q] + 0.5 log(2 pi), per element
    first = 0.5 * torch.log(var) + (mq[:, 0] ** 2 + vq[:, 0]) / (2.0 * var)
    total = neg_entropy.sum(dim=(1, 2)) + first.sum(dim=-1)
    if mq.shape[1] > 1:
        evar = var * (1.0 - alpha**2)
        resid = (mq[:, 1:] - alpha * mq[:, :-1]) ** 2 + vq[:, 1:] + alpha**2 * vq[:, :-1]
        rest = 0.5 * torch.log(evar) + resid / (2.0 * evar)
        total = total + rest.sum(dim=(1, 2))
    return total


class GaussianPrior(nn.Module):
    """Learnable diagonal Gaussian N(mean, exp(logvar)) over ``dim`` latents.

    Used for the initial condition (posterior B x dim) and, as the i.i.d.
    alternative, for inferred inputs (posterior B x T x dim; summed over time).
    """

    def __init__(self, dim: int, var: float, learnable: bool = True):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim), requires_grad=learnable)
        self.logvar = nn.Parameter(torch.full((dim,), math.log(var)), requires_grad=learnable)

    def kl(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        kl = kl_diag_gaussians(mean, std, self.mean, self.logvar)
        return kl.flatten(1).sum(dim=1)


class AR1Prior(nn.Module):
    """Per-dimension AR(1) prior over inferred inputs (B x T x dim), as in LFADS:
    u_t = alpha u_{t-1} + e_t, e_t ~ N(0, noise_var), started from the stationary
    distribution N(0, noise_var / (1 - alpha^2)).

    Learnable time constant ``tau`` (bins; alpha = exp(-1/tau)) and noise variance,
    both parameterised by their logs.
    """

    def __init__(self, dim: int, tau: float, noise_var: float, train_tau: bool = True, train_noise_var: bool = True):
        super().__init__()
        self.log_tau = nn.Parameter(torch.full((dim,), math.log(tau)), requires_grad=train_tau)
        self.log_noise_var = nn.Parameter(torch.full((dim,), math.log(noise_var)), requires_grad=train_noise_var)

    @property
    def alpha(self) -> torch.Tensor:
        return torch.exp(-torch.exp(-self.log_tau))

    @property
    def noise_var(self) -> torch.Tensor:
        return torch.exp(self.log_noise_var)

    @property
    def var(self) -> torch.Tensor:
        """Stationary (process) variance."""
        return self.noise_var / (1.0 - self.alpha**2)

    def kl(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return kl_diag_vs_ar1(mean, std, self.alpha, self.var)

    def covariance(self, T: int) -> torch.Tensor:
        """Prior covariance over T bins, D x T x T (for tests / inspection)."""
        t = torch.arange(T, dtype=self.log_tau.dtype, device=self.log_tau.device)
        lags = (t[:, None] - t[None, :]).abs()
        return self.var[:, None, None] * self.alpha[:, None, None] ** lags


def make_co_prior(cfg) -> nn.Module:
    """Inferred-input prior from a ModelConfig."""
    if cfg.co_prior == "ar1":
        return AR1Prior(cfg.co_dim, cfg.co_prior_tau, cfg.co_prior_nvar, cfg.co_prior_train_tau, cfg.co_prior_train_nvar)
    return GaussianPrior(cfg.co_dim, cfg.co_prior_var)
