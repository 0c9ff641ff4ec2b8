"""GPU throughput of LFADS (MC_Maze 5 ms architecture) and what fraction of the GPU it uses.

    PYTHONPATH=. python benchmarks/bench_gpu.py [--out DIR] [--quick]
    # the same code paths on the CPU (a smoke run; tests do this):
    PYTHONPATH=. python benchmarks/bench_gpu.py --device cpu --quick --batches 8 --sample-batches 8 \
        --samples 4 --profile-batch 8

Measures, on the first CUDA device (needs only torch and numpy):

* the GPU's peak matmul rate (large square GEMMs: float32, TF32 and bf16), the yardstick;
* training trials/s at batch 128, 256, 512 and 1024 (forward, backward, AdamW, coordinated
  dropout; median of timed steps after warm-up), for ``amp`` none and bf16, with the
  controller-generator loop as the plain Python loop, replayed as CUDA graphs
  (``cuda_graphs``) or as the Triton kernels (``triton_decoder``), and the peak GPU memory of each;
* posterior sampling trial-samples/s (batched sampler, 50 samples, with the plain loop and
  with the Triton forward kernel; and the sequential one for comparison) and its peak GPU memory;
* a profile of training steps at batch 256 (each loop): the operator table by device time,
  kernels launched a step, and how much of the wall time the GPU was busy;
* last, the Triton kernels' trials per program and warps at batch 256 (a tuning sweep);
* an analytic count of the model's matmul FLOPs per trial (forward; a training step counted
  as 3x the forward), so that every rate is also stated as a fraction of the measured peak.

Writes ``gpu_bench.json`` into ``--out`` (default ``$OUT`` or the current folder) and prints
a summary.  Without a GPU it says so and exits 0.  ``--device cpu`` runs the same measurements
on the CPU (float32, the plain loop only), so the script is tested where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_lfads_step import make_model, training_step  # noqa: E402
from lfads_core.lfads.execution import Execution  # noqa: E402


def forward_flops_per_trial(cfg) -> dict[str, float]:
    """Matmul FLOPs (2 per multiply-add) of one trial's forward pass, by part."""
    T, Tr = cfg.encod_seq_len, cfg.recon_seq_len
    n_in, n_out = cfg.encod_data_dims[0], cfg.recon_data_dims[0]
    gru = lambda i, h: 2 * (i * 3 * h + h * 3 * h)  # noqa: E731  one step: input + recurrent
    enc = 2 * T * gru(n_in, cfg.ic_enc_dim) + 2 * T * gru(n_in, cfg.ci_enc_dim)  # two directions each
    ic = 2 * (2 * cfg.ic_enc_dim) * (2 * cfg.ic_dim) + 2 * cfg.ic_dim * cfg.gen_dim
    C, G, K, F = cfg.con_dim, cfg.gen_dim, cfg.co_dim, cfg.fac_dim
    con = Tr * (gru(2 * cfg.ci_enc_dim + F, C) + 2 * C * 2 * K + 2 * G * F)  # incl. factors -> controller
    gen = Tr * gru(K, G)
    readout = Tr * (2 * G * F + 2 * F * n_out)
    return {"encoders": enc, "ic": ic, "controller": con, "generator": gen, "readout": readout,
            "total": enc + ic + con + gen + readout, "decoder_only": ic + con + gen + readout}


def sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak_memory(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_memory_mb(dev) -> float:
    """Peak GPU memory allocated since the last reset; on CPU the process's resident high-water mark."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def peak_matmul(dev, dtype, tf32=False, n=8192, reps=20) -> float:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(dev)
    torch.backends.cuda.matmul.allow_tf32 = False
    return 2 * n**3 * reps / (time.perf_counter() - t)


LOOPS = ("plain", "cuda_graphs", "triton")  # how the controller-generator loop runs


def train_step_for(dev, batch, amp, loop):
    """The benchmark's training step (MC_Maze 5 ms architecture, random Poisson counts) on
    ``dev``; ``loop``: one of :data:`LOOPS`."""
    from lfads_core.lfads.loops import cuda_graphs

    cuda_graphs._GRAPHS.clear()
    torch.manual_seed(0)
    model = make_model("fast")
    model.execution = Execution(cuda_graphs=loop == "cuda_graphs", triton=loop == "triton")
    model = model.to(dev).train()
    encod = torch.poisson(torch.full((batch, 140, 137), 0.1, device=dev))
    recon = torch.cat([encod, torch.poisson(torch.full((batch, 140, 45), 0.1, device=dev))], dim=-1)
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if amp == "bf16" else None
    return training_step(model, encod, recon, autocast)


def bench_train(dev, batch, amp, loop, steps, warmup) -> dict:
    step = train_step_for(dev, batch, amp, loop)
    reset_peak_memory(dev)
    first_loss = step().item()  # the same seed and data for every loop: compares their rounding
    for _ in range(warmup - 1):
        step()
    sync(dev)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = step()
        sync(dev)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"batch": batch, "amp": amp, "loop": loop, "median_step_s": med,
            "trials_per_s": batch / med, "finite_loss": bool(torch.isfinite(loss).item()), "first_loss": first_loss,
            "peak_memory_mb": peak_memory_mb(dev)}


def profile_train(dev, batch, loop, steps, out_path) -> dict:
    """torch.profiler over ``steps`` training steps after warm-up: the operator table (by device
    time on a GPU, by CPU time otherwise) is appended to ``out_path``; returns the kernel launches
    per step and the fraction of the wall time the device was busy (low: launch-bound)."""
    from torch.profiler import ProfilerActivity, profile

    step = train_step_for(dev, batch, "none", loop)
    for _ in range(3):
        step()
    sync(dev)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            step()
        sync(dev)
        wall = time.perf_counter() - t
    averages = prof.key_averages()
    on_device = [e for e in averages if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_us = sum(e.self_device_time_total for e in on_device)
    sort = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    with open(out_path, "a") as f:
        f.write(f"== training step, batch {batch}, loop {loop}, {steps} steps, {wall / steps * 1e3:.1f} ms a step\n\n"
                + averages.table(sort_by=sort, row_limit=40) + "\n\n")
    return {"batch": batch, "loop": loop, "step_s": wall / steps,
            "kernels_per_step": sum(e.count for e in on_device) / steps,
            "device_busy_fraction": busy_us * 1e-6 / wall, "table": Path(out_path).name}


def bench_sample(dev, batch, n_samples, method, loop="plain") -> dict:
    from lfads_core.lfads.data import SplitData
    from lfads_core.lfads.posterior import sample_split

    torch.manual_seed(0)
    model = make_model("fast")
    model.execution = Execution(triton=loop == "triton")
    model = model.to(dev).eval()
    encod = torch.poisson(torch.full((batch, 140, 137), 0.1))
    split = SplitData(encod, torch.cat([encod, encod[..., :45]], -1), torch.arange(batch))
    sample_split(model, split, n_samples=2, batch_size=batch, device=dev, method=method)
    sync(dev)
    reset_peak_memory(dev)
    t = time.perf_counter()
    sample_split(model, split, n_samples=n_samples, batch_size=batch, device=dev, method=method)
    sync(dev)
    dt = time.perf_counter() - t
    return {"batch": batch, "n_samples": n_samples, "method": method, "loop": loop, "seconds": dt,
            "trial_samples_per_s": batch * n_samples / dt, "peak_memory_mb": peak_memory_mb(dev)}


def loss_difference(row: dict, plain: dict | None) -> None:
    """Adds to a training row the relative difference of its first step's loss from the plain
    loop's (float32, same batch): about 1e-7 is float32 rounding, 1e-4 TF32's."""
    if plain is not None and "first_loss" in row:
        row["first_loss_rel_diff_vs_plain"] = abs(row["first_loss"] - plain["first_loss"]) / abs(plain["first_loss"])


def off_by(row: dict) -> str:
    d = row.get("first_loss_rel_diff_vs_plain")
    return "" if d is None else f", first loss off by {d:.1e}"


def tune_triton(dev, batch, deadline, rows, save, plain=None) -> None:
    """Training trials/s with the Triton loop for several trials-per-program, warp counts and
    dot precisions (each a new compilation), appended to ``rows``, until ``deadline``
    (time.monotonic()). The TF32 rows say what tensor cores would give: ``tf32`` with TF32's
    rounding, ``tf32x3`` (three TF32 products a multiply) about float32's; each row's first
    loss is compared with the plain loop's (``plain``: its row at this batch)."""
    from lfads_core.lfads.loops import triton_decoder as td

    default = td.BLOCK_B, td.NUM_WARPS, td.DOT_PRECISION
    try:
        for block_b, warps, precision in [(16, 4, "ieee"), (16, 4, "tf32x3"), (16, 4, "tf32"), (16, 8, "ieee"),
                                          (32, 4, "ieee"), (32, 8, "ieee"), (16, 8, "tf32x3"), (64, 8, "ieee")]:
            if time.monotonic() > deadline:
                rows.append({"stopped": "time budget reached"})
                break
            td.BLOCK_B, td.NUM_WARPS, td.DOT_PRECISION = block_b, warps, precision
            try:
                r = bench_train(dev, batch, "none", "triton", 10, 3)
            except Exception as e:
                r = {"error": f"{type(e).__name__}: {e}"}
            r.update(block_b=block_b, num_warps=warps, dot_precision=precision)
            loss_difference(r, plain)
            rows.append(r)
            print(f"triton block_b {block_b:2d} num_warps {warps} {precision:6s}: "
                  + (f"{r['trials_per_s']:9.0f} trials/s{off_by(r)}" if "error" not in r else f"FAILED {r['error']}"),
                  flush=True)
            save()
    finally:
        td.BLOCK_B, td.NUM_WARPS, td.DOT_PRECISION = default


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--quick", action="store_true", help="fewer steps and configurations (a smoke run)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run of the same code)")
    ap.add_argument("--batches", default="128,256,512,1024", help="training batch sizes (comma-separated)")
    ap.add_argument("--sample-batches", default="256,1024", help="batched-sampling batch sizes")
    ap.add_argument("--samples", type=int, default=50, help="posterior samples per trial")
    ap.add_argument("--profile-batch", type=int, default=256, help="batch of the profiled training steps")
    ap.add_argument("--budget-s", type=float, default=270, help="start no tuning run after this many seconds")
    ap.add_argument("--loops", default=",".join(LOOPS), help="loops to measure (comma-separated, of: %(default)s)")
    ap.add_argument("--amps", default="none,bf16", help="autocast settings to measure (none, bf16)")
    args = ap.parse_args()
    deadline = time.monotonic() + args.budget_s
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "device_type": args.device}
    cfg = make_model("fast").cfg
    flops = forward_flops_per_trial(cfg)
    report["flops_per_trial"] = flops | {"train_step_factor": 3.0}
    if args.device == "cuda" and not torch.cuda.is_available():
        report["skipped"] = "no CUDA GPU"
        (out_dir / "gpu_bench.json").write_text(json.dumps(report, indent=1))
        print(f"no CUDA GPU: GPU benchmark skipped (FLOPs per trial, forward: {flops['total'] / 1e9:.3f} G); "
              f"wrote {out_dir / 'gpu_bench.json'}")
        return 0
    dev = torch.device(args.device)
    on_gpu = dev.type == "cuda"
    report["device"] = torch.cuda.get_device_name(dev) if on_gpu else "cpu"
    steps, warmup = (args.steps or (5 if args.quick else 20)), (3 if args.quick else 5)

    def save():
        (out_dir / "gpu_bench.json").write_text(json.dumps(report, indent=1))

    if on_gpu:
        report["peak_matmul_flops"] = peak = {
            "fp32": peak_matmul(dev, torch.float32), "tf32": peak_matmul(dev, torch.float32, tf32=True),
            "bf16": peak_matmul(dev, torch.bfloat16)}
    else:
        fp32 = peak_matmul(dev, torch.float32, n=1024, reps=5)
        report["peak_matmul_flops"] = peak = {"fp32": fp32, "tf32": fp32, "bf16": fp32}
    print(f"{report['device']}: peak matmul fp32 {peak['fp32'] / 1e12:.1f}, tf32 {peak['tf32'] / 1e12:.1f}, "
          f"bf16 {peak['bf16'] / 1e12:.1f} TFLOP/s; model {flops['total'] / 1e9:.3f} GFLOP per trial forward",
          flush=True)
    save()
    report["train"] = []
    plain = {}  # batch -> the plain float32 loop's row
    loops = [loop for loop in LOOPS if loop in args.loops.split(",")]
    configs = [(amp, loop) for amp in args.amps.split(",") for loop in loops]
    if not on_gpu:
        configs = configs[:1]
    elif args.quick:
        configs = configs[:3]
    for batch in map(int, args.batches.split(",")):
        for amp, loop in configs:
            try:
                r = bench_train(dev, batch, amp, loop, steps, warmup)
            except Exception as e:  # report and go on: one failing configuration must not hide the rest
                r = {"batch": batch, "amp": amp, "loop": loop, "error": f"{type(e).__name__}: {e}"}
                print(f"train batch {batch} amp {amp} loop {loop}: FAILED {r['error']}", flush=True)
                report["train"].append(r)
                save()
                continue
            if loop == "plain" and amp == "none":
                plain[batch] = r
            loss_difference(r, plain.get(batch))
            yard = peak["bf16"] if amp == "bf16" else peak["fp32"]
            r["achieved_flops"] = r["trials_per_s"] * 3 * flops["total"]
            r["fraction_of_peak"] = r["achieved_flops"] / yard
            r["fraction_of_peak_tf32"] = r["achieved_flops"] / peak["tf32"]
            report["train"].append(r)
            print(f"train batch {batch:4d} amp {amp:4s} loop {loop:11s}: {r['trials_per_s']:9.0f} trials/s, "
                  f"{r['median_step_s'] * 1e3:7.1f} ms/step, peak {r['peak_memory_mb']:6.0f} MB, "
                  f"{100 * r['fraction_of_peak']:.2f}% of peak ({'bf16' if amp == 'bf16' else 'fp32'}){off_by(r)}",
                  flush=True)
            save()
    report["sample"] = []
    sample_batches = list(map(int, args.sample_batches.split(",")))
    sample_loops = [loop for loop in ("plain", "triton") if loop in loops and (on_gpu or loop == "plain")]
    runs = [(b, "batched", args.samples, loop) for loop in sample_loops for b in sample_batches]
    if "plain" in loops:
        runs.append((sample_batches[0], "sequential", max(1, args.samples // 5), "plain"))
    for batch, method, n, loop in runs:
        try:
            r = bench_sample(dev, batch, n, method, loop)
        except Exception as e:
            r = {"batch": batch, "method": method, "loop": loop, "error": f"{type(e).__name__}: {e}"}
            print(f"sample batch {batch} {method} loop {loop}: FAILED {r['error']}", flush=True)
            report["sample"].append(r)
            save()
            continue
        # per trial-sample: the decoder; the encoders once per trial (batched) or per sample (sequential)
        per = flops["decoder_only"] + flops["encoders"] / (n if method == "batched" else 1)
        r["achieved_flops"] = r["trial_samples_per_s"] * per
        r["fraction_of_peak"] = r["achieved_flops"] / peak["fp32"]
        report["sample"].append(r)
        print(f"sample batch {batch:4d} {method:10s} loop {loop:6s}: {r['trial_samples_per_s']:10.0f} trial-samples/s, "
              f"peak {r['peak_memory_mb']:6.0f} MB, {100 * r['fraction_of_peak']:.2f}% of fp32 peak", flush=True)
        save()
    # Where a step's time goes (last: the figures above are saved whatever happens here).
    report["profile"] = []
    name = "gpu_profile.txt"
    (out_dir / name).unlink(missing_ok=True)
    for loop in (loops if on_gpu else loops[:1]):
        try:
            r = profile_train(dev, args.profile_batch, loop, 2 if args.quick else 5, out_dir / name)
        except Exception as e:
            r = {"loop": loop, "error": f"{type(e).__name__}: {e}"}
            print(f"profile loop {loop}: FAILED {r['error']}", flush=True)
        else:
            print(f"profile batch {r['batch']} loop {loop:11s}: {r['step_s'] * 1e3:.1f} ms a step, "
                  f"{r['kernels_per_step']:.0f} kernels a step, device busy {100 * r['device_busy_fraction']:.0f}% "
                  f"({name})", flush=True)
        report["profile"].append(r)
        save()
    if on_gpu and "triton" in loops:
        report["triton_tuning"] = []
        tune_triton(dev, args.profile_batch, deadline, report["triton_tuning"], save, plain.get(args.profile_batch))
    print(f"wrote {out_dir / 'gpu_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
