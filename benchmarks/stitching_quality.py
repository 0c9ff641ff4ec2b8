"""Stitched LFADS against single-session models on simulated sessions of one latent system.

    python benchmarks/stitching_quality.py                 # 5 sessions of about 60 trials
    python benchmarks/stitching_quality.py --sessions 3 --epochs 100

One workflow run in a fresh working directory: a multi-session Lorenz simulation (one latent
system and one population of 150 neurons; each session observes its own 60 of them, its own
conditions' trials: 12 conditions x 5 trials = 60 trials), every session a row of the group
`stitched`, with `lfads.stitching.single_session_baseline` on, so the same run trains the
stitched model and one model per session, all with the same epoch budget. It reports per
session, on its validation trials: co-bps and rate R^2 against the true rates of both; and the
latent R^2 of one affine map from the stitched factors to the true latents fitted on every
session's training trials together. Training time (Snakemake's benchmark records): the group's
job against the sum of the single-session jobs and against one model of the same size on as
many trials from one session (`pooled`: 60 neurons, 12 conditions x 25 trials, trained and
scored in the same run). Results go to ``--out`` as JSON; ``--keep`` continues in an existing
``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml

from lfads_core.analysis.ground_truth import fit_latent_map, r2_per_channel

ROOT = Path(__file__).resolve().parent.parent
GROUP = "stitched"
POOLED = "pooled"


def prepare(work: Path, n_sessions: int, epochs: int, keep: bool) -> list[str]:
    if work.exists() and not keep:
        shutil.rmtree(work)
    shutil.copytree(ROOT / "config", work / "config", dirs_exist_ok=True)
    lorenz = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["simulations"]["lorenz"]
    names = [f"session{k}" for k in range(n_sessions)]
    overlay = {
        "datasets": "config/sessions.tsv",
        "simulations": {"lorenz_sessions": {**lorenz, "n_neurons": 150, "n_conditions": 12,
                                            "sessions": n_sessions, "neurons_per_session": 60,
                                            "trials_per_condition": 5},
                        "lorenz_pooled": {**lorenz, "n_neurons": 60, "n_conditions": 12,
                                          "trials_per_condition": 5 * n_sessions}},
        "lfads": {"overrides": {name: {"training": {"max_epochs": epochs}}
                                for name in [*names, GROUP, POOLED]},
                  "stitching": {"single_session_baseline": True}},
    }
    rows = ["dataset\tnwb\tbehavior\tcondition_columns\tgroup"]
    rows += [f"{name}\tresources/simulated/lorenz_sessions_session{k}.nwb\thand_vel\tcondition\t"
             f"{GROUP}" for k, name in enumerate(names)]
    rows.append(f"{POOLED}\tresources/simulated/lorenz_pooled.nwb\thand_vel\tcondition\t")
    (work / "config" / "sessions.tsv").write_text("\n".join(rows) + "\n")
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stitching_quality"))
    parser.add_argument("--out", type=Path, default=Path("stitching_quality.json"))
    parser.add_argument("--keep", action="store_true",
                        help="continue in an existing --workdir (jobs done stay done)")
    args = parser.parse_args()

    names = prepare(args.workdir, args.sessions, args.epochs, args.keep)
    targets = [f"results/{name}/metrics.tsv" for name in names]
    targets.append(f"results/{POOLED}/metrics.tsv")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(args.workdir), "--cores", str(args.cores), *targets,
           "--configfile", str(args.workdir / "overlay.yaml")]
    start = time.perf_counter()
    with open(args.workdir / "snakemake.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start

    results = args.workdir / "results"
    factors, latents = {}, {}
    rows = []
    for name in names:
        metrics = pd.read_csv(results / name / "metrics.tsv", sep="\t")
        value = metrics.set_index(["method", "metric"])["value"]
        with h5py.File(results / name / "lfads/stitched/default/posterior.h5") as post, \
                h5py.File(results / name / "lfads_input.h5") as data:
            n = data["train_truth_latents"].shape[1]
            factors[name] = {s: post[f"{s}_factors"][:, :n] for s in ("train", "valid")}
            latents[name] = {s: data[f"{s}_truth_latents"][()] for s in ("train", "valid")}
            trials = len(data["train_inds"]) + len(data["valid_inds"])
        rows.append({"session": name, "trials": trials,
                     **{f"{m} {metric}": float(value[(m, metric)])
                        for m in ("lfads stitched", "lfads single-session")
                        for metric in ("co-bps", "rate R2 (truth)")}})
    train_f = np.concatenate([factors[n]["train"] for n in names])
    train_z = np.concatenate([latents[n]["train"] for n in names])
    for row, name in zip(rows, names):  # one map for every session
        predicted = fit_latent_map(train_f, train_z, factors[name]["valid"])
        row["stitched latent R2 (one map)"] = float(np.mean(
            r2_per_channel(predicted, latents[name]["valid"])))
    bench = results.parent / "logs"
    seconds = {name: float(pd.read_csv(bench / name / "benchmark/train_lfads_default.tsv",
                                       sep="\t")["s"].iloc[0])
               for name in [*names, GROUP, POOLED]}
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    value = pd.read_csv(results / POOLED / "metrics.tsv", sep="\t").set_index(
        ["method", "metric"])["value"]
    pooled = {m: float(value[("lfads", m)]) for m in ("co-bps", "rate R2 (truth)")}
    print(f"one model on as many trials of one session (60 neurons): co-bps "
          f"{pooled['co-bps']:.3f}, rate R2 (truth) {pooled['rate R2 (truth)']:.3f}")
    single = sum(seconds[n] for n in names)
    print(f"\ntraining on {args.cores} cores, {args.epochs} epochs: stitched group "
          f"{seconds[GROUP]:.0f} s; one model on as many trials of one session "
          f"{seconds[POOLED]:.0f} s; the {len(names)} single-session models {single:.0f} s "
          f"together ({single / len(names):.0f} s each); whole workflow {wall / 60:.1f} min"
          f"{' (this continuation)' if args.keep else ''}")
    args.out.write_text(json.dumps({"sessions": rows, "pooled": pooled, "train_seconds": seconds,
                                    "wall_s": wall, "epochs": args.epochs}, indent=1))


if __name__ == "__main__":
    main()
