import h5py
import numpy as np

from lfads_core.analysis.evaluation import decode_dataset, load_arrays
from lfads_core.analysis.stretches import stretch_times
from lfads_core.nwb.alignment import window_offsets_s
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    data = load_arrays(snakemake.input.data)
    scores, summary, predictions, behavior, columns, split, view = decode_dataset(
        data, load_arrays(snakemake.input.posterior), snakemake.params.smoothing_sigma_ms,
        snakemake.params.decoding, tuple(snakemake.params.selections["lfads"]),
        snakemake.params.bootstrap["n_bootstrap"], snakemake.params.bootstrap["seed"])
    for table, path in ((scores, snakemake.output.scores), (summary, snakemake.output.summary)):
        table.insert(0, "dataset", snakemake.wildcards.dataset)
        table.to_csv(path, sep="\t", index=False)
    stretches = bool(view["attrs"].get("stretches", False))
    with h5py.File(snakemake.output.predictions, "w") as f:
        f["true"] = behavior
        f["decoded"] = predictions["lfads_rates"]
        f["inds"] = view[f"{split}_inds"]
        f.attrs.update(columns=columns, bin_width_s=data["attrs"]["bin_width_s"],
                       window_start_offset_s=window_offsets_s(data["attrs"])[0],
                       method="lfads_rates",
                       split=split, seen_by=summary["seen_by"].iloc[0])
        if stretches:  # a continuous recording: merged stretches of the scored blocks
            f["start_times_s"] = stretch_times(view, split)
            f["lengths"] = view[f"{split}_lengths"]
            f["block"] = view[f"{split}_block"]
            f.attrs["layout"] = ("continuous: rows are stretches of consecutive bins of the "
                                 "scored blocks (start_times_s on the recording's clock, "
                                 "lengths in bins, NaN after a stretch's end)")
    log.info("decoding R^2 (%s %s):\n%s", split, "stretches" if stretches else "trials",
             summary.to_string(index=False))
