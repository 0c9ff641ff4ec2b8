"""CUDA graphs for the controller-generator loop (execution ``loops: cuda_graphs``; what ``auto`` runs on CUDA).

The decoder scan of :mod:`.kernels` launches a few hundred small kernels a step on a GPU;
:class:`DecoderScanGraphed` captures its forward and backward loops once per batch shape and
replays each as one launch.  Off until a GPU run (``benchmarks/gpu_check.sh``) has proved it.
"""

from __future__ import annotations

import torch

__all__ = ["DecoderScanGraphed", "GRAPH_EMULATION_ON_CPU", "graphs_run_on"]

#: Emulate the CUDA-graph path on CPU (replaying = calling the function on the static
#: buffers), so that its bookkeeping is tested without a GPU.  Tests only.
GRAPH_EMULATION_ON_CPU = False
_GRAPHS: dict[tuple, tuple] = {}
_MAX_GRAPHS = 16


class _StaticCall:
    """``fn`` replayed on static input buffers: captured once as a CUDA graph (one launch for
    the whole loop instead of a few hundred small kernels), or, on CPU with
    :data:`GRAPH_EMULATION_ON_CPU`, called on the static buffers.  ``fn`` returns a nested
    tuple of tensors, which live in the graph's memory and are overwritten by the next replay."""

    def __init__(self, fn, args):
        self.fn = fn
        self.static_in = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
        self.replays = 0
        self.graph = None
        dev = next(a for a in args if isinstance(a, torch.Tensor)).device
        if dev.type == "cuda":
            stream = torch.cuda.Stream(dev)
            stream.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(2):  # warm-up outside the graph (allocator, cuBLAS workspaces)
                    fn(*self.static_in)
            torch.cuda.current_stream(dev).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.no_grad():
                self.static_out = fn(*self.static_in)
        else:
            self.static_out = None

    def __call__(self, *args):
        for dst, src in zip(self.static_in, args):
            if isinstance(dst, torch.Tensor) and dst.data_ptr() != src.data_ptr():
                dst.copy_(src)
        if self.graph is not None:
            self.graph.replay()
        else:
            with torch.no_grad():
                self.static_out = self.fn(*self.static_in)
        self.replays += 1
        return self.static_out


def graphs_run_on(device: torch.device) -> bool:
    """Whether the graphed path runs on ``device``: CUDA, or the CPU under emulation."""
    return device.type == "cuda" or GRAPH_EMULATION_ON_CPU


def _graph_key(args, clip, tag):
    return (tag, clip) + tuple(None if a is None else (a.device, a.dtype, tuple(a.shape)) for a in args)


class DecoderScanGraphed(torch.autograd.Function):
    """:class:`.decoder_scan.DecoderScan` with its forward and backward loops each replayed as one
    CUDA graph per batch shape (``Execution.cuda_graphs``).  ``loops``: the plain loops,
    ``(forward(*args, clip, save=True) -> (outputs, saved), backward(saved, clip, *grads))``.  The forward's saved tensors stay in the
    graph's memory until the backward: one forward, then its backward (as in training); a
    second forward before the backward is detected and raises."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, loops, g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps,
                clip: float):
        args = (g0, hc0, cx.contiguous(), gx.contiguous(), w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g,
                masks, eps)
        key = _graph_key(args, clip, "fwd")
        if key not in _GRAPHS:
            if len(_GRAPHS) >= _MAX_GRAPHS:
                _GRAPHS.clear()
            _GRAPHS[key] = (_StaticCall(lambda *a: loops[0](*a, clip, save=True), args), {})
        fwd, state = _GRAPHS[key]
        outputs, saved = fwd(*args)
        ctx.key, ctx.replay, ctx.clip, ctx.loop_backward = key, fwd.replays, clip, loops[1]
        return tuple(o.clone() for o in outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, d_gs, d_gds, d_cps, d_cos):
        fwd, state = _GRAPHS[ctx.key]
        if fwd.replays != ctx.replay:
            raise RuntimeError("cuda_graphs: another forward pass of the same shape ran before this backward "
                               "(its saved tensors were overwritten); run one forward per backward, or set "
                               "lfads.execution.loops: fast")
        saved = fwd.static_out[1]
        grads = (d_gs.contiguous(), d_gds.contiguous(), d_cps.contiguous(), d_cos.contiguous())
        if "bwd" not in state:
            n = len(saved)
            clip, backward = ctx.clip, ctx.loop_backward
            state["bwd"] = _StaticCall(lambda *a: backward(a[:n], clip, *a[n:]), saved + grads)
        out = state["bwd"](*(saved + grads))
        return (None,) + tuple(o.clone() for o in out) + (None, None, None)
