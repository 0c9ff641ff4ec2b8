"""Throughput and peak memory of one LFADS training step (forward, backward, AdamW).

Architecture: lfads-torch's MC_Maze 5 ms model (IC encoder 100, CI encoder 80, controller 80,
inferred inputs 4, IC 100, generator 100, factors 40, dropout 0.02, coordinated dropout 0.3;
137 held-in inputs, 182 read-out channels, 140 bins, batch 128, Poisson).

    python benchmarks/bench_lfads_step.py [--threads 2] [--repeats 9] [--device cpu|cuda|all]

Runs the fast implementation and the straightforward reference implementation back to back,
each in a fresh process (so peak memory is its own), and prints the median step time,
trials/s, peak memory and the fast/reference ratio. ``--device all`` adds CUDA when present.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from lfads_core.lfads.config import ModelConfig
from lfads_core.lfads.execution import Execution
from lfads_core.lfads.model import LFADS, CoordinatedDropout


def make_model(impl: str, native_kernels: bool = False) -> LFADS:
    """The MC_Maze 5 ms model, its loops run as ``impl`` (``fast`` or ``reference``), with the
    fast path's loops compiled from C if ``native_kernels``."""
    cfg = ModelConfig(
        encod_data_dims=[137], recon_data_dims=[182], encod_seq_len=140, recon_seq_len=140,
        ic_enc_dim=100, ci_enc_dim=80, con_dim=80, co_dim=4, ic_dim=100, gen_dim=100, fac_dim=40,
        dropout_rate=0.02, cd_rate=0.3, likelihood="poisson",
    )
    return LFADS(cfg, Execution(impl=impl, native=native_kernels))


def training_step(model: LFADS, encod: torch.Tensor, recon: torch.Tensor, autocast=None):
    """One training step as the workflow's loop runs it (coordinated dropout, forward, loss with
    the likelihood's data-only term cached once as in ``epochs.py``, backward, gradient clipping,
    AdamW), as a function of no arguments returning the loss; ``autocast``: a context-manager
    factory for mixed precision, or None."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cd = CoordinatedDropout(model.cfg.cd_rate, native=model.execution.native)  # as epochs.py
    constant = model.nll_constant(recon)

    def step():
        x, keep = cd.mask_input(encod)
        if autocast is not None:
            with autocast():
                out = model(x)
        else:
            out = model(x)
        nll = cd.route_gradients(model.recon_nll(out, recon, constant), keep)
        loss = (nll.sum((1, 2)).mean() + model.kl_ic(out).mean() + model.kl_co(out).mean()
                + 2000 * model.l2_gen())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
        opt.step()
        return loss

    return step


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with open("/proc/self/status") as f:  # resident-set high-water mark of this process
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def worker(impl: str, device: str, threads: int, batch: int, repeats: int, warmup: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = make_model(impl).to(dev).train()
    encod = torch.poisson(torch.full((batch, 140, 137), 0.1)).to(dev)
    recon = torch.cat([encod, torch.poisson(torch.full((batch, 140, 45), 0.1)).to(dev)], dim=-1)
    train_step = training_step(model, encod, recon)

    def step():
        train_step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"impl": impl, "device": device, "median_s": statistics.median(times),
            "times": times, "peak_mb": peak_memory_mb(dev)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "all"])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        impl, device = args.worker.split(":", 1)
        print(json.dumps(worker(impl, device, args.threads, args.batch, args.repeats,
                                args.warmup)))
        return

    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else \
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"batch {args.batch}, {args.threads} CPU threads, torch {torch.__version__}, "
          f"median of {args.repeats} steps after {args.warmup} warm-up steps")
    for device in devices:
        results = {}
        for impl in ("fast", "reference"):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", f"{impl}:{device}", "--threads",
                 str(args.threads), "--batch", str(args.batch), "--repeats", str(args.repeats),
                 "--warmup", str(args.warmup)], capture_output=True, text=True, check=True)
            r = results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{device:>5} {impl:>9}: {r['median_s']:.3f} s/step, "
                  f"{args.batch / r['median_s']:7.1f} trials/s, peak {r['peak_mb']:.0f} MB")
        ratio = results["reference"]["median_s"] / results["fast"]["median_s"]
        print(f"{device:>5} fast is {ratio:.2f}x the reference implementation")


if __name__ == "__main__":
    main()
