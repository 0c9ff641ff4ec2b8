"""CUDA tests (``pytest -m cuda``): each skips where there is no GPU.

Self-contained on purpose: it needs only torch, h5py, numpy and pytest, no conftest fixture,
so that a bare GPU machine runs it from the checkout with
``PYTHONPATH=. pytest --noconftest -m cuda tests/test_cuda.py`` (what
``benchmarks/gpu_check.sh`` does).
"""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
import torch

from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.lfads.data import SplitData
from lfads_core.lfads.execution import Execution
from lfads_core.lfads.loops import cuda_graphs
from lfads_core.lfads.model import LFADS, CoordinatedDropout
from lfads_core.lfads.posterior import sample_split
from lfads_core.lfads.training import train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

T, FP, N_IN, N_OUT = 30, 5, 20, 6


def small_cfg(**kw) -> ModelConfig:
    base = dict(encod_data_dims=[N_IN], recon_data_dims=[N_IN + N_OUT], encod_seq_len=T, recon_seq_len=T + FP,
                ic_enc_dim=16, ci_enc_dim=12, con_dim=10, co_dim=2, ic_dim=8, gen_dim=24, fac_dim=6,
                dropout_rate=0.05, cd_rate=0.3)
    base.update(kw)
    return ModelConfig(**base)


def write_h5(path, n_train=96, n_valid=32, seed=0):
    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    t = np.arange(T + FP)
    z = np.stack([np.sin(2 * np.pi * t / 20 + p) for p in rng.uniform(0, 6.3, n)])[..., None]
    rates = np.exp(np.log(0.2) + z * rng.normal(0, 0.8, (1, 1, N_IN + N_OUT))).astype(np.float32)
    spikes = rng.poisson(rates).astype(np.int32)
    with h5py.File(path, "w") as f:
        for s, sl in (("train", slice(0, n_train)), ("valid", slice(n_train, None))):
            f[f"{s}_encod_data"] = spikes[sl, :T, :N_IN]
            f[f"{s}_recon_data"] = spikes[sl]
            f[f"{s}_inds"] = np.arange(n)[sl]
        f.attrs.update(bin_width_s=0.01, n_heldin=N_IN, n_heldout=N_OUT, fp_bins=FP)
    return path


def step_grads(m, x, y, impl):
    torch.manual_seed(7)
    m.zero_grad()
    out = m(x, impl=impl)
    (m.recon_nll(out, y).sum() + m.kl_ic(out).sum() + m.kl_co(out).sum()).backward()
    return out, {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None and p.numel()}


@pytest.mark.parametrize("kw", [{}, {"con_dim": 0}])
def test_fast_and_reference_agree_on_cuda(kw):
    """cuDNN encoders and the fast decoder against the plain loops, on the GPU (float32)."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    m = LFADS(small_cfg(**kw)).to(dev).train()
    x = torch.poisson(torch.full((16, T, N_IN), 0.5)).to(dev)
    y = torch.poisson(torch.full((16, T + FP, N_IN + N_OUT), 0.5)).to(dev)
    (o_r, g_r), (o_f, g_f) = step_grads(m, x, y, "reference"), step_grads(m, x, y, "fast")
    torch.testing.assert_close(o_f.params, o_r.params, rtol=1e-4, atol=1e-4)
    assert g_r.keys() == g_f.keys()
    for n in g_r:
        torch.testing.assert_close(g_f[n], g_r[n], rtol=2e-3, atol=2e-4, msg=n)


def test_cuda_matches_cpu():
    torch.manual_seed(0)
    m = LFADS(small_cfg()).eval()
    x = torch.poisson(torch.full((8, T, N_IN), 0.5))
    with torch.no_grad():
        cpu = m(x, sample_posteriors=False).params
        gpu = m.to("cuda")(x.cuda(), sample_posteriors=False).params.cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_cuda_graphs_match_plain_fast_path():
    """Execution ``cuda_graphs``: the graphed controller-generator loop gives the plain fast
    path's gradients, step after step, with the weights changing in between."""
    dev = torch.device("cuda")
    cuda_graphs._GRAPHS.clear()
    torch.manual_seed(0)
    plain = LFADS(small_cfg(), Execution()).to(dev).train()
    graphed = LFADS(small_cfg(), Execution(cuda_graphs=True)).to(dev).train()
    graphed.load_state_dict(plain.state_dict())
    x = torch.poisson(torch.full((16, T, N_IN), 0.5)).to(dev)
    y = torch.poisson(torch.full((16, T + FP, N_IN + N_OUT), 0.5)).to(dev)
    opts = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in (plain, graphed)]
    for _ in range(3):
        (_, g_p), (_, g_g) = step_grads(plain, x, y, "fast"), step_grads(graphed, x, y, "fast")
        for n in g_p:
            torch.testing.assert_close(g_g[n], g_p[n], rtol=1e-4, atol=1e-5, msg=n)
        for opt in opts:
            opt.step()


