"""LFADS quality on the simulated calcium imaging of the Lorenz recording (config/imaging.yaml),
where the truth is known: the zero-inflated Gamma likelihood (zig) against the Gaussian on the
same data, and both against the smoothing baseline.

    python benchmarks/imaging_quality.py              # both likelihoods, 2 cores
    python benchmarks/imaging_quality.py --workdir /tmp/imaging_quality

Runs the whole workflow (simulate -> ingest -> bin -> align -> train_lfads -> sample_posterior
-> evaluate -> decode_behavior -> figures -> summary) in a fresh working directory on one
simulated file with two sheet rows: ``lorenz_imaging`` (likelihood ``zig``) and
``lorenz_imaging_gaussian`` (``gaussian``), both modelling the ``Deconvolved`` series (an AR(1)
deconvolution of the noisy dF/F, thresholded: sparse non-negative events, many zeros;
``lfads_core.nwb.simulate.imaging_traces``), 1 frame per bin at 30 Hz. Reports, on the
validation trials (the simulation has no test trials): latent R^2 (affine map from factors
to the true Lorenz latents, fitted on the training trials; target >= 0.9), held-out ROI
prediction (heldout_ll_gain, bits per observed entry, under each model's own family, and
heldout_r2) and vel R^2 of LFADS and of the trace-smoothing baseline, and the decoding R^2
of LFADS rates against smoothed traces. Writes ``imaging_quality.json`` in the work dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROWS = {"lorenz_imaging": "zig", "lorenz_imaging_gaussian": "gaussian"}
LATENT_TARGET = 0.9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temp dir)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="imaging_quality_"))
    shutil.copytree(ROOT / "config", work / "config", dirs_exist_ok=True)
    sheet = pd.read_csv(ROOT / "config" / "imaging.tsv", sep="\t")
    row = sheet.iloc[0].to_dict()
    sheet = pd.DataFrame([{**row, "dataset": name} for name in ROWS])
    sheet.to_csv(work / "config" / "bench.tsv", sep="\t", index=False)
    overlay = yaml.safe_load((ROOT / "config" / "imaging.yaml").read_text())
    overlay["datasets"] = "config/bench.tsv"
    training = overlay["lfads"]["overrides"]["lorenz_imaging"]["training"]
    overlay["lfads"]["overrides"] = {name: {"model": {"likelihood": likelihood},
                                            "training": training}
                                     for name, likelihood in ROWS.items()}
    (work / "bench.yaml").write_text(yaml.safe_dump(overlay))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(work), "--cores", str(args.cores),
           "--configfile", str(work / "bench.yaml")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    minutes = (time.perf_counter() - start) / 60

    report = {"minutes": round(minutes, 2), "workdir": str(work), "datasets": {}}
    for name, likelihood in ROWS.items():
        metrics = pd.read_csv(work / "results" / name / "metrics.tsv", sep="\t")
        decoding = pd.read_csv(work / "results" / name / "decoding" / "summary.tsv", sep="\t")
        split = "test" if (metrics["split"] == "test").any() else "valid"
        m = metrics[metrics["split"] == split]

        def value(method, metric):
            rows = m[(m["method"] == method) & (m["metric"] == metric)]
            return float(rows["value"].iloc[0]) if len(rows) else float("nan")

        dec = decoding[decoding["target"] == "all"].set_index("method")["r2"]
        log = pd.read_csv(work / "results" / name / "lfads" / "default" / "train_log.csv")
        report["datasets"][name] = {
            "likelihood": likelihood, "split": split, "epochs": int(len(log)),
            "latent_r2": value("lfads", "latent R2 (truth)"),
            **{f"{metric}_{method}": value(method, metric)
               for metric in ("heldout_ll_gain", "heldout_r2", "vel R2", "psth R2")
               for method in ("lfads", "smoothing")},
            "decoding_r2_lfads_rates": float(dec.get("lfads_rates", float("nan"))),
            "decoding_r2_smoothed_traces": float(dec.get("smoothed_traces", float("nan"))),
        }
    (work / "imaging_quality.json").write_text(json.dumps(report, indent=2))
    print(f"\nworkflow: {minutes:.1f} min on {args.cores} cores ({work})")
    table = pd.DataFrame(report["datasets"]).T
    print(table.to_string())
    for name, r in report["datasets"].items():
        checks = {
            f"latent R^2 >= {LATENT_TARGET}": r["latent_r2"] >= LATENT_TARGET,
            "LFADS beats smoothing on heldout_ll_gain":
                r["heldout_ll_gain_lfads"] > r["heldout_ll_gain_smoothing"],
            "LFADS beats smoothing on heldout_r2":
                r["heldout_r2_lfads"] > r["heldout_r2_smoothing"],
            "LFADS beats smoothing on vel R^2": r["vel R2_lfads"] > r["vel R2_smoothing"],
        }
        for check, ok in checks.items():
            print(f"{name} ({r['likelihood']}): {check}: {'met' if ok else 'MISSED'}")
    z, g = (report["datasets"][n] for n in ROWS)
    print(f"zig vs gaussian: latent R^2 {z['latent_r2']:.3f} vs {g['latent_r2']:.3f}; "
          f"heldout_r2 {z['heldout_r2_lfads']:.3f} vs {g['heldout_r2_lfads']:.3f}; "
          f"vel R^2 {z['vel R2_lfads']:.3f} vs {g['vel R2_lfads']:.3f}")


if __name__ == "__main__":
    main()
