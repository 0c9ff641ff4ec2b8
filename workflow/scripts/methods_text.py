from lfads_core.workflow.methods import load_run_record, write_methods
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    files = {name: snakemake.input[name] for name in snakemake.input.keys()}
    record = load_run_record(snakemake.wildcards.dataset, snakemake.params.settings, files,
                             snakemake.params.evaluation, snakemake.params.selections,
                             snakemake.params.search, snakemake.params.group)
    write_methods(record, snakemake.output.methods)
    log.info("wrote %s", snakemake.output.methods)
