import h5py

from lfads_core.analysis.score_figures import plot_decoded_behavior
from lfads_core.nwb.alignment import window_offsets_s
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    with h5py.File(snakemake.input.predictions, "r") as f:
        plot_decoded_behavior(f["true"][()], f["decoded"][()], float(f.attrs["bin_width_s"]),
                              list(f.attrs["columns"]), snakemake.output.png.removesuffix(".png"),
                              start_s=window_offsets_s(f.attrs)[0])
