"""LFADS quality on the tutorial's chaotic RNN with input pulses, where the truth is known.

    python benchmarks/chaotic_rnn_quality.py [--workdir DIR] [--threads 2]

Runs the tutorial notebook's pipeline at full size with the settings of
config/tutorial_chaotic_rnn.yaml merged over config/config.yaml (as `snakemake --configfile`
does): simulate -> NWB -> ingest -> bin -> align -> train LFADS (controller on) -> posterior,
with the same package functions as the workflow, and reports on the validation trials:

- rate R^2: inferred against true rates, per neuron pooling trials and bins, mean over neurons
  (bar: >= 0.85);
- input timing: the share of trials whose inferred-input peak (largest deviation from the
  trial's median, `lfads_core.analysis.ground_truth.input_peak_bins`) is within 3 bins of the bin
  holding the true pulse onset (bar: >= 80%);
- wall times of the data stages, training and posterior sampling.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml
from snakemake.utils import update_config

from lfads_core.nwb.alignment import AlignSettings, align_trials
from lfads_core.nwb.binning import bin_session
from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.fileio import read_table
from lfads_core.analysis.ground_truth import (fraction_within, input_peak_error_bins, pulse_bins,
                                     rate_r2, smoothing_baseline_r2)
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
from lfads_core.lfads.posterior import run_posterior
from lfads_core.workflow.settings import lfads_settings_for, load_dataset_sheet, read_schema
from lfads_core.nwb.simulate import simulate_to_nwb
from lfads_core.lfads.training import train

ROOT = Path(__file__).resolve().parent.parent
NAME = "chaotic_rnn_pulses"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="chaotic_rnn_quality_"))
    work.mkdir(parents=True, exist_ok=True)

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((ROOT / "config" / "tutorial_chaotic_rnn.yaml").read_text()))
    schema = read_schema(ROOT / "workflow" / "schemas" / "datasets.schema.yaml")
    dataset = load_dataset_sheet(ROOT / config["datasets"], config["defaults"], schema)[NAME]
    lfads = lfads_settings_for(config["lfads"], NAME)

    start = time.perf_counter()
    simulate_to_nwb(config["simulations"][NAME], work / f"{NAME}.nwb")
    ingest_nwb(work / f"{NAME}.nwb", work / "session.h5", IngestSettings.from_settings(dataset))
    bin_session(work / "session.h5", work / "binned.h5", dataset["bin_width_ms"] / 1e3)
    align_trials(work / "binned.h5", work / "lfads_input.h5", AlignSettings.from_settings(dataset),
                 metadata_json=work / "lfads_input.json")
    t_data = time.perf_counter() - start
    result = train(work / "lfads_input.h5", work / "lfads", ModelConfig.from_dict(lfads["model"]),
                   TrainConfig.from_dict(lfads["training"]), device="cpu", resume=False)
    t_train = time.perf_counter() - start - t_data
    post = run_posterior(work / "lfads" / "model.pt", work / "lfads_input.h5",
                         work / "posterior.h5", device="cpu")
    t_post = time.perf_counter() - start - t_data - t_train

    with h5py.File(work / "lfads_input.h5", "r") as f:
        data = {k: f[k][()] for k in f}
        bin_width = float(f.attrs["bin_width_s"])
    with h5py.File(work / "binned.h5", "r") as f:
        pulse_time = read_table(f["trials"])["pulse_time"].to_numpy()[data["valid_inds"]]
    window_start = json.loads((work / "lfads_input.json").read_text())["window_start_times_s"]
    errors = input_peak_error_bins(post["valid_inferred_inputs"], pulse_bins(
        pulse_time, np.asarray(window_start["valid"]), bin_width))
    r2 = rate_r2(post["valid_rates"], data["valid_truth_rates"])
    smooth_r2, sigma = smoothing_baseline_r2(data["train_recon_data"], data["train_truth_rates"],
                                             data["valid_recon_data"], data["valid_truth_rates"])
    within = fraction_within(errors, 3)

    print(f"{NAME}: {len(data['train_inds'])} training, {len(errors)} validation trials; "
          f"{args.threads} threads; work dir {work}")
    print(f"wall time: data stages {t_data:.0f} s, training {t_train / 60:.1f} min "
          f"({result.epochs_run} epochs, best {result.best_epoch}, {result.stop_reason}), "
          f"posterior {t_post:.0f} s, total {(time.perf_counter() - start) / 60:.1f} min")
    print(f"rate R^2 (validation): LFADS {r2:.3f} (bar >= 0.85); smoothed spikes {smooth_r2:.3f} "
          f"({sigma:g}-bin kernel)")
    print(f"inferred-input peak within 3 bins of the pulse: {100 * within:.1f}% of validation "
          f"trials (bar >= 80%); median error {np.median(errors):+.0f} bins, "
          f"within 1 bin {100 * fraction_within(errors, 1):.1f}%")
    print("bars met" if r2 >= 0.85 and within >= 0.8 else "BARS NOT MET")


if __name__ == "__main__":
    main()
