"""LFADS quality on the simulated continuous Lorenz recording, segments merged back onto its clock.

    python benchmarks/continuous_quality.py                 # config/continuous.yaml (README run)
    python benchmarks/continuous_quality.py --configfile extra.yaml   # merged over it

Runs the workflow (simulate -> ingest -> bin -> align into overlapping segments ->
train_lfads -> sample_posterior -> extract_factors, evaluate) on config/continuous.yaml's
5-minute recording with 2 cores in a fresh working directory, times it, and reports on the
scored blocks (test blocks, else validation), each bin once:

- merged rate R^2: the merged LFADS rates of ``factors.h5`` (Hz) against the true rates on
  the same bins (mean over neurons; target >= 0.9);
- seams: the same R^2 on the bins within 5 bins of a segment's edge, and on the others (the
  segments' middles); target: seams within 0.02 of the middles;
- vel R^2 of ``metrics.tsv``: LFADS rates against the smoothing baseline (target: above it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lfads_core.analysis.evaluation import load_arrays
from lfads_core.analysis.ground_truth import rate_r2
from lfads_core.analysis.stretches import stretch_view
from lfads_core.nwb.export import load_factors

ROOT = Path(__file__).resolve().parent.parent
SEAM_BINS = 5


def seam_mask(starts: np.ndarray, n_window: int, first: int, n: int) -> np.ndarray:
    """Bins ``[first, first + n)`` within ``SEAM_BINS`` of a segment's edge (its first bin or
    its window's end)."""
    mask = np.zeros(n, bool)
    for edge in np.concatenate([starts, starts + n_window]):
        lo, hi = edge - SEAM_BINS - first, edge + SEAM_BINS - first
        mask[max(0, lo):max(0, min(n, hi))] = True
    return mask


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, help="extra config merged over it")
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temp dir)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="continuous_quality_"))
    shutil.copytree(ROOT / "config", work / "config", dirs_exist_ok=True)
    results = work / "results" / "lorenz_continuous"
    targets = [f"results/lorenz_continuous/{name}" for name in ("metrics.tsv", "factors.h5")]
    cmd = [sys.executable, "-m", "snakemake", *targets, "--snakefile",
           str(ROOT / "Snakefile"), "--directory", str(work), "--cores", str(args.cores),
           "--configfile", str(work / "config" / "continuous.yaml")]
    if args.configfile:
        cmd.append(str(args.configfile.resolve()))
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    minutes = (time.perf_counter() - start) / 60

    data = load_arrays(results / "lfads_input.h5")
    split = "test" if "test_encod_data" in data else "valid"
    attrs = data["attrs"]
    n_window, width = int(attrs["segment_length_bins"]), float(attrs["bin_width_s"])
    view, _ = stretch_view({"attrs": attrs, **{k: v for k, v in data.items()
                                               if k.startswith(f"{split}_")}})
    out = load_factors(results / "factors.h5")
    truth, merged, seams = [], [], []
    for k, first in enumerate(view[f"{split}_start_bins"]):
        n = int(view[f"{split}_lengths"][k])
        truth.append(view[f"{split}_truth_rates"][k, :n] / width)  # Hz, as factors.h5
        merged.append(out.rates[first:first + n])
        block = view[f"{split}_block"][k]
        starts = data[f"{split}_start_bins"][data[f"{split}_block"] == block]
        seams.append(seam_mask(starts, n_window, int(first), n))
    truth, merged, seams = (np.concatenate(x) for x in (truth, merged, seams))
    overall = rate_r2(merged, truth)
    at_seams, middles = rate_r2(merged[seams], truth[seams]), rate_r2(merged[~seams],
                                                                     truth[~seams])
    metrics = pd.read_csv(results / "metrics.tsv", sep="\t")
    vel = metrics[(metrics["metric"] == "vel R2") & (metrics["split"] == split)] \
        .set_index("method")["value"]
    epochs = sum(1 for _ in open(results / "lfads" / "default" / "train_log.csv")) - 1
    print(f"whole workflow {minutes:.1f} min on {args.cores} cores; {epochs} epochs; scored "
          f"{split} blocks: {len(view[f'{split}_lengths'])} stretches, {len(truth)} bins "
          f"({len(truth) * width:.0f} s), {seams.sum()} seam bins")
    rows = [("merged rate R2 (truth)", overall, ">= 0.9", overall >= 0.9),
            ("  at seams (<= 5 bins from an edge)", at_seams, "", None),
            ("  in segment middles", middles, "", None),
            ("  seams - middles", at_seams - middles, ">= -0.02", at_seams - middles >= -0.02),
            ("vel R2 LFADS", vel.get("lfads", np.nan), "> smoothing",
             vel.get("lfads", np.nan) > vel.get("smoothing", np.nan)),
            ("vel R2 smoothing", vel.get("smoothing", np.nan), "", None)]
    print(f"{'measure':<38}{'value':>8}  {'target':<12}met")
    for name, value, target, met in rows:
        print(f"{name:<38}{value:>8.3f}  {target:<12}{'' if met is None else ('yes' if met else 'NO')}")


if __name__ == "__main__":
    main()
