"""Execution ``loops: native``: the fast path's loops compiled from C agree with the Python
loops (to float rounding), the compiled dropout mask is a dropout mask, and a machine that
cannot build them warns and runs the fast path, for training and for sampling."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from lfads_core.lfads import execution
from lfads_core.lfads.data import SplitData
from lfads_core.lfads.execution import Execution
from lfads_core.lfads.loops import kernels, native
from lfads_core.lfads.model import LFADS
from lfads_core.lfads.posterior import run_posterior, sample_split
from lfads_core.lfads.training import train

from conftest import step_gradients
from test_model import B, FP, N_IN, N_OUT, T, counts, tiny_cfg
from test_training import N_TRAIN, dataset, r2, read_log, tiny_model, tiny_train  # noqa: F401 (fixture)

REASON = native.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"native kernels unavailable: {REASON}")
CONFIGS = [{}, {"con_dim": 0}, {"ext_input_dim": 2, "ci_lag": 2, "cell_clip": 0.3}]


def _no_dropout(m: LFADS) -> LFADS:
    """Dropout off (the compiled path draws its masks from another generator)."""
    m.cfg.dropout_rate = 0.0
    for layer in m.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    return m


def _pair(kw):
    torch.manual_seed(0)
    python = _no_dropout(LFADS(tiny_cfg(**kw)).train())
    compiled = copy.deepcopy(python)
    compiled.execution = Execution(native=True)
    return python, compiled


@pytest.mark.parametrize("kw", CONFIGS)
def test_compiled_loops_agree_with_python_loops(kw):
    """Outputs and every parameter's gradient (posterior noise on, dropout off) agree to float32
    rounding; with and without controller, with external inputs and a clipped generator."""
    python, compiled = _pair(kw)
    x = counts((B, T, N_IN))
    ext = torch.randn(B, T + FP, 2) if kw.get("ext_input_dim") else None
    y = counts((B, T + FP, N_IN + N_OUT), seed=3)
    (out_p, grads_p), (out_c, grads_c) = step_gradients(python, x, y, ext), \
        step_gradients(compiled, x, y, ext)
    for field in ("params", "factors", "gen_states", "co_mean", "inferred_inputs"):
        torch.testing.assert_close(getattr(out_c, field), getattr(out_p, field), rtol=1e-5, atol=1e-6)
    assert grads_c.keys() == grads_p.keys()
    for name, g in grads_p.items():
        torch.testing.assert_close(grads_c[name], g, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_compiled_scan_with_clipping_matches_python():
    """A GRU scan whose states hit the clip value: the clipped entries pass no gradient in both."""
    torch.manual_seed(0)
    D, T_, B_, H = 2, 15, 4, 6
    xp = torch.randn(D, T_, B_, 3 * H) * 2
    h0, w, b = torch.randn(D, B_, H), torch.randn(D, 3 * H, H), torch.randn(D, 3 * H)
    hs_p, gates_p = kernels._gru_scan_forward(xp, h0, w, b, 0.5, save=True)
    hs_c, gates_c = native.gru_scan_forward(xp, h0, w, b, 0.5, save=True)
    assert (hs_p.abs() == 0.5).float().mean() > 0.1  # the clip is active
    torch.testing.assert_close(hs_c, hs_p, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(hs_p)
    for a, c in zip(kernels._gru_scan_backward_loop(g, h0, w, hs_p, *gates_p, 0.5),
                    native.gru_scan_backward(g, h0, w, hs_c, *gates_c, 0.5)):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-5)


def test_compiled_sampling_agrees_with_python_sampling():
    """Posterior sampling (no gradients; the decoder reads each trial's encodings for all its
    samples) gives the Python loops' estimates for the same seed."""
    torch.manual_seed(0)
    python = LFADS(tiny_cfg()).eval()
    compiled = copy.deepcopy(python)
    compiled.execution = Execution(native=True)
    split = SplitData(counts((B, T, N_IN)), counts((B, T + FP, N_IN + N_OUT), seed=3), torch.arange(B))
    results = []
    for m in (python, compiled):
        torch.manual_seed(7)
        results.append(sample_split(m, split, n_samples=6, batch_size=B))
    for key in ("rates", "factors"):
        torch.testing.assert_close(torch.as_tensor(results[1][key]), torch.as_tensor(results[0][key]),
                                   rtol=1e-4, atol=1e-5)


