import json
from pathlib import Path

import h5py
import numpy as np

from lfads_core.analysis.plotting import (condition_names, plot_factor_trajectories,
                                          plot_raster_with_rates, plot_training_curves)
from lfads_core.analysis.stretches import stretch_times, stretch_view
from lfads_core.nwb.alignment import window_offsets_s
from lfads_core.workflow.scripting import rule_logging

#: how much of a continuous recording's first scored stretch the figures show (s)
SHOWN_S = 15.0

with rule_logging(snakemake) as log:
    out = snakemake.output
    plot_training_curves(snakemake.input.train_log, out.curves.removesuffix(".png"))
    names, title = condition_names(json.loads(Path(snakemake.input.metadata).read_text())
                                   .get("conditions"))
    with h5py.File(snakemake.input.posterior, "r") as post, \
            h5py.File(snakemake.input.data, "r") as data:
        bin_width = float(data.attrs["bin_width_s"])
        start = window_offsets_s(data.attrs)[0]  # relative to the event
        splits = [s for s in ("train", "valid", "test") if f"{s}_encod_data" in data]
        shown = splits[-1]  # the first trial of the split the scores come from
        if "segment_length_bins" in data.attrs:  # continuous: a merged stretch of the recording
            keys = ("encod_data", "recon_data", "start_bins", "block")
            view, merged = stretch_view(
                {"attrs": dict(data.attrs), **{f"{shown}_{k}": data[f"{shown}_{k}"][()]
                                               for k in keys}},
                {f"{shown}_{k}": post[f"{shown}_{k}"][()] for k in ("rates", "factors")})
            n = min(int(view[f"{shown}_lengths"][0]), int(round(SHOWN_S / bin_width)))
            t0 = float(stretch_times(view, shown)[0])
            plot_raster_with_rates(view[f"{shown}_recon_data"][0, :n],
                                   merged[f"{shown}_rates"][0, :n], bin_width,
                                   out.raster.removesuffix(".png"), start_s=t0)
            plot_factor_trajectories(merged[f"{shown}_factors"][:1, :n], np.zeros(1, int),
                                     out.factors.removesuffix(".png"), bin_width_s=bin_width,
                                     condition_names={0: f"{t0:.1f}-{t0 + n * bin_width:.1f} s"},
                                     condition_title=f"{shown} stretch (recording's clock)")
            log.info("figures of the first %s stretch, %.1f-%.1f s", shown, t0,
                     t0 + n * bin_width)
        else:
            spikes = data[f"{shown}_recon_data"][0]  # bins x channels
            plot_raster_with_rates(spikes, post[f"{shown}_rates"][0], bin_width,
                                   out.raster.removesuffix(".png"), start_s=start)
            factors = np.concatenate([post[f"{s}_factors"][()] for s in splits])
            conditions = np.concatenate([data[f"{s}_cond_idx"][()] for s in splits])
            plot_factor_trajectories(factors, conditions, out.factors.removesuffix(".png"),
                                     bin_width_s=bin_width, window_start_offset_s=start,
                                     event=str(data.attrs["align_event"]),
                                     condition_names=names, condition_title=title)
