from lfads_core.nwb.binning import bin_session
from lfads_core.fileio import write_json
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    bin_width_s = snakemake.params.bin_width_ms / 1e3
    summary = bin_session(snakemake.input.session, snakemake.output.binned, bin_width_s)
    write_json(summary, snakemake.output.summary)
