"""``model.triton_decoder``: the controller-generator loop as two Triton kernels, checked
against the Python loops.  Without a GPU the kernels run on CPU tensors through Triton's
interpreter (``TRITON_INTERPRET=1``, set here before the kernels' module is imported);
``tests/test_cuda.py`` checks them on a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("needs Triton (the test extra installs it on Linux x86-64)", allow_module_level=True)
# before Triton is imported: its language functions are made for the interpreter at import
if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
from lfads_core.lfads.data import SplitData  # noqa: E402
from lfads_core.lfads.execution import Execution  # noqa: E402
from lfads_core.lfads.loops import decoder_scan, triton_decoder  # noqa: E402
from lfads_core.lfads.model import LFADS  # noqa: E402
from lfads_core.lfads.posterior import sample_split  # noqa: E402

from conftest import hide_packages, step_gradients  # noqa: E402
from test_model import B, FP, N_IN, N_OUT, T, counts, tiny_cfg  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_decoder.INTERPRETED:
    pytest.skip("Triton was imported before the interpreter could be asked for", allow_module_level=True)


def _loop_inputs(T_r, batch, G, C, K, masks: bool, eps: bool, seed=0):
    """Random inputs of the decoder loop, sizes that are no powers of two (the kernels pad)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: (torch.randn(*shape, generator=gen) * 0.4).to(DEVICE)  # noqa: E731
    dropout = (torch.rand(T_r + 1, batch, G, generator=gen) > 0.2).float().to(DEVICE) / 0.8
    return [r(batch, G), r(batch, C), r(T_r, batch, 3 * C), r(3 * G).expand(T_r, batch, 3 * G), r(3 * C, G),
            r(3 * C, C), r(3 * C), r(2 * K, C), r(2 * K), r(3 * G, K), r(3 * G, G), r(3 * G),
            dropout if masks else None, r(T_r, batch, K) if eps else None]


@pytest.mark.parametrize("masks, eps, clip", [(True, True, 5.0), (False, False, float("inf")), (True, False, 0.3)])
def test_kernels_give_the_python_loops_outputs_saved_gates_and_gradients(masks, eps, clip):
    """20 trials (two programs, the second partly empty), hidden sizes 24 / 10 / 3; with a clip
    of 0.3 the clamp is active. Float32 to rounding."""
    args = _loop_inputs(6, 20, 24, 10, 3, masks, eps)
    (out_k, saved_k) = triton_decoder.decoder_forward(*args, clip, save=True)
    (out_p, saved_p) = decoder_scan._decoder_forward(*args, clip, save=True)
    for name, a, b in zip(("gs", "gds", "cps", "cos"), out_k, out_p):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6, msg=name)
    for i, (a, b) in enumerate(zip(saved_k, saved_p)):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6, msg=f"saved[{i}]")
    if clip < 1:
        assert (saved_p[10].abs() == clip).any()  # some generator states were clipped
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(o.shape, generator=gen).to(DEVICE) for o in out_p]
    names = ("dcx", "dgh_c", "dgx", "dgh_g", "dcp", "dg0", "dhc0")
    for name, a, b in zip(names, triton_decoder.decoder_backward_loop(saved_p, clip, *grads),
                          decoder_scan._decoder_backward_loop(saved_p, clip, *grads)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6, msg=name)


def test_forward_without_gradients_and_with_repeated_trials():
    """Without gradients (validation, posterior sampling) the kernel keeps no gates, returns
    the states as the dropped states when there is no dropout, and serves a batch made of
    repeats of the trials' projections (row j B' + b is trial b), as the Python loop does."""
    args = _loop_inputs(5, 8, 24, 10, 3, masks=False, eps=True)
    gen = torch.Generator().manual_seed(2)
    args[0], args[1] = (torch.randn(24, n, generator=gen).to(DEVICE) for n in (24, 10))  # 3 repeats of 8
    args[13] = torch.randn(5, 24, 3, generator=gen).to(DEVICE)
    (out_k, none), (out_p, _) = (f(*args, 5.0, save=False) for f in (triton_decoder.decoder_forward,
                                                                      decoder_scan._decoder_forward))
    assert none is None and out_k[1] is out_k[0]
    for name, a, b in zip(("gs", "gds", "cps", "cos"), out_k, out_p):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6, msg=name)
    with pytest.raises(ValueError, match="repeated trials"):
        triton_decoder.decoder_forward(*args, 5.0, save=True)
    assert not triton_decoder.runs_on(args[0].double())


def test_model_with_the_triton_decoder_trains_and_samples_as_the_fast_path():
    """The whole model in train mode (dropout, coordinated noise): the same outputs and
    parameter gradients with ``triton_decoder`` as without; and the same posterior estimates
    from the batched sampler (50 samples as one repeated batch), for the same seed."""
    torch.manual_seed(0)
    plain = LFADS(tiny_cfg()).to(DEVICE).train()
    fused = LFADS(tiny_cfg(), Execution(triton=True)).to(DEVICE).train()
    fused.load_state_dict(plain.state_dict())
    x, y = counts((B, T, N_IN)).to(DEVICE), counts((B, T + FP, N_IN + N_OUT), seed=3).to(DEVICE)
    results = [step_gradients(m, x, y, seed=7) for m in (plain, fused)]
    (o_p, g_p), (o_f, g_f) = results
    torch.testing.assert_close(o_f.params, o_p.params, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(o_f.inferred_inputs, o_p.inferred_inputs, rtol=1e-5, atol=1e-6)
    assert g_f.keys() == g_p.keys() and len(g_p) > 20
    for n in g_p:
        torch.testing.assert_close(g_f[n], g_p[n], rtol=1e-4, atol=1e-6, msg=n)
    split = SplitData(x.cpu(), y.cpu(), torch.arange(B))
    estimates = []
    for m in (plain, fused):
        torch.manual_seed(3)
        estimates.append(sample_split(m, split, n_samples=50, batch_size=B, device=torch.device(DEVICE)))
    for k in ("rates", "factors", "inferred_inputs"):
        np.testing.assert_allclose(estimates[1][k], estimates[0][k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_without_triton_the_loops_fall_back_with_a_warning(tmp_path):
    """Asked for where Triton is missing (hidden from a fresh interpreter here): the request
    warns and resolves to the CUDA graphs; a model made to use Triton anyway stops with an
    error that names the setting."""
    script = ("import logging, torch\nlogging.basicConfig()\n"
              "from lfads_core.lfads.execution import Execution, resolve_execution\n"
              "from lfads_core.lfads.model import LFADS\nfrom test_model import tiny_cfg, counts, B, T, N_IN\n"
              "print(resolve_execution({'loops': 'triton'}, 'cuda'))\n"
              "LFADS(tiny_cfg(), Execution(triton=True)).train()(counts((B, T, N_IN)))\n")
    root = Path(__file__).resolve().parent
    hidden = hide_packages(tmp_path / "no_triton", ["triton"])
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(hidden), str(root.parent), str(root)])}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "Triton loops asked for, Triton not installed" in run.stderr
    assert "cuda_graphs=True" in run.stdout and "triton=False" in run.stdout
    assert "the Triton loops need Triton" in run.stderr and "lfads.execution.loops" in run.stderr
