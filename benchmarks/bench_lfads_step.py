"""Time one LFADS training step (forward, backward, AdamW) on CPU.

Architecture: lfads-torch MC_Maze 5 ms (IC encoder 100, CI encoder 80,
controller 80, inferred inputs 4, IC 100, generator 100, factors 40,
dropout 0.02, coordinated dropout 0.3; 137 held-in inputs, 182 readout
channels, 140 bins, batch 128, Poisson).

    python benchmarks/bench_lfads_step.py --threads 2 --repeats 7 --impl fast

Prints per-step seconds and the median throughput in trials/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lfads_core.config import ModelConfig
from lfads_core.model import LFADS, CoordinatedDropout


def make_model(impl: str) -> LFADS:
    cfg = ModelConfig(
        encod_data_dims=[137], recon_data_dims=[182], encod_seq_len=140, recon_seq_len=140,
        ic_enc_dim=100, ci_enc_dim=80, con_dim=80, co_dim=4, ic_dim=100, gen_dim=100, fac_dim=40,
        dropout_rate=0.02, cd_rate=0.3, likelihood="poisson", impl=impl,
    )
    return LFADS(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", default="fast", choices=["fast", "reference"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = make_model(args.impl)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cd = CoordinatedDropout(model.cfg.cd_rate)
    B = args.batch
    encod = torch.poisson(torch.full((B, 140, 137), 0.1))
    recon = torch.cat([encod, torch.poisson(torch.full((B, 140, 45), 0.1))], dim=-1)

    def step():
        x, keep = cd.mask_input(encod)
        out = model(x)
        nll = cd.route_gradients(model.recon_nll(out, recon), keep)
        loss = nll.sum((1, 2)).mean() + model.kl_ic(out).mean() + model.kl_co(out).mean() + 2000 * model.l2_gen()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
        opt.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"impl={args.impl} threads={args.threads} batch={B} step_s=" + ",".join(f"{t:.3f}" for t in times))
    print(f"median step {med:.3f} s -> {B / med:.1f} trials/s")


if __name__ == "__main__":
    main()
