import h5py

from lfads_core.analysis.score_figures import plot_decoded_behavior, plot_decoded_over_time
from lfads_core.nwb.alignment import window_offsets_s
from lfads_core.workflow.scripting import rule_logging

#: how much of a continuous recording's first scored stretch the figure shows (s)
SHOWN_S = 15.0

with rule_logging(snakemake) as log:
    with h5py.File(snakemake.input.predictions, "r") as f:
        width = float(f.attrs["bin_width_s"])
        stem = snakemake.output.png.removesuffix(".png")
        if "start_times_s" in f:  # a continuous recording: decoded over time
            n = min(int(f["lengths"][0]), int(round(SHOWN_S / width)))
            plot_decoded_over_time(f["true"][0, :n], f["decoded"][0, :n], width,
                                   list(f.attrs["columns"]), stem,
                                   start_s=float(f["start_times_s"][0]))
        else:
            plot_decoded_behavior(f["true"][()], f["decoded"][()], width,
                                  list(f.attrs["columns"]), stem,
                                  start_s=window_offsets_s(f.attrs)[0])
