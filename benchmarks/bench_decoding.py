"""Back-to-back time of the `decode_behavior` rule's work, this checkout (A) against another
(B), in alternating rounds (A B, B A, ...), each a fresh process on the same workflow results.

The work is ``decode_dataset``: a ridge decoder per feature set (LFADS rates and factors,
smoothed and binned spikes), each choosing among 8 penalties by 3 inner folds of the training
trials and scored on the held-out trials (a checkout from before that design: 5 trial-wise
outer folds). Prints every round, the median of B's time over A's with its range, and the
largest difference between the two sides' decoding R^2 (every method and target; only
meaningful between checkouts of the same design).

    git worktree add /tmp/prev <commit>
    python benchmarks/bench_decoding.py --baseline-src /tmp/prev --results results/lorenz
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(results: Path) -> dict:
    import yaml

    from lfads_core.analysis.evaluation import decode_dataset, load_arrays

    warnings.simplefilter("ignore")  # the earlier solver's ill-conditioning warnings
    settings = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["evaluation"]
    data = load_arrays(results / "lfads_input.h5")
    posterior = load_arrays(results / "lfads" / "default" / "posterior.h5")
    start = time.perf_counter()
    decoding = {"n_folds": 5, **settings["decoding"]}  # n_folds: for a checkout with K-fold decoding
    summary = decode_dataset(data, posterior, settings["smoothing_sigma_ms"], decoding)[1]
    column = "r2" if "r2" in summary else "r2_mean"
    return {"seconds": time.perf_counter() - start, "r2": summary[column].tolist()}


def run_side(args, side: str) -> dict:
    src = ROOT if side == "A" else Path(args.baseline_src).resolve()
    threads = str(args.threads)
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=threads,
               OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    cmd = [sys.executable, __file__, "--worker", "--results", str(args.results.resolve())]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"worker failed ({side} side, {src}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results/lorenz"),
                    help="a results/{dataset} folder of a workflow run (default: results/lorenz)")
    ap.add_argument("--baseline-src", help="the B side's checkout")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.results)))
        return
    if not args.baseline_src:
        ap.error("--baseline-src is needed (the checkout to compare with)")
    ratios, largest_difference = [], 0.0
    for r in range(args.rounds):
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        res = {side: run_side(args, side) for side in order}
        ratios.append(res["B"]["seconds"] / res["A"]["seconds"])
        largest_difference = max(largest_difference, *(
            abs(a - b) for a, b in zip(res["A"]["r2"], res["B"]["r2"])))
        print(f"round {r + 1} ({order[0]} first): this checkout {res['A']['seconds']:.1f} s | "
              f"baseline {res['B']['seconds']:.1f} s | baseline/this {ratios[-1]:.2f}x", flush=True)
    print(f"median {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] over "
          f"{args.rounds} rounds; largest decoding R^2 difference {largest_difference:.1e}")


if __name__ == "__main__":
    main()
