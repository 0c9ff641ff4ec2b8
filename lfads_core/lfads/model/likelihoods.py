"""Observation models.  A likelihood maps readout parameters to a per-entry
negative log-likelihood and to a predicted mean.

Readout output per channel has ``n_params`` learned entries, followed by ``n_fixed``
per-channel constants set from the training data (:meth:`ZIGLikelihood.fixed_params`;
none for the others).  ``nll`` takes params (B x T x N x (n_params + n_fixed)) and data
(B x T x N) and returns B x T x N; ``mean`` gives the expected observation, B x T x N.
Optional: ``constant(data[, fixed])``, the data-only part of the NLL, cached once per data
split by the training loop and passed back to ``nll``; ``initial_bias(data)``, the
readout bias (N x n_params) training starts from, computed from the training data
(trials x T x N, NaN where an entry is not observed or held back).

Which to use: ``poisson`` for spike counts; ``gaussian`` for real-valued signals;
``gamma`` for positive continuous signals (fluorescence, dF/F shifted positive);
``zig`` for deconvolved calcium events or other sparse traces with many zeros.
Add a new one with :func:`register_likelihood`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["PoissonLikelihood", "GaussianLikelihood", "GammaLikelihood", "ZIGLikelihood", "LIKELIHOODS",
           "register_likelihood", "get_likelihood", "FLOOR"]

FLOOR = 1e-6  # data units: Gamma densities are evaluated at max(x, FLOOR), so zeros stay finite
SHAPE_RANGE = (1e-2, 1e2)  # initial Gamma shapes are clipped to this range


def _masked_moments(data: torch.Tensor, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel count, mean and variance (N each) of ``data`` (trials x T x N) over the
    entries where ``where`` is True; mean and variance are 0 for a channel without any."""
    n = where.sum(dim=(0, 1))
    x = data.masked_fill(~where, 0.0)
    mean = x.sum(dim=(0, 1)) / n.clamp_min(1)
    var = ((x - mean) ** 2).masked_fill(~where, 0.0).sum(dim=(0, 1)) / n.clamp_min(1)
    return n, mean, var


def channel_mean(data: torch.Tensor) -> torch.Tensor:
    """Per-channel mean (N) of ``data`` (trials x T x N) over its observed (non-NaN) entries."""
    missing = torch.isnan(data)
    if not missing.any():
        return data.mean(dim=(0, 1))
    return data.masked_fill(missing, 0.0).sum(dim=(0, 1)) / (~missing).sum(dim=(0, 1)).clamp_min(1)


