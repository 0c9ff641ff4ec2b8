"""LFADS quality on the simulated Lorenz dataset, where the truth is known.

    python benchmarks/lorenz_quality.py                      # the default config (README run)
    python benchmarks/lorenz_quality.py --configfile config/lfads_full_quality.yaml
    python benchmarks/lorenz_quality.py --seed 1                   # another training seed

Runs the whole workflow (simulate -> ingest -> bin -> align -> train_lfads ->
sample_posterior) with 2 cores in a fresh working directory, times it, and reports on the
validation trials: rate R^2 of the inferred rates against the true rates (mean over neurons),
R^2 of an affine map from factors to the true Lorenz latents (fitted on the training trials),
and the Gaussian-smoothed-spikes baseline's rate R^2 (kernel chosen on the training trials).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import yaml

from lfads_core.analysis.ground_truth import latent_r2, rate_r2, smoothing_baseline_r2

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, help="extra config merged over the default")
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temp dir)")
    parser.add_argument("--seed", type=int, help="lfads.training.seed (default: the config's)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lorenz_quality_"))
    shutil.copytree(ROOT / "config", work / "config", dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(work), "--cores", str(args.cores)]
    overlays = [args.configfile.resolve()] if args.configfile else []
    if args.seed is not None:
        overlays.append(work / "seed.yaml")
        overlays[-1].write_text(yaml.safe_dump({"lfads": {"training": {"seed": args.seed}}}))
    if overlays:
        cmd += ["--configfile", *map(str, overlays)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    minutes = (time.perf_counter() - start) / 60

    results = work / "results" / "lorenz"
    with h5py.File(results / "lfads_input.h5", "r") as data, \
            h5py.File(results / "lfads" / "default" / "posterior.h5", "r") as post:
        d = {k: data[k][()] for k in data}
        p = {k: post[k][()] for k in post}
    lfads_rate = rate_r2(p["valid_rates"], d["valid_truth_rates"])
    lfads_latent = latent_r2(p["train_factors"], d["train_truth_latents"],
                             p["valid_factors"], d["valid_truth_latents"])
    smooth_rate, sigma = smoothing_baseline_r2(d["train_recon_data"], d["train_truth_rates"],
                                               d["valid_recon_data"], d["valid_truth_rates"])
    epochs = sum(1 for _ in open(results / "lfads" / "default" / "train_log.csv")) - 1
    seed = "of the config" if args.seed is None else args.seed
    print(f"config: {args.configfile or 'default'}, training seed {seed}; whole workflow "
          f"{minutes:.1f} min on {args.cores} cores; {epochs} epochs")
    print(f"{'method':<28}{'rate R2':>9}{'latent R2':>11}")
    print(f"{'LFADS':<28}{lfads_rate:>9.3f}{lfads_latent:>11.3f}")
    print(f"{f'smoothed spikes ({sigma:g} bins)':<28}{smooth_rate:>9.3f}{'':>11}")


if __name__ == "__main__":
    main()
