import h5py
import numpy as np

from lfads_core.analysis.plotting import (plot_factor_trajectories, plot_raster_with_rates,
                                 plot_training_curves)
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    out = snakemake.output
    plot_training_curves(snakemake.input.train_log, out.curves.removesuffix(".png"))
    with h5py.File(snakemake.input.posterior, "r") as post, \
            h5py.File(snakemake.input.data, "r") as data:
        bin_width = float(data.attrs["bin_width_s"])
        start = float(data.attrs["window_start_s"])
        spikes = data["valid_recon_data"][0]  # first validation trial, bins x channels
        plot_raster_with_rates(spikes, post["valid_rates"][0], bin_width,
                               out.raster.removesuffix(".png"), start_s=start)
        factors = np.concatenate([post["train_factors"][()], post["valid_factors"][()]])
        conditions = np.concatenate([data["train_cond_idx"][()], data["valid_cond_idx"][()]])
        plot_factor_trajectories(factors, conditions, out.factors.removesuffix(".png"),
                                 bin_width_s=bin_width)
