import h5py
import numpy as np

from lfads_core.analysis.plotting import plot_stitched_factors
from lfads_core.nwb.alignment import window_offsets_s
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    sessions, starts, events, widths = {}, {}, set(), set()
    for name, posterior, data in zip(snakemake.params.sessions, snakemake.input.posteriors,
                                     snakemake.input.data):
        with h5py.File(posterior, "r") as post, h5py.File(data, "r") as d:
            splits = [s for s in ("train", "valid", "test") if f"{s}_factors" in post]
            sessions[name] = (np.concatenate([post[f"{s}_factors"][()] for s in splits]),
                              np.concatenate([d[f"{s}_cond_idx"][()] for s in splits]))
            starts[name] = window_offsets_s(d.attrs)[0]  # relative to the event
            events.add(str(d.attrs["align_event"]))
            widths.add(float(d.attrs["bin_width_s"]))
    plot_stitched_factors(sessions, snakemake.output.png.removesuffix(".png"), widths.pop(),
                          starts, event=" / ".join(sorted(events)),
                          group=snakemake.wildcards.group)
    log.info("sessions of %s in its shared latent space: %s", snakemake.wildcards.group,
             list(sessions))
