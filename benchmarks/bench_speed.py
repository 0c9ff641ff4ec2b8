"""Back-to-back speed of the LFADS training step and of posterior sampling, in alternating
rounds (A B, B A, A B, ...), each run in a fresh process with the same shapes and seeds.

* training step (forward, backward, AdamW; coordinated dropout as in training):
  ``loops: fast`` (A) against ``loops: reference`` (B);
* posterior sampling of one batch of trials (50 samples): the batched sampler (A) against
  the sequential one, the whole model once per sample (B, ``method="sequential"``).

Architecture: lfads-torch's MC_Maze 5 ms model (see ``bench_lfads_step.py``: 137 held-in
inputs, 182 read-out channels, 140 bins, Poisson).  Prints every round, then per batch size
the median of B's time over A's with its range over the rounds, and each side's peak
resident memory (the process's high-water mark, imports and data included).

    python benchmarks/bench_speed.py                       # both, batch 128 and 256, 4 rounds
    python benchmarks/bench_speed.py --what sample --batches 128 --rounds 2 --json out.json

``--native`` runs the A side with ``execution.loops: native`` (the fast path's loops as
compiled C; needs a C compiler, built once before the first round).

``--baseline-src DIR`` runs the B side from another checkout instead (e.g. the previous
release: ``git worktree add /tmp/base <commit>``), with the same option names: the training
B side then runs that checkout's fast path, the sampling B side its ``sample_split``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:  # resident-set high-water mark of this process
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def worker(args) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from bench_lfads_step import make_model, training_step

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    B = args.batch
    encod = torch.poisson(torch.full((B, 140, 137), 0.1))
    recon = torch.cat([encod, torch.poisson(torch.full((B, 140, 45), 0.1))], dim=-1)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    times = []
    if args.kind == "train":
        model = make_model(args.impl, args.native).to(dev).train()
        train_step = training_step(model, encod.to(dev), recon.to(dev))

        def step():
            train_step()
            sync()

        for _ in range(args.warmup):
            step()
        for _ in range(args.steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        per = B  # trials per timed unit
    else:
        from lfads_core.lfads.data import SplitData
        from lfads_core.lfads.posterior import sample_split

        model = make_model("fast", args.native).to(dev).eval()
        split = SplitData(encod, recon, torch.arange(B))
        kw = {} if args.method is None else {"method": args.method}
        sample_split(model, split, n_samples=2, batch_size=B, device=dev, **kw)  # warm-up
        for _ in range(args.steps):
            torch.manual_seed(1)
            t = time.perf_counter()
            sample_split(model, split, n_samples=args.samples, batch_size=B, device=dev, **kw)
            sync()
            times.append(time.perf_counter() - t)
        per = B * args.samples  # trial-samples per timed unit
    med = statistics.median(times)
    res = {"median_s": med, "times": times, "per_s": per / med, "peak_rss_mb": peak_rss_mb()}
    if dev.type == "cuda":
        res["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return res


def run_side(args, kind: str, side: str, batch: int) -> dict:
    """One fresh process for side A or B."""
    cmd = [sys.executable, __file__, "--worker", "--kind", kind, "--batch", str(batch), "--threads",
           str(args.threads), "--device", args.device, "--samples", str(args.samples)]
    env = dict(os.environ)
    if side == "A" and args.native:
        cmd.append("--native")
    if kind == "train":
        impl = "fast" if side == "A" or args.baseline_src else "reference"
        cmd += ["--impl", impl, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    else:
        cmd += ["--steps", str(args.sample_repeats)]
        if side == "A":
            cmd += ["--method", "batched"]
        elif not args.baseline_src:
            cmd += ["--method", "sequential"]
    if side == "B" and args.baseline_src:
        env["PYTHONPATH"] = str(Path(args.baseline_src).resolve())
    else:
        env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"worker failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


LABELS = {"train": ("fast", "reference"), "sample": ("batched", "sequential")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="train,sample", help="train, sample or both (comma-separated)")
    ap.add_argument("--batches", default="128,256", help="batch sizes (comma-separated)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds per batch size (A B, then B A, ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per process (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    ap.add_argument("--samples", type=int, default=50, help="posterior samples per trial")
    ap.add_argument("--sample-repeats", type=int, default=1, help="timed sampling passes per process")
    ap.add_argument("--baseline-src", help="run the B side from this checkout (see the docstring)")
    ap.add_argument("--native", action="store_true", help="A side with execution.loops: native")
    ap.add_argument("--json", help="write every round and the summary here")
    # worker options
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import torch

    kinds = [k.strip() for k in args.what.split(",") if k.strip()]
    if args.native:  # build the compiled kernels once, outside the timed rounds
        from lfads_core.lfads.loops.native import library

        library()
    batches = [int(b) for b in args.batches.split(",")]
    b_label = "baseline" if args.baseline_src else None
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, {args.rounds} rounds; "
          f"training: median of {args.steps} steps after {args.warmup}; sampling: {args.samples} samples "
          f"of one batch" + (f"; B side from {args.baseline_src}" if args.baseline_src else ""))
    report = {"settings": vars(args) | {"torch": torch.__version__}, "rounds": [], "summary": []}
    for kind in kinds:
        a_name, b_name = LABELS[kind][0] + ("+native" if args.native else ""), b_label or LABELS[kind][1]
        unit = "trials/s" if kind == "train" else "trial-samples/s"
        for batch in batches:
            ratios, peaks = [], {"A": [], "B": []}
            for r in range(args.rounds):
                order = ("A", "B") if r % 2 == 0 else ("B", "A")
                res = {side: run_side(args, kind, side, batch) for side in order}
                ratio = res["B"]["median_s"] / res["A"]["median_s"]
                ratios.append(ratio)
                for side in "AB":
                    peaks[side].append(res[side]["peak_rss_mb"])
                print(f"{kind:>6} batch {batch:4d} round {r + 1} ({order[0]} first): "
                      f"{a_name} {res['A']['median_s']:.3f} s ({res['A']['per_s']:.0f} {unit}, "
                      f"peak {res['A']['peak_rss_mb']:.0f} MB) | {b_name} {res['B']['median_s']:.3f} s "
                      f"({res['B']['per_s']:.0f} {unit}, peak {res['B']['peak_rss_mb']:.0f} MB) | "
                      f"{b_name}/{a_name} time {ratio:.2f}x", flush=True)
                report["rounds"].append({"kind": kind, "batch": batch, "round": r + 1, "order": order,
                                         "A": res["A"], "B": res["B"], "ratio": ratio})
            summary = {"kind": kind, "batch": batch, "A": a_name, "B": b_name,
                       "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
                       "max_ratio": max(ratios), "peak_rss_mb_A": max(peaks["A"]),
                       "peak_rss_mb_B": max(peaks["B"])}
            report["summary"].append(summary)
    print("\nsummary (ratio = B's time / A's time, median [range] over rounds; peak resident memory, max over rounds)")
    for s in report["summary"]:
        print(f"  {s['kind']:>6} batch {s['batch']:4d}: {s['A']} is {s['median_ratio']:.2f}x {s['B']} "
              f"[{s['min_ratio']:.2f}-{s['max_ratio']:.2f}]; peak {s['peak_rss_mb_A']:.0f} MB ({s['A']}) vs "
              f"{s['peak_rss_mb_B']:.0f} MB ({s['B']})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
