"""Population-based training against the single default run, at the same epochs per model.

    python benchmarks/pbt_quality.py                                  # both datasets, seed 0
    python benchmarks/pbt_quality.py --datasets mc_maze_small --seeds 0 1 2

For each dataset and seed it runs the workflow twice in fresh working directories, one after
the other on ``--cores`` cores: the default config (one `train_lfads` run), and the same with
``config/pbt_laptop.yaml`` (population 4, 25 epochs per generation) and as many generations as
make each lineage train the default run's epoch budget. The datasets:

* ``lorenz``: the simulated default dataset with the published defaults of
  ``config/lfads_full_quality.yaml`` but 200 epochs (has behaviour and the truth).
* ``mc_maze_small``: the real MC_Maze_Small recording in ``../shared/data/mc_maze_small``
  (DANDI:000140, Churchland & Kaufman; Pei et al. 2021, CC-BY-4.0), 100 trials, 107 units,
  with a seeded random split and 20% random held-out units (its file holds no held-out units
  and no behaviour); 500 epochs.

Both runs hold out the same ``--test-fraction`` of the trials as test trials (default 0.2),
which no training, early stopping or PBT ranking reads. The seed sets ``lfads.training.seed``
and ``lfads.pbt.seed`` (the data, split and held-out units stay the same). It reports co-bps
(and vel R^2 and rate R^2 against the truth where there are) on the validation trials, which
PBT ranks its members by, and on the test trials side by side, wall time, and for PBT the
bookkeeping per generation (the plan and table rules, and each member job's time outside its
epochs) against the training time. Results go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
MC_MAZE_SMALL = ROOT.parent / "shared/data/mc_maze_small/sub-Jenkins_ses-small_desc-test_ecephys.nwb"
BUDGET = {"lorenz": 200, "mc_maze_small": 500}  # the single run's max_epochs per dataset
METRICS = ("co-bps", "vel R2", "rate R2 (truth)")


def prepare(work: Path, dataset: str, seed: int, pbt: bool, test_fraction: float,
            keep: bool = False) -> list[str]:
    """A fresh working directory (``keep``: the existing one); returns the extra snakemake
    arguments."""
    if work.exists() and not keep:
        shutil.rmtree(work)
    shutil.copytree(ROOT / "config", work / "config", dirs_exist_ok=True)
    overlay = {"lfads": {"training": {"seed": seed}}, "defaults": {"test_fraction": test_fraction}}
    if dataset == "lorenz":  # the published defaults (not the quick start's budget), 200 epochs
        full = yaml.safe_load((ROOT / "config" / "lfads_full_quality.yaml").read_text())
        lorenz = full["lfads"]["overrides"]["lorenz"]
        lorenz["training"]["max_epochs"] = BUDGET[dataset]
        overlay["lfads"]["overrides"] = {"lorenz": lorenz}
    if dataset == "mc_maze_small":
        (work / "config" / "bench.tsv").write_text(
            f"dataset\tnwb\tsplit\theldout\n{dataset}\t{MC_MAZE_SMALL}\trandom\t0.2\n")
        overlay["datasets"] = "config/bench.tsv"
    if pbt:
        laptop = yaml.safe_load((ROOT / "config" / "pbt_laptop.yaml").read_text())["lfads"]["pbt"]
        generations = BUDGET[dataset] // laptop["epochs_per_generation"]
        overlay["lfads"]["pbt"] = {"seed": seed, "generations": generations}
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    extra = ["--configfile"]
    if pbt:
        extra.append(str(ROOT / "config" / "pbt_laptop.yaml"))
    return extra + [str(work / "overlay.yaml")]


def bench_seconds(work: Path, dataset: str, pattern: str) -> list[float]:
    files = sorted((work / "logs" / dataset / "benchmark").glob(pattern))
    return [float(pd.read_csv(f, sep="\t")["s"].iloc[0]) for f in files]


def pbt_costs(work: Path, dataset: str) -> dict:
    """Seconds per generation: training epochs, member jobs' time outside their epochs, and
    the light plan and table rules."""
    pbt = work / "results" / dataset / "lfads" / "pbt"
    member_jobs = bench_seconds(work, dataset, "train_pbt_member_*.tsv")
    per_generation = yaml.safe_load((ROOT / "config" / "pbt_laptop.yaml").read_text())[
        "lfads"]["pbt"]["epochs_per_generation"]
    epochs = 0.0
    for result in sorted(pbt.glob("gen_*/member_*/result.yaml")):
        generation = yaml.safe_load(result.read_text())["generation"]
        log = pd.read_csv(result.parent / "train_log.csv")
        epochs += float(log.loc[log["epoch"] >= generation * per_generation, "time_s"].sum())
    light = bench_seconds(work, dataset, "pbt_plan_*.tsv") + \
        bench_seconds(work, dataset, "pbt_generation_table_*.tsv")
    generations = len(bench_seconds(work, dataset, "pbt_plan_*.tsv"))
    return {"generations": generations, "training_s": round(epochs, 1),
            "member_job_s": round(sum(member_jobs), 1),
            "member_overhead_s": round(sum(member_jobs) - epochs, 1),
            "light_rules_s": round(sum(light), 1),
            "overhead_per_generation_s": round((sum(member_jobs) - epochs + sum(light))
                                               / generations, 1),
            "overhead_fraction": round((sum(member_jobs) - epochs + sum(light))
                                       / max(epochs, 1e-9), 4)}


def run(work: Path, dataset: str, seed: int, pbt: bool, cores: int, resume: bool,
        test_fraction: float) -> dict:
    """One workflow run; ``resume``: continue an interrupted run in ``work`` (jobs done stay
    done; its wall time then counts the continuation only)."""
    done = resume and (work / "results" / dataset / "metrics.tsv").exists()
    extra = prepare(work, dataset, seed, pbt, test_fraction, keep=resume)
    targets = [f"results/{dataset}/metrics.tsv"]
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(work), "--cores", str(cores), *targets, *extra]
    if resume:
        cmd += ["--rerun-incomplete", "--rerun-triggers", "mtime"]
    start = time.perf_counter()
    if not done:
        with open(work / "snakemake.log", "a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    metrics = pd.read_csv(work / "results" / dataset / "metrics.tsv", sep="\t")
    lfads = metrics[metrics["method"] == "lfads"].set_index(["metric", "split"])["value"]
    out = {"dataset": dataset, "seed": seed, "method": "pbt" if pbt else "default",
           "wall_s": None if resume else round(wall, 1),
           **{f"{m} ({split})": float(v) for (m, split), v in lfads.items() if m in METRICS}}
    run_dir = "selected" if pbt else "default"
    train_log = pd.read_csv(work / "results" / dataset / "lfads" / run_dir / "train_log.csv")
    out["epochs"] = len(train_log)
    if pbt:
        out.update(pbt_costs(work, dataset))
        chosen = yaml.safe_load((work / "results" / dataset / "lfads" / "selected" /
                                 "config.yaml").read_text())
        out["selected_settings"] = chosen["settings"]
    else:
        out["train_s"] = bench_seconds(work, dataset, "train_lfads_default.tsv")[0]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["lorenz", "mc_maze_small"],
                        choices=sorted(BUDGET))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pbt_quality"))
    parser.add_argument("--out", type=Path, default=Path("pbt_quality.json"))
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="trials held out as test trials in both runs (default 0.2)")
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted runs in --workdir instead of starting afresh")
    args = parser.parse_args()

    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            for pbt in (False, True):
                work = args.workdir / f"{dataset}_seed{seed}_{'pbt' if pbt else 'default'}"
                row = run(work, dataset, seed, pbt, args.cores, args.resume, args.test_fraction)
                rows.append(row)
                print(json.dumps(row), flush=True)
                args.out.write_text(json.dumps(rows, indent=1))
    table = pd.DataFrame(rows)
    print(f"\nmedians over seeds {args.seeds} ({args.cores} cores):")
    columns = [f"{m} ({split})" for m in METRICS for split in ("valid", "test")] + ["epochs", "wall_s"]
    columns = [c for c in columns if c in table]
    print(table.groupby(["dataset", "method"])[columns].median().to_string())
    for dataset, group in table[table["method"] == "pbt"].groupby("dataset"):
        print(f"{dataset}: PBT bookkeeping {statistics.median(group['overhead_per_generation_s']):.1f}"
              f" s per generation, {100 * statistics.median(group['overhead_fraction']):.1f}% "
              f"of the training time")


if __name__ == "__main__":
    main()
