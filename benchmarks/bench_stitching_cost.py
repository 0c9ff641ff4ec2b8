"""Training time of a stitched group against one model on as many trials of one session.

    python benchmarks/bench_stitching_cost.py [--workdir /tmp/stitching_quality] [--rounds 4]

Reads the inputs `benchmarks/stitching_quality.py` wrote in ``--workdir``: the group's
sessions (`results/session{k}/lfads_input.h5`, 60 neurons and 60 trials each) and `pooled`
(one session of 60 neurons and as many trials as the group has in all). Alternating rounds
(A B B A ...), each a fresh process training ``--epochs`` epochs with the default settings on
``--threads`` threads: A the stitched model of every session, B the pooled model. Prints
each round's median seconds per epoch (from `train_log.csv`, first epoch left out) and the
median group/pooled ratio with its range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = """
import json, sys, torch, pandas as pd
from lfads_core.lfads.config import TrainConfig
from lfads_core.lfads.training import train
inputs, out, epochs, threads = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
train(inputs if len(inputs) > 1 else inputs[0], out, train_cfg=TrainConfig(max_epochs=epochs),
      device="cpu", resume=False)
print(pd.read_csv(f"{out}/train_log.csv")["time_s"].iloc[1:].median())
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stitching_quality"))
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each model")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    results = args.workdir / "results"
    models = {"stitched": [str(results / f"session{k}/lfads_input.h5")
                           for k in range(args.sessions)],
              "pooled": [str(results / "pooled/lfads_input.h5")]}
    missing = [p for paths in models.values() for p in paths if not Path(p).exists()]
    if missing:
        sys.exit(f"run benchmarks/stitching_quality.py first: missing {missing[0]}")
    order = [("stitched", "pooled") if r % 2 == 0 else ("pooled", "stitched")
             for r in range(args.rounds)]
    seconds = {name: [] for name in models}
    with tempfile.TemporaryDirectory() as tmp:
        for r, pair in enumerate(order):
            for name in pair:
                out = subprocess.run(
                    [sys.executable, "-c", WORKER, json.dumps(models[name]),
                     f"{tmp}/{name}{r}", str(args.epochs), str(args.threads)],
                    check=True, capture_output=True, text=True).stdout
                seconds[name].append(float(out.split()[-1]))
                print(f"round {r} {name}: {seconds[name][-1]:.3f} s per epoch", flush=True)
    ratios = [a / b for a, b in zip(seconds["stitched"], seconds["pooled"])]
    print(f"\nseconds per epoch (median of {args.rounds} rounds, {args.threads} thread(s)): "
          f"stitched {args.sessions} sessions {statistics.median(seconds['stitched']):.3f}, "
          f"pooled {statistics.median(seconds['pooled']):.3f}; ratio stitched/pooled "
          f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
