import h5py

from lfads_core.analysis.score_figures import plot_latents_vs_truth
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    with h5py.File(snakemake.input.posterior, "r") as post, \
            h5py.File(snakemake.input.data, "r") as data:
        split = "test" if "test_encod_data" in data else "valid"  # the headline split
        plot_latents_vs_truth(post["train_factors"][()], data["train_truth_latents"][()],
                              post[f"{split}_factors"][()], data[f"{split}_truth_latents"][()],
                              float(data.attrs["bin_width_s"]),
                              snakemake.output.png.removesuffix(".png"), split=split)
