from lfads_core.nwb.binning import bin_session
from lfads_core.fileio import write_json
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    binning = snakemake.params.bin_width_ms  # traces: {"bin_frames": n}, the width from the file
    if isinstance(binning, dict):
        summary = bin_session(snakemake.input.session, snakemake.output.binned, None,
                              bin_frames=int(binning["bin_frames"]))
    else:
        summary = bin_session(snakemake.input.session, snakemake.output.binned, binning / 1e3)
    write_json(summary, snakemake.output.summary)
