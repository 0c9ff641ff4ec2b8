"""Gamma and zero-inflated Gamma likelihoods (calcium imaging): closed forms against scipy.stats,
means, gradients at the edges, initial values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from lfads_core.lfads.model import GammaLikelihood, ZIGLikelihood
from lfads_core.lfads.model.likelihoods import FLOOR

torch.set_num_threads(1)


def zig_params(shape, s_min, seed=0):
    """Random ZIG params (log mean, log shape, logit q, s_min), float64."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(*shape, 3, generator=g, dtype=torch.float64)
    return torch.cat([p, torch.full((*shape, 1), s_min, dtype=torch.float64)], dim=-1)


# ------------------------------------------------------------------ closed forms
def test_gamma_nll_matches_scipy():
    g = torch.Generator().manual_seed(0)
    params = torch.randn(4, 6, 5, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1.5], dtype=torch.float64)
    x = torch.rand(4, 6, 5, generator=g, dtype=torch.float64) * 5 + 1e-3
    mean, shape = torch.exp(params[..., 0]).numpy(), torch.exp(params[..., 1]).numpy()
    ref = -stats.gamma.logpdf(x.numpy(), a=shape, scale=mean / shape)
    lik = GammaLikelihood()
    np.testing.assert_allclose(lik.nll(params, x).numpy(), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lik.nll(params, x, lik.constant(x)).numpy(), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lik.mean(params).numpy(), stats.gamma.mean(a=shape, scale=mean / shape))
    # zeros are read as FLOOR
    zero = torch.zeros(4, 6, 5, dtype=torch.float64)
    np.testing.assert_allclose(lik.nll(params, zero).numpy(),
                               -stats.gamma.logpdf(FLOOR, a=shape, scale=mean / shape), rtol=1e-10)


def test_zig_nll_matches_the_mixture_from_scipy():
    s_min = 0.3
    params = zig_params((4, 6, 5), s_min, seed=1)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 6, 5, generator=g, dtype=torch.float64) * 3
    x[x < 1.0] = 0.0  # about a third zeros
    x[0, 0, :3] = torch.tensor([s_min, s_min / 2, s_min + 1e-3], dtype=torch.float64)  # at and below s_min: no event
    mean, shape = torch.exp(params[..., 0]).numpy(), torch.exp(params[..., 1]).numpy()
    q = 1 / (1 + np.exp(-params[..., 2].numpy()))
    xn = x.numpy()
    event = xn > s_min
    ref = np.where(event, -np.log(q) - stats.gamma.logpdf(np.where(event, xn - s_min, 1.0), a=shape,
                                                          scale=mean / shape),
                   -np.log1p(-q))
    lik = ZIGLikelihood()
    np.testing.assert_allclose(lik.nll(params, x).numpy(), ref, rtol=1e-10, atol=1e-10)
    fixed = torch.full((5, 1), s_min, dtype=torch.float64)
    np.testing.assert_allclose(lik.nll(params, x, lik.constant(x, fixed)).numpy(), ref, rtol=1e-10, atol=1e-10)
    assert not event[0, 0, 0] and not event[0, 0, 1] and event[0, 0, 2]


def test_means_against_monte_carlo():
    rng = np.random.default_rng(0)
    n = 400_000
    gp = torch.tensor([math.log(2.5), math.log(0.7)], dtype=torch.float64)
    k, mu = 0.7, 2.5
    draws = rng.gamma(k, mu / k, n)
    assert abs(draws.mean() - float(GammaLikelihood.mean(gp))) < 4 * draws.std() / math.sqrt(n)
    s_min, q = 0.2, 0.3
    zp = torch.tensor([math.log(1.5), math.log(2.0), math.log(q / (1 - q)), s_min], dtype=torch.float64)
    draws = np.where(rng.random(n) < q, s_min + rng.gamma(2.0, 1.5 / 2.0, n), 0.0)
    assert abs(draws.mean() - float(ZIGLikelihood.mean(zp))) < 4 * draws.std() / math.sqrt(n)
    np.testing.assert_allclose(float(ZIGLikelihood.mean(zp)), q * (s_min + 1.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_finite_at_zero_and_tiny_values(dtype):
    s_min = 0.05
    values = torch.tensor([0.0, 1e-30, 1e-12, 1e-7, FLOOR, s_min, s_min + 1e-9, s_min + 1e-3, 2.0], dtype=dtype)
    for lik, params in ((GammaLikelihood(), torch.randn(values.numel(), 2, dtype=dtype)),
                        (ZIGLikelihood(), zig_params((values.numel(),), s_min).to(dtype))):
        for p in (params, params * 4):  # also far from the data
            p = p.clone().requires_grad_()
            nll = lik.nll(p, values)
            (grad,) = torch.autograd.grad(nll.sum(), p)
            assert torch.isfinite(nll).all() and torch.isfinite(grad).all(), type(lik).__name__


def test_initial_values_from_data():
    g = torch.Generator().manual_seed(0)
    data = torch.rand(50, 20, 4, generator=g)
    data[data < 0.6] = 0.0
    data[..., 3] = 0.0  # a silent channel
    data[0, 0, 0] = float("nan")
    s_min = ZIGLikelihood.fixed_params(data)[:, 0]
    observed = data[~torch.isnan(data).any(-1)]
    torch.testing.assert_close(s_min[:3], torch.stack([observed[:, c][observed[:, c] > 0].min() for c in range(3)]))
    assert s_min[3] == 0
    bias = ZIGLikelihood.initial_bias(data)
    assert bias.shape == (4, 3) and torch.isfinite(bias).all()
    event = data[..., 1] > s_min[1]
    torch.testing.assert_close(torch.sigmoid(bias[1, 2]), event.float().mean())
    torch.testing.assert_close(torch.exp(bias[1, 0]), (data[..., 1][event] - s_min[1]).mean())
    pos = torch.rand(50, 20, 3, generator=g) * 2 + 0.5
    gb = GammaLikelihood.initial_bias(pos)
    m, v = pos.mean(dim=(0, 1)), pos.var(dim=(0, 1), unbiased=False)
    torch.testing.assert_close(torch.exp(gb), torch.stack([m, m**2 / v], -1), rtol=1e-4, atol=1e-6)
