import h5py

from lfads_core.analysis.score_figures import plot_latents_vs_truth
from lfads_core.analysis.stretches import stretch_view
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    with h5py.File(snakemake.input.posterior, "r") as post, \
            h5py.File(snakemake.input.data, "r") as data:
        split = "test" if "test_encod_data" in data else "valid"  # the headline split
        splits = ("train", split)
        arrays = {f"{s}_{k}": data[f"{s}_{k}"][()] for s in splits
                  for k in ("truth_latents", "encod_data")}
        factors = {f"{s}_factors": post[f"{s}_factors"][()] for s in splits}
        n_shown = 3
        if "segment_length_bins" in data.attrs:  # continuous: merged stretches, each bin once
            for s in splits:
                arrays.update({f"{s}_{k}": data[f"{s}_{k}"][()] for k in ("start_bins", "block")})
            arrays, factors = stretch_view({"attrs": dict(data.attrs), **arrays}, factors)
            n_shown = 1
        plot_latents_vs_truth(factors["train_factors"], arrays["train_truth_latents"],
                              factors[f"{split}_factors"], arrays[f"{split}_truth_latents"],
                              float(data.attrs["bin_width_s"]),
                              snakemake.output.png.removesuffix(".png"), n_trials=n_shown,
                              split=split)
