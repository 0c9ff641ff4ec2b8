from lfads_core.nwb.export import write_factors_h5, write_factors_nwb
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    bin_width_s = snakemake.params.bin_width_ms / 1e3
    write_factors_h5(snakemake.input.posterior, snakemake.input.metadata, snakemake.output.h5)
    write_factors_nwb(snakemake.input.nwb, snakemake.input.metadata, snakemake.input.posterior,
                      snakemake.output.nwb, bin_width_s)
    log.info("wrote %s and %s", snakemake.output.h5, snakemake.output.nwb)
