from lfads_core.analysis.evaluation import evaluate, load_arrays
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    settings = snakemake.params.evaluation
    table = evaluate(load_arrays(snakemake.input.data), load_arrays(snakemake.input.posterior),
                     settings["smoothing_sigma_ms"], settings["psth_sigma_ms"],
                     settings["decoding"])
    table.insert(0, "dataset", snakemake.wildcards.dataset)
    table.to_csv(snakemake.output.metrics, sep="\t", index=False)
    log.info("metrics:\n%s", table.to_string(index=False))
