"""The recurrences' implementations beside the model's own reference loops (see README.md here).

Each runs the same computation as :class:`..model.LFADS`'s plain per-step loops, with the same
parameters and random draws; :mod:`..execution` alone chooses which one runs.

* :mod:`.kernels`: the fast path's GRU scans (precomputed input projections, hand-written
  backward), with the step helpers;
* :mod:`.decoder_scan`: the fast path's controller-generator loop, dispatching its inner
  loops to Python, :mod:`.native` or :mod:`.triton_decoder`;
* :mod:`.native` (+ ``native_kernels.c``): the fast path's loops compiled from C (CPU);
* :mod:`.cuda_graphs`: the decoder loop replayed as CUDA graphs;
* :mod:`.triton_decoder`: the decoder loop as two Triton kernels (CUDA), imported only when
  asked for.
"""
