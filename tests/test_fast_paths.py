"""The fast paths added for speed: the blockwise backward, the no-gradient forward and the
batched posterior sampler against the sequential one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfads_core.lfads.data import SplitData
from lfads_core.lfads.execution import Execution
from lfads_core.lfads.loops import cuda_graphs, decoder_scan, kernels
from lfads_core.lfads.model import LFADS
from lfads_core.lfads.posterior import sample_split

from conftest import step_gradients
from test_model import B, FP, N_IN, N_OUT, T, counts, tiny_cfg

torch.set_num_threads(1)

CONFIGS = [{}, {"con_dim": 0}, {"ext_input_dim": 2, "ci_lag": 2, "cell_clip": 0.3},
           {"likelihood": "gamma"}, {"likelihood": "zig", "con_dim": 0}]


@pytest.mark.parametrize("kw", CONFIGS)
def test_backward_blocks_do_not_change_gradients(kw, monkeypatch):
    """The backward's factors are computed for blocks of steps; however the steps are grouped,
    the float32 gradients are the same to the last bit (train mode: dropout and noise)."""
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(**kw)).train()
    x = counts((B, T, N_IN))
    ext = torch.randn(B, T + FP, 2) if kw.get("ext_input_dim") else None
    y = counts((B, T + FP, N_IN + N_OUT), seed=3)
    grads = []
    for block in (1, 3, 1000):
        for module in (kernels, decoder_scan):  # the GRU scans' blocks and the decoder's
            monkeypatch.setattr(module, "_block_len", lambda n, device, block=block: block)
        grads.append(step_gradients(m, x, y, ext)[1])
    for g in grads[1:]:
        assert all(torch.equal(g[n], grads[0][n]) for n in g), "gradients depend on the block length"


@pytest.mark.parametrize("kw", CONFIGS)
def test_forward_without_gradients_equals_forward_with(kw):
    """The no-gradient loops (no per-step gates kept) give the same outputs."""
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(**kw)).double().eval()
    x = counts((B, T, N_IN)).double()
    ext = torch.randn(B, T + FP, 2, dtype=torch.float64) if kw.get("ext_input_dim") else None
    torch.manual_seed(1)
    with_grad = m(x, ext_input=ext)
    torch.manual_seed(1)
    with torch.no_grad():
        without = m(x, ext_input=ext)
    for field in ("params", "factors", "gen_states", "co_mean", "inferred_inputs"):
        torch.testing.assert_close(getattr(without, field), getattr(with_grad, field).detach(),
                                   rtol=1e-12, atol=1e-12)


def _split(n, kw, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ext = torch.randn(n, T + FP, 2, generator=g, dtype=dtype) if kw.get("ext_input_dim") else None
    return SplitData(counts((n, T, N_IN), seed=seed).to(dtype), counts((n, T + FP, N_IN + N_OUT)).to(dtype),
                     torch.arange(n), ext_input=ext)


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("kw", CONFIGS)
def test_batched_sampling_equals_sequential_for_a_seed(kw, impl):
    """Same seed, same draws in the same order: the batched sampler's averages equal the
    sequential sampler's to float rounding, for any chunking of the samples (including a
    last chunk smaller than the others and a last batch of trials smaller than the others)."""
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(**kw), Execution(impl=impl)).double()
    split = _split(23, kw)
    torch.manual_seed(5)
    ref = sample_split(m, split, n_samples=7, batch_size=10, method="sequential")
    for chunk in (1, 16, 30, 10_000):
        torch.manual_seed(5)
        got = sample_split(m, split, n_samples=7, batch_size=10, sample_chunk=chunk)
        assert got.keys() == ref.keys()
        for key in ref:
            assert got[key].shape == ref[key].shape, key
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=f"{key}, chunk {chunk}")
    assert m.training  # the mode is restored


def test_batched_sampling_agrees_within_sampling_noise():
    """Different seeds: the batched and sequential estimates differ by no more than two
    independent sequential estimates do (Monte Carlo noise), and the IC posterior is exact."""
    torch.manual_seed(0)
    m = LFADS(tiny_cfg(dropout_rate=0.0, co_prior_nvar=0.5, ic_prior_var=0.5))
    split = _split(40, {}, dtype=torch.float32)
    runs = {}
    for name, method, seed in (("seq1", "sequential", 1), ("seq2", "sequential", 2), ("batched", "batched", 3)):
        torch.manual_seed(seed)
        runs[name] = sample_split(m, split, n_samples=40, batch_size=16, method=method)
    for key in ("rates", "factors", "inferred_inputs"):
        noise = np.sqrt(np.mean((runs["seq2"][key] - runs["seq1"][key]) ** 2))
        diff = np.sqrt(np.mean((runs["batched"][key] - runs["seq1"][key]) ** 2))
        assert noise > 0, key
        assert 0.5 * noise < diff < 2.0 * noise, (key, diff, noise)
    for key in ("ic_mean", "ic_std"):
        np.testing.assert_allclose(runs["batched"][key], runs["seq1"][key], rtol=1e-6, atol=1e-7)


def test_sampling_method_is_checked():
    m = LFADS(tiny_cfg())
    with pytest.raises(ValueError, match="method must be one of"):
        sample_split(m, _split(4, {}), n_samples=2, method="parallel")


def test_cuda_graph_path_bookkeeping_emulated_on_cpu(monkeypatch):
    """``cuda_graphs``' static buffers (emulated on CPU: the same code, replayed by calling it):
    gradients equal the plain fast path's over several steps with changing weights, and a
    second forward before the backward is refused rather than giving wrong gradients."""
    monkeypatch.setattr(cuda_graphs, "GRAPH_EMULATION_ON_CPU", True)
    monkeypatch.setattr(cuda_graphs, "_GRAPHS", {})
    torch.manual_seed(0)
    plain = LFADS(tiny_cfg()).double().train()
    graphed = LFADS(tiny_cfg(), Execution(cuda_graphs=True)).double().train()
    graphed.load_state_dict(plain.state_dict())
    x = counts((B, T, N_IN)).double()
    y = counts((B, T + FP, N_IN + N_OUT), seed=3).double()
    opts = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in (plain, graphed)]
    for step in range(3):
        grads = []
        for m, opt in zip((plain, graphed), opts):
            out, g = step_gradients(m, x, y)
            grads.append(g)
            opt.step()
        for n in grads[0]:
            torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-10, atol=1e-12, msg=f"{n}, step {step}")
    assert len(cuda_graphs._GRAPHS) == 1  # one shape, captured once
    first = graphed(x)
    graphed(x)  # overwrites the first pass's saved tensors
    with pytest.raises(RuntimeError, match="another forward pass"):
        first.params.sum().backward()
