"""Gamma and zero-inflated Gamma likelihoods (calcium imaging) and masking of entries that were
not observed (NaN): closed forms against scipy.stats, means, gradients at the edges, and
tiny training runs on simulated data, fast and reference paths."""

from __future__ import annotations

import csv
import math

import h5py
import numpy as np
import pytest
import torch
from scipy import stats

from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.lfads.data import SplitData, load_lfads_h5
from lfads_core.lfads.epochs import EpochRunner
from lfads_core.lfads.execution import Execution
from lfads_core.lfads.model import LFADS, CoordinatedDropout, GammaLikelihood, SampleValidation, ZIGLikelihood
from lfads_core.lfads.model.likelihoods import FLOOR
from lfads_core.lfads.posterior import run_posterior
from lfads_core.lfads.training import _training_recon, train

from test_model import B, FP, N_IN, N_OUT, T, counts, tiny_cfg

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


# ------------------------------------------------------------------ missing entries
@pytest.mark.parametrize("likelihood", ["poisson", "gaussian", "gamma", "zig"])
def test_missing_entries_are_left_out_with_zero_gradient(likelihood):
    """A batch with NaN entries: their NLL is 0 and no gradient flows from them (to the readout's
    parameters or to any weight); the loss equals the complete batch's summed over the observed
    entries only, whatever values the missing entries held."""
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(likelihood=likelihood)).double().train()
    y = counts((B, T + FP, N_IN + N_OUT), 2.0, seed=3).double() + 0.5
    missing = torch.rand(y.shape, generator=torch.Generator().manual_seed(1)) < 0.2
    missing[0, 4] = True  # a dropped frame
    y_nan = y.masked_fill(missing, float("nan"))
    x = counts((B, T, N_IN)).double()

    def step(data, miss):
        m.zero_grad()
        torch.manual_seed(7)
        out = m(x)
        out.params.retain_grad()
        nll = m.recon_nll(out, data, m.nll_constant(data), miss)
        nll.sum().backward()
        return nll, out.params.grad, {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    nll, pgrad, grads = step(y_nan, missing)
    assert torch.all(nll[missing] == 0) and torch.all(pgrad[missing] == 0)
    assert torch.all(pgrad[~missing][..., 0] != 0)
    full, _, _ = step(y, None)
    assert torch.equal(nll[~missing], full[~missing])
    assert torch.equal(nll.sum(), full.masked_fill(missing, 0.0).sum())  # the missing entries left out of the sum
    torch.testing.assert_close(nll.sum(), full[~missing].sum())
    other = y.masked_fill(missing, 123.0)  # other values at the missing entries: same everything
    nll2, _, grads2 = step(other, missing)
    assert torch.equal(nll, nll2)
    for n in grads:
        assert torch.isfinite(grads[n]).all() and torch.equal(grads[n], grads2[n]), n


def test_augmentations_with_missing_entries():
    """Coordinated dropout and sample validation on a split with NaN entries: finite inputs,
    the routed and split losses stay finite and missing entries pass no gradient."""
    torch.manual_seed(0)
    y = counts((B, T + FP, N_IN + N_OUT), 2.0).masked_fill(torch.rand(B, T + FP, N_IN + N_OUT) < 0.2, float("nan"))
    split = SplitData(y[:, :T, :N_IN].clone(), y, torch.arange(B))
    assert torch.isfinite(split.encod).all() and torch.equal(split.missing, torch.isnan(y))
    m = LFADS(tiny_cfg(likelihood="zig")).train()
    cd, sv = CoordinatedDropout(0.3), SampleValidation(0.2, seed=1)
    held_back = sv.make_mask((B, T, N_IN))
    x, keep = cd.mask_input(sv.mask_input(split.encod, held_back))
    out = m(x)
    out.params.retain_grad()
    nll = m.recon_nll(out, split.recon, m.nll_constant(split.recon), split.missing)
    train_part, sv_part = sv.split_nll(cd.route_gradients(nll, keep), held_back)
    train_part.sum().backward()
    assert torch.isfinite(train_part).all() and torch.isfinite(sv_part).all()
    assert torch.all(out.params.grad[split.missing] == 0)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


# ------------------------------------------------------------------ training on simulated data
NT, NV, TT, FPT, NI, NO = 128, 32, 40, 2, 24, 4


def write_calcium_h5(path, kind, missing_rate=0.05, seed=0):
    """lfads_input.h5 of simulated float traces with NaN entries and dropped frames: a 2-d
    rotation drives the Gamma mean (``gamma``) or the event probability and size (``zig``)."""
    rng = np.random.default_rng(seed)
    n, Tr, N = NT + NV, TT + FPT, NI + NO
    ang = 2 * np.pi / 25.0 * np.arange(Tr)[None] + rng.uniform(0, 2 * np.pi, n)[:, None]
    z = np.stack([np.sin(ang), np.cos(ang)], -1)
    C = rng.normal(0, 0.8, (2, N))
    if kind == "gamma":
        mean = np.exp(0.5 + z @ C)
        x = rng.gamma(4.0, mean / 4.0)
    else:
        q = 1 / (1 + np.exp(-2.0 * z @ C))
        x = np.where(rng.random(q.shape) < q, 0.1 + rng.gamma(3.0, np.exp(z @ C) / 3.0), 0.0)
    x[rng.random(x.shape) < missing_rate] = np.nan
    x[rng.random((n, Tr)) < missing_rate] = np.nan  # dropped frames: every channel
    x = x.astype(np.float32)
    with h5py.File(path, "w") as f:
        for s, sl in (("train", slice(0, NT)), ("valid", slice(NT, None))):
            f[f"{s}_encod_data"] = x[sl, :TT, :NI]
            f[f"{s}_recon_data"] = x[sl]
            f[f"{s}_inds"] = np.arange(n, dtype=np.int64)[sl]
        f.attrs.update(bin_width_s=0.03, n_heldin=NI, n_heldout=NO, fp_bins=FPT)
    return x


def small_model(**kw):
    base = dict(ic_enc_dim=16, ci_enc_dim=6, con_dim=6, co_dim=1, ic_dim=8, gen_dim=24, fac_dim=6,
                dropout_rate=0.05, cd_rate=0.3)
    base.update(kw)
    return ModelConfig(**base)


def small_train(**kw):
    base = dict(lr=1e-2, batch_size=32, max_epochs=40, kl_ic_ramp_epochs=10, kl_co_ramp_epochs=10,
                l2_gen_ramp_epochs=10, l2_con_ramp_epochs=10, early_stop_burn_in=10, lr_patience=50)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("kind", ["gamma", "zig"])
def test_tiny_model_trains_on_simulated_calcium_data_with_missing_frames(kind, tmp_path):
    path = tmp_path / "lfads_input.h5"
    x = write_calcium_h5(path, kind)
    assert np.isnan(x).mean() > 0.05
    mc = small_model(likelihood=kind, sv_rate=0.1, con_dim=0, co_dim=0)
    res = train(path, tmp_path / "run", mc, small_train(), device="cpu")
    with open(res.log_path) as f:
        rows = list(csv.DictReader(f))
    recon = [float(r["valid_recon"]) for r in rows]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("train_loss", "valid_recon", "valid_recon_sv"))
    assert recon[-1] < 0.9 * recon[0], recon  # learns the latent rotation
    post = run_posterior(res.model_path, path, tmp_path / "post.h5", n_samples=3, device="cpu")
    assert np.isfinite(post["train_rates"]).all() and (post["train_rates"] > 0).all()
    with h5py.File(tmp_path / "post.h5") as f:
        assert f.attrs["rates_unit"] == "expected observation per bin (data units)"
    if kind == "zig":  # s_min: each channel's smallest positive training value, saved with the model
        state = torch.load(res.model_path, weights_only=False)["state_dict"]
        train_x = x[:NT].copy()
        train_x[:, :TT, :NI][load_lfads_h5(path, 0.1).train.sv_mask.numpy()] = np.nan  # held back: not used
        expected = np.nanmin(np.where(train_x > 0, train_x, np.inf), axis=(0, 1))
        np.testing.assert_array_equal(state["readout.fixed_0"][:, 0].numpy(), expected)