def test_triton_decoder_matches_plain_fast_path_on_cuda():
    """Execution ``triton``: the fused Triton kernels give the plain fast path's outputs
    and gradients on the GPU, step after step, with the weights changing in between; 40 trials
    (three programs, the last partly empty) and the MC_Maze widths' padding (100 -> 128); and
    the same posterior estimates."""
    pytest.importorskip("triton")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    kw = dict(gen_dim=100, con_dim=80, ci_enc_dim=64, cell_clip=5.0)
    plain = LFADS(small_cfg(**kw), Execution()).to(dev).train()
    fused = LFADS(small_cfg(**kw), Execution(triton=True)).to(dev).train()
    fused.load_state_dict(plain.state_dict())
    x = torch.poisson(torch.full((40, T, N_IN), 0.5)).to(dev)
    y = torch.poisson(torch.full((40, T + FP, N_IN + N_OUT), 0.5)).to(dev)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (plain, fused)]  # bounded steps: no blow-up
    for _ in range(3):
        (o_p, g_p), (o_f, g_f) = step_grads(plain, x, y, "fast"), step_grads(fused, x, y, "fast")
        torch.testing.assert_close(o_f.params, o_p.params, rtol=1e-4, atol=1e-5)
        for n in g_p:  # float32 rounding, relative to each gradient's scale (up to about 1e4 here)
            scale = float(g_p[n].abs().max())
            torch.testing.assert_close(g_f[n], g_p[n], rtol=1e-3, atol=1e-5 * scale + 1e-7, msg=n)
        for opt in opts:
            opt.step()
    split = SplitData(x.cpu(), y.cpu(), torch.arange(40))
    estimates = []
    for m in (plain, fused):  # batched posterior sampling: the forward kernel on a repeated batch
        torch.manual_seed(3)
        estimates.append(sample_split(m, split, n_samples=20, batch_size=16, device=dev))
    for k in ("rates", "factors", "inferred_inputs"):
        np.testing.assert_allclose(estimates[1][k], estimates[0][k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("loops", ["fast", "cuda_graphs", "triton"])
def test_bf16_autocast_trains_without_nan(tmp_path, loops):
    if loops == "triton":
        pytest.importorskip("triton")
    data = write_h5(tmp_path / "in.h5")
    tc = TrainConfig(amp="bf16", batch_size=32, max_epochs=3, lr=5e-3, early_stop_burn_in=10)
    res = train(data, tmp_path / "run", small_cfg(), tc, device="cuda", execution={"loops": loops})
    assert res.epochs_run == 3
    with open(res.log_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(np.isfinite(float(r[k])) for r in rows for k in ("train_loss", "valid_loss"))
    sd = torch.load(res.model_path, weights_only=False)["state_dict"]
    assert all(torch.isfinite(v.float()).all() for v in sd.values())


class _Killed(Exception):
    pass


def test_killed_run_resumes_on_cuda(tmp_path):
    data = write_h5(tmp_path / "in.h5")
    mc, tc = small_cfg(), TrainConfig(batch_size=32, max_epochs=4, lr=5e-3, early_stop_burn_in=10)

    def kill_after_epoch_1(row):
        if row["epoch"] == 1:
            raise _Killed

    with pytest.raises(_Killed):
        train(data, tmp_path / "run", mc, tc, device="cuda", progress=kill_after_epoch_1)
    seen = []
    res = train(data, tmp_path / "run", mc, tc, device="cuda", progress=lambda r: seen.append(r["epoch"]))
    assert seen == [2, 3] and res.epochs_run == 4
    whole = train(data, tmp_path / "whole", mc, tc, device="cuda")
    a = torch.load(res.model_path, weights_only=False)["state_dict"]
    b = torch.load(whole.model_path, weights_only=False)["state_dict"]
    for k in a:  # cuDNN and atomics make GPU runs close, not bit-identical
        torch.testing.assert_close(a[k].float(), b[k].float(), rtol=5e-2, atol=5e-3, msg=k)


def test_posterior_sampling_on_cuda():
    """Batched sampling on the GPU equals sequential sampling for the same seed, and the
    CPU's batched estimate up to Monte Carlo noise (the GPU draws other random numbers)."""
    torch.manual_seed(0)
    m = LFADS(small_cfg()).cuda()
    enc = torch.poisson(torch.full((40, T, N_IN), 0.5))
    split = SplitData(enc, torch.poisson(torch.full((40, T + FP, N_IN + N_OUT), 0.5)), torch.arange(40))
    torch.manual_seed(3)
    seq = sample_split(m, split, n_samples=8, batch_size=16, method="sequential")
    torch.manual_seed(3)
    bat = sample_split(m, split, n_samples=8, batch_size=16)
    for k in ("rates", "factors", "inferred_inputs", "ic_mean", "ic_std"):
        np.testing.assert_allclose(bat[k], seq[k], rtol=1e-4, atol=1e-5, err_msg=k)
    cpu = sample_split(m.cpu(), split, n_samples=200, batch_size=16)
    np.testing.assert_allclose(bat["ic_mean"], cpu["ic_mean"], rtol=1e-4, atol=1e-5)
    assert np.corrcoef(bat["rates"].ravel(), cpu["rates"].ravel())[0, 1] > 0.95
