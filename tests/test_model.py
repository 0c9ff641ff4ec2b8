"""Unit tests for the LFADS model parts (tiny models, CPU, float64 where exactness matters)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.lfads.model import (
    LFADS,
    AR1Prior,
    ClippedGRUCell,
    CoordinatedDropout,
    GaussianPrior,
    SampleValidation,
    get_likelihood,
    kl_diag_gaussians,
    register_likelihood,
)

from conftest import step_gradients

torch.set_num_threads(1)

B, T, FP, N_IN, N_OUT = 5, 12, 3, 7, 3


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(
        encod_data_dims=[N_IN], recon_data_dims=[N_IN + N_OUT], encod_seq_len=T, recon_seq_len=T + FP,
        ic_enc_dim=8, ci_enc_dim=6, con_dim=5, co_dim=2, ic_dim=4, gen_dim=10, fac_dim=3,
        dropout_rate=0.1, cd_rate=0.3,
    )
    base.update(kw)
    return ModelConfig(**base)


def counts(shape, rate=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.full(shape, rate), generator=g)


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("con_dim", [5, 0])
def test_output_shapes(con_dim):
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(con_dim=con_dim))
    out = m(counts((B, T, N_IN)))
    co = 2 if con_dim else 0
    assert out.params.shape == (B, T + FP, N_IN + N_OUT, 1)
    assert out.factors.shape == (B, T + FP, 3)
    assert out.gen_states.shape == (B, T + FP, 10)
    assert out.ic_mean.shape == out.ic_std.shape == (B, 4)
    assert out.co_mean.shape == out.co_std.shape == out.inferred_inputs.shape == (B, T + FP, co)
    assert (out.ic_std > 0).all()
    assert m.kl_ic(out).shape == m.kl_co(out).shape == (B,)
    assert m.recon_nll(out, counts((B, T + FP, N_IN + N_OUT))).shape == (B, T + FP, N_IN + N_OUT)
    if con_dim == 0:
        assert m.controller is None and m.ci_encoder is None
        assert torch.all(m.kl_co(out) == 0)
        assert not any("controller" in n or "ci_encoder" in n for n, _ in m.named_parameters())


def test_gaussian_likelihood_ext_input_and_sessions():
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(likelihood="gaussian", ext_input_dim=2))
    out = m(torch.randn(B, T, N_IN), ext_input=torch.randn(B, T, 2))
    assert out.params.shape == (B, T + FP, N_IN + N_OUT, 2)
    assert torch.isfinite(m.recon_nll(out, torch.randn(B, T + FP, N_IN + N_OUT))).all()
    with pytest.raises(ValueError, match="external inputs"):
        m(torch.randn(B, T, N_IN))
    ms = LFADS(tiny_cfg(encod_data_dims=[7, 4], recon_data_dims=[9, 5], readin_dim=6))
    assert ms(counts((B, T, 4)), session=1).params.shape == (B, T + FP, 5, 1)
    assert ms(counts((B, T, 7)), session=0).params.shape == (B, T + FP, 9, 1)


def test_likelihood_registry():
    class Dummy:
        n_params = 1
        nll = staticmethod(lambda p, d: (p[..., 0] - d) ** 2)
        mean = staticmethod(lambda p: p[..., 0])

    register_likelihood("dummy_sq", Dummy)
    m = LFADS(tiny_cfg(likelihood="dummy_sq"))
    assert m(counts((B, T, N_IN))).params.shape[-1] == 1
    with pytest.raises(KeyError, match="unknown likelihood"):
        get_likelihood("nope")
    # Poisson NLL is the exact negative log pmf
    lr, k = torch.randn(20, 1, 1, 1, dtype=torch.float64), counts((20, 1, 1), 2.0).double()
    ref = -D.Poisson(torch.exp(lr[..., 0])).log_prob(k)
    torch.testing.assert_close(get_likelihood("poisson").nll(lr, k), ref)


# ------------------------------------------------------------------ KL closed forms
def test_kl_gaussian_matches_torch():
    g = torch.Generator().manual_seed(1)
    mq, sq = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.rand(6, 4, generator=g, dtype=torch.float64) + 0.1
    prior = GaussianPrior(4, 0.3).double()
    with torch.no_grad():
        prior.mean.copy_(torch.randn(4, generator=g))
    ref = D.kl_divergence(D.Normal(mq, sq), D.Normal(prior.mean, torch.exp(0.5 * prior.logvar))).sum(-1)
    torch.testing.assert_close(prior.kl(mq, sq), ref)
    torch.testing.assert_close(kl_diag_gaussians(mq, sq, mq, 2 * torch.log(sq)), torch.zeros_like(mq))


def test_kl_ar1_matches_multivariate_normal():
    g = torch.Generator().manual_seed(2)
    Bn, Tn, Dn = 3, 9, 2
    prior = AR1Prior(Dn, tau=4.0, noise_var=0.3).double()
    with torch.no_grad():
        prior.log_tau.copy_(torch.log(torch.tensor([3.0, 12.0])))
        prior.log_noise_var.copy_(torch.log(torch.tensor([0.2, 0.05])))
    mq = torch.randn(Bn, Tn, Dn, generator=g, dtype=torch.float64)
    sq = torch.rand(Bn, Tn, Dn, generator=g, dtype=torch.float64) * 0.5 + 0.05
    kl = prior.kl(mq, sq)
    cov = prior.covariance(Tn)  # D x T x T
    alpha = torch.exp(-1.0 / torch.tensor([3.0, 12.0], dtype=torch.float64))
    torch.testing.assert_close(cov[:, 0, 0], torch.tensor([0.2, 0.05], dtype=torch.float64) / (1 - alpha**2))
    torch.testing.assert_close(cov[:, 1, 0], alpha * cov[:, 0, 0])
    ref = torch.zeros(Bn, dtype=torch.float64)
    for d in range(Dn):
        p = D.MultivariateNormal(torch.zeros(Tn, dtype=torch.float64), covariance_matrix=cov[d])
        q = D.MultivariateNormal(mq[:, :, d], covariance_matrix=torch.diag_embed(sq[:, :, d] ** 2))
        ref += D.kl_divergence(q, p)
    torch.testing.assert_close(kl, ref)
    # prior parameters are learnable through the KL
    kl.sum().backward()
    assert prior.log_tau.grad.abs().sum() > 0 and prior.log_noise_var.grad.abs().sum() > 0


# ------------------------------------------------------------------ GRU cell and fast path
def test_clipped_gru_cell_matches_torch_gru_cell():
    torch.manual_seed(0)
    ref = torch.nn.GRUCell(5, 7)
    cell = ClippedGRUCell(5, 7)
    cell.load_state_dict(ref.state_dict())
    x, h = torch.randn(4, 5), torch.randn(4, 7)
    torch.testing.assert_close(cell(x, h), ref(x, h))
    clipped = ClippedGRUCell(5, 7, clip=0.1)
    clipped.load_state_dict(ref.state_dict())
    assert clipped(x, 5 * h).abs().max() <= 0.1 + 1e-7


@pytest.mark.parametrize("train_mode", [True, False])
@pytest.mark.parametrize("kw", [{}, {"con_dim": 0}, {"ext_input_dim": 2, "ci_lag": 2, "cell_clip": 0.3},
                                {"likelihood": "gamma"}, {"likelihood": "zig", "con_dim": 0}])
def test_fast_path_matches_reference(kw, train_mode):
    """Outputs and all parameter gradients of the fast path equal the plain loop
    (train mode: dropout + posterior sampling; eval: posterior means)."""
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(**kw)).double().train(train_mode)
    x = counts((B, T, N_IN)).double()
    ext = torch.randn(B, T + FP, 2, dtype=torch.float64) if kw.get("ext_input_dim") else None
    y = counts((B, T + FP, N_IN + N_OUT), seed=3).double()
    # the same seed: the same dropout masks and posterior noise
    results = [step_gradients(m, x, y, ext, impl=impl, sample_posteriors=train_mode)
               for impl in ("reference", "fast")]
    (o_r, g_r), (o_f, g_f) = results
    for field in ("params", "factors", "gen_states", "ic_mean", "co_mean", "co_std", "inferred_inputs"):
        torch.testing.assert_close(getattr(o_f, field), getattr(o_r, field), rtol=1e-9, atol=1e-10)
    assert g_r.keys() == g_f.keys()
    for n in g_r:
        torch.testing.assert_close(g_f[n], g_r[n], rtol=1e-8, atol=1e-10, msg=n)


def test_ci_lag_hides_current_bin():
    """With lag 1, controller inputs at bin t do not depend on data at bin t."""
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(dropout_rate=0.0)).double().eval()
    x = counts((1, T, N_IN)).double().requires_grad_()
    t = 5
    ci = m.ci_encoder(x, T + FP)
    (g,) = torch.autograd.grad(ci[0, t].sum(), x)
    assert g[0, t].abs().max() == 0
    assert g[0, t - 1].abs().max() > 0 and g[0, t + 1].abs().max() > 0
    assert torch.all(ci[0, T:] == 0)  # forward-prediction bins get no encoder input


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = LFADS(tiny_cfg()).train()
    cd = CoordinatedDropout(0.3)
    x, keep = cd.mask_input(counts((B, T, N_IN)))
    out = m(x)
    nll = cd.route_gradients(m.recon_nll(out, counts((B, T + FP, N_IN + N_OUT), seed=1)), keep)
    loss = nll.sum() + m.kl_ic(out).sum() + m.kl_co(out).sum() + m.l2_gen() + m.l2_con()
    loss.backward()
    for n, p in m.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


# ------------------------------------------------------------------ augmentations
def test_coordinated_dropout_semantics():
    torch.manual_seed(0)
    rate = 0.4
    cd = CoordinatedDropout(rate)
    x = counts((B, T, N_IN), 2.0) + 1.0  # strictly positive so zeros mean "dropped"
    xm, keep = cd.mask_input(x)
    assert torch.all(xm[~keep] == 0)
    torch.testing.assert_close(xm[keep], x[keep] / (1 - rate))
    assert 0.2 < (~keep).float().mean() < 0.6

    params = torch.randn(B, T + FP, N_IN + N_OUT, 1, requires_grad=True)
    y = counts((B, T + FP, N_IN + N_OUT), seed=5)
    nll = get_likelihood("poisson").nll(params, y)
    routed = CoordinatedDropout.route_gradients(nll, keep)
    torch.testing.assert_close(routed, nll)  # values unchanged
    (g,) = torch.autograd.grad(routed.sum(), params)
    g = g[..., 0]
    held_in = g[:, :T, :N_IN]
    assert torch.all(held_in[keep] == 0)  # kept input entries give no gradient
    assert torch.all(held_in[~keep] != 0)  # dropped entries do
    assert torch.all(g[:, :, N_IN:] != 0) and torch.all(g[:, T:, :] != 0)  # held-out / fp bins always


def test_sample_validation_masks_and_exclusion():
    sv = SampleValidation(0.25, seed=3)
    shape = (20, T, N_IN)
    m1, m2 = sv.make_mask(shape, 0), sv.make_mask(shape, 0)
    assert torch.equal(m1, m2)  # fixed, seeded
    assert not torch.equal(m1, sv.make_mask(shape, 1))  # splits differ
    assert 0.15 < m1.float().mean() < 0.35
    x = counts(shape, 2.0) + 1.0
    xm = sv.mask_input(x, m1)
    assert torch.all(xm[m1] == 0)
    params = torch.randn(20, T + FP, N_IN + N_OUT, 1, requires_grad=True)
    nll = get_likelihood("poisson").nll(params, counts((20, T + FP, N_IN + N_OUT)))
    train_part, sv_part = sv.split_nll(nll, m1)
    torch.testing.assert_close(train_part + sv_part, nll)
    (g,) = torch.autograd.grad(train_part.sum(), params)
    assert torch.all(g[..., 0][:, :T, :N_IN][m1] == 0)  # held-back entries are not trained on
    assert torch.all(g[..., 0][:, :T, :N_IN][~m1] != 0)


# ------------------------------------------------------------------ config
def test_config_from_dict_rejects_unknown_keys():
    assert ModelConfig.from_dict({"gen_dim": 64}).gen_dim == 64
    with pytest.raises(KeyError, match="gen_dimm"):
        ModelConfig.from_dict({"gen_dimm": 64})
    with pytest.raises(KeyError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    mc, tc = ModelConfig.from_dict({"con_dim": 0}), TrainConfig.from_dict({"lr": 1e-3})
    assert mc.con_dim == 0 and not mc.use_controller and tc.lr == 1e-3
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"co_prior": "laplace"})
    d = TrainConfig().to_dict()
    assert TrainConfig.from_dict(d) == TrainConfig()
    assert TrainConfig().posterior_samples == 50 and math.isclose(ModelConfig().cd_rate, 0.3)