@pytest.mark.parametrize("kind", ["gamma", "zig"])
def test_fast_and_reference_training_agree(kind, tmp_path):
    """Two epochs of training (coordinated dropout, sample validation, missing entries) from the
    same start with impl fast and reference: the same losses to float32 rounding."""
    path = tmp_path / "lfads_input.h5"
    write_calcium_h5(path, kind, seed=1)
    data = load_lfads_h5(path, sv_rate=0.1)
    losses = {}
    for impl in ("fast", "reference"):
        torch.manual_seed(0)
        cfg = small_model(likelihood=kind, sv_rate=0.1, encod_data_dims=[NI], recon_data_dims=[NI + NO],
                          encod_seq_len=TT, recon_seq_len=TT + FPT)
        model = LFADS(cfg, Execution(impl=impl))
        model.init_readout(_training_recon(data.train))
        runner = EpochRunner(model, data, small_train(), torch.device("cpu"), None)
        losses[impl] = [(runner.train_epoch(e), runner.valid_epoch(e)) for e in range(2)]
    for (tf, vf), (tr, vr) in zip(losses["fast"], losses["reference"]):
        for k in ("loss", "recon"):
            assert math.isfinite(tf[k]) and math.isclose(tf[k], tr[k], rel_tol=1e-5), (k, tf[k], tr[k])
        for k in ("recon", "recon_sv", "kl_ic", "kl_co"):
            assert math.isclose(vf[k], vr[k], rel_tol=1e-5), (k, vf[k], vr[k])