def test_compiled_dropout_is_inverted_dropout():
    """Kept entries are scaled by 1 / (1 - p) and pass that gradient, dropped ones pass none; the
    same seed gives the same draw; evaluation mode is the identity."""
    layer = torch.nn.Dropout(0.3).train()
    x = torch.randn(300, 400, requires_grad=True)
    torch.manual_seed(0)
    y = native.dropout(layer, x, native=True)
    y.backward(torch.ones_like(y))
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    torch.testing.assert_close(x.grad, kept.float() / 0.7)
    torch.manual_seed(0)
    assert torch.equal(native.dropout(layer, x, native=True), y)
    assert torch.equal(native.dropout(layer.eval(), x, native=True), x)


def test_dropout_mask_is_seeded_and_has_the_rate():
    torch.manual_seed(0)
    a = native.dropout_mask((400, 500), 0.3)
    torch.manual_seed(0)
    b = native.dropout_mask((400, 500), 0.3)
    c = native.dropout_mask((400, 500), 0.3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.unique(a).tolist() == [0.0, pytest.approx(1 / 0.7)]
    kept = (a > 0).float()
    assert abs(kept.mean().item() - 0.7) < 0.005  # 200,000 draws: sd 0.001
    flat = kept.flatten()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.01


def test_training_with_compiled_loops_matches_python_loops(dataset, tmp_path):
    """train() with the C loops (their own dropout masks, so other draws) learns as well as
    with the Python loops: validation likelihood and rates against the truth."""
    path, spikes, rates = dataset
    results = {}
    for native_kernels in (False, True):
        res = train(path, tmp_path / f"run{native_kernels}", tiny_model(), tiny_train(max_epochs=30),
                    device="cpu", execution={"loops": "native" if native_kernels else "fast"})
        rows = read_log(res.log_path)
        assert float(rows[-1]["valid_recon"]) < float(rows[0]["valid_recon"])
        post = run_posterior(res.model_path, path, tmp_path / f"post{native_kernels}.h5", n_samples=10,
                             device="cpu")
        results[native_kernels] = (float(rows[-1]["valid_recon"]), r2(post["valid_rates"], rates[N_TRAIN:]))
    (recon_py, r2_py), (recon_c, r2_c) = results[False], results[True]
    assert abs(recon_c - recon_py) < 0.03 * abs(recon_py), results
    assert r2_c > r2_py - 0.05, results


def test_no_compiler_warns_and_runs_the_fast_path(dataset, tmp_path, monkeypatch, caplog):
    """A model trained with the C loops samples on a machine with no C compiler: asking for
    the C loops there warns once, naming why, and runs the fast path (the same posterior as
    asking for it); training asked to use them does the same."""
    path = dataset[0]
    trained = train(path, tmp_path / "native", tiny_model(), tiny_train(max_epochs=2),
                    device="cpu", execution={"loops": "native"})
    monkeypatch.setenv("LFADS_CORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(execution, "_warned", set())
    native.library.cache_clear()
    try:
        with pytest.raises(native.NativeKernelsUnavailable, match="C compiler"):
            native.library()
        with caplog.at_level(logging.INFO, logger="lfads_core.lfads.execution"):
            asked = run_posterior(trained.model_path, path, tmp_path / "asked.h5", n_samples=4,
                                  device="cpu", execution={"loops": "native"})
            again = train(path, tmp_path / "run", tiny_model(), tiny_train(max_epochs=1),
                          device="cpu", execution={"loops": "native"})
        fast = run_posterior(trained.model_path, path, tmp_path / "fast.h5", n_samples=4,
                             device="cpu", execution={"loops": "fast"})
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].startswith(
            "C loops asked for, no compiler found: fast path"), warnings
        assert "loops: fast path (execution.loops native on cpu)" in caplog.text
        for key in ("valid_rates", "valid_factors"):
            assert torch.equal(torch.as_tensor(asked[key]), torch.as_tensor(fast[key]))
        assert again.model_path.is_file()
        assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*.so"))
    finally:
        native.library.cache_clear()


def test_compiled_training_steps_are_deterministic():
    """Dropout on and posterior noise: the same seed gives the same gradients to the bit."""
    grads = []
    for _ in range(2):
        torch.manual_seed(0)
        m = LFADS(tiny_cfg(), Execution(native=True)).train()
        x, y = counts((B, T, N_IN)), counts((B, T + FP, N_IN + N_OUT), seed=3)
        grads.append(step_gradients(m, x, y)[1])
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