def _initial_shape(n: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Method-of-moments Gamma shape mean^2 / var per channel, clipped to SHAPE_RANGE;
    1 (exponential) for a channel with fewer than two values or no spread."""
    shape = torch.where((n > 1) & (var > 0), mean**2 / var.clamp_min(1e-30), torch.ones_like(mean))
    return shape.clamp(*SHAPE_RANGE)


def _gamma_nll(log_mean: torch.Tensor, log_shape: torch.Tensor, x: torch.Tensor, log_x: torch.Tensor) -> torch.Tensor:
    """-log Gamma(x; shape k, scale mean / k) for x > 0, with log_x = log x given:
    lgamma(k) + k (log mean - log k - log x + x / mean) + log x."""
    k = torch.exp(log_shape)
    return torch.lgamma(k) + k * (log_mean - log_shape - log_x + x * torch.exp(-log_mean)) + log_x


class PoissonLikelihood:
    """Poisson counts; the parameter is the log of the expected count per bin.
    Initial bias: log of each channel's mean count (at least 1e-3)."""

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

    @staticmethod
    def initial_bias(data: torch.Tensor) -> torch.Tensor:
        return torch.log(channel_mean(data).clamp_min(1e-3)).unsqueeze(-1)


class GaussianLikelihood:
    """Gaussian observations; parameters are (mean, log-variance), in data units (squared).
    Initial bias: each channel's mean and the log of its variance (at least 1e-6)."""

    n_params = 2

    @staticmethod
    def nll(params: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        mean, logvar = params[..., 0], params[..., 1]
        return 0.5 * (math.log(2 * math.pi) + logvar + (data - mean) ** 2 * torch.exp(-logvar))

    @staticmethod
    def mean(params: torch.Tensor) -> torch.Tensor:
        return params[..., 0]

    @staticmethod
    def initial_bias(data: torch.Tensor) -> torch.Tensor:
        _, mean, var = _masked_moments(data, ~torch.isnan(data))
        return torch.stack([mean, torch.log(var.clamp_min(1e-6))], dim=-1)


class GammaLikelihood:
    """Positive observations (fluorescence, dF/F shifted positive): x ~ Gamma(shape k, scale theta).

    Parameters (log mean, log shape): mean mu = exp(p0) = k theta in data units, shape
    k = exp(p1) (unitless), scale theta = mu / k, variance mu^2 / k.  Mean and shape are
    orthogonal parameters of the Gamma (diagonal Fisher information), and the first output
    is the log of the expected observation as for Poisson.  Observations below FLOOR
    (zeros) are read as FLOOR so that the NLL and its gradients stay finite.
    Initial bias: log of each channel's mean and the method-of-moments shape mean^2 / var
    of its values (clipped to SHAPE_RANGE): the data's mean, and a spread at least as wide
    as the data's, since the channel's variance includes the signal's.
    """

    n_params = 2

    @staticmethod
    def nll(params: torch.Tensor, data: torch.Tensor, constant: torch.Tensor | None = None) -> torch.Tensor:
        """``constant``: :meth:`constant` of ``data`` if already at hand."""
        log_mean, log_shape = params.movedim(-1, 0).contiguous()  # contiguous slices; one gradient tensor
        x = data.clamp_min(FLOOR)
        return _gamma_nll(log_mean, log_shape, x, torch.log(x) if constant is None else constant)

    @staticmethod
    def constant(data: torch.Tensor) -> torch.Tensor:
        """log max(x, FLOOR) per entry: the NLL's data-only term (it also enters k log x)."""
        return torch.log(data.clamp_min(FLOOR))

    @staticmethod
    def mean(params: torch.Tensor) -> torch.Tensor:
        """Expected observation per bin (data units), B x T x N."""
        return torch.exp(params[..., 0])

    @staticmethod
    def initial_bias(data: torch.Tensor) -> torch.Tensor:
        n, mean, var = _masked_moments(data.clamp_min(FLOOR), ~torch.isnan(data))
        return torch.log(torch.stack([mean.clamp_min(FLOOR), _initial_shape(n, mean, var)], dim=-1))


class ZIGLikelihood:
    """Zero-inflated Gamma for deconvolved calcium events and other sparse traces (Wei et al.
    2019, bioRxiv 637652; the calcium LFADS of Zhu et al. 2022, RADICaL).

    With probability q an entry is an event, x = s_min + y with y ~ Gamma(shape k, scale
    theta); otherwise it is "zero", i.e. any x <= s_min.  Per-entry NLL: -log(1 - q) for
    x <= s_min, -log q - log Gamma(x - s_min; k, theta) for x > s_min (a point mass and a
    density, as in those papers); an x - s_min below FLOOR is read as FLOOR.

    Parameters (log event mean, log shape, logit q): mu = exp(p0) = k theta is the mean of
    y in data units, k = exp(p1) (unitless), theta = mu / k, q = sigmoid(p2).  Fixed per
    channel: s_min (data units), the smallest positive value of the channel in the training
    data (0 for a channel without any; :meth:`fixed_params`), so that every smaller value
    counts as no event and the Gamma starts where events start; that smallest value itself
    counts as a zero.  Expected observation: q (s_min + mu).
    Initial bias: the fraction of the channel's entries above s_min (clipped to [1e-3,
    1 - 1e-3]) for q, the mean and method-of-moments shape of x - s_min over those entries
    for mu and k (1 and shape 1 for a channel with fewer than two events).
    """

    n_params = 3
    n_fixed = 1

    @staticmethod
    def nll(params: torch.Tensor, data: torch.Tensor, constant: torch.Tensor | None = None) -> torch.Tensor:
        """``constant``: :meth:`constant` of ``data`` if already at hand."""
        log_mean, log_shape, logit_q, s_min = params.movedim(-1, 0).contiguous()
        y = (data - s_min).clamp_min(FLOOR)
        gamma = _gamma_nll(log_mean, log_shape, y, torch.log(y) if constant is None else constant)
        # -log(1 - q) = softplus(logit q), -log q = softplus(logit q) - logit q; the Gamma term
        # counts at events only (times 0 elsewhere, where it is finite: no gradient)
        return F.softplus(logit_q) + (data > s_min).to(gamma.dtype) * (gamma - logit_q)

    @staticmethod
    def constant(data: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """log max(x - s_min, FLOOR) per entry (``fixed``: N x 1, s_min): the data-only term of an event's NLL."""
        return torch.log((data - fixed[:, 0]).clamp_min(FLOOR))

    @staticmethod
    def mean(params: torch.Tensor) -> torch.Tensor:
        """Expected observation per bin (data units), q (s_min + mu), B x T x N."""
        return torch.sigmoid(params[..., 2]) * (params[..., 3] + torch.exp(params[..., 0]))

    @staticmethod
    def fixed_params(data: torch.Tensor) -> torch.Tensor:
        """s_min per channel (N x 1): the smallest positive value of ``data`` (trials x T x N), 0 if none."""
        s_min = torch.where(data > 0, data, math.inf).amin(dim=(0, 1))
        return torch.where(torch.isinf(s_min), 0.0, s_min).unsqueeze(-1)

    @staticmethod
    def initial_bias(data: torch.Tensor) -> torch.Tensor:
        s_min = ZIGLikelihood.fixed_params(data)[:, 0]
        event = data > s_min
        n, mean, var = _masked_moments(data - s_min, event)
        q = (n / (~torch.isnan(data)).sum(dim=(0, 1)).clamp_min(1)).clamp(1e-3, 1 - 1e-3)
        mean = torch.where(n > 1, mean.clamp_min(FLOOR), torch.ones_like(mean))
        return torch.stack([torch.log(mean), torch.log(_initial_shape(n, mean, var)), torch.logit(q)], dim=-1)


LIKELIHOODS: dict[str, type] = {"poisson": PoissonLikelihood, "gaussian": GaussianLikelihood,
                                "gamma": GammaLikelihood, "zig": ZIGLikelihood}


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
