import pandas as pd

import yaml

from lfads_core.analysis.evaluation import evaluate, evaluate_traces, is_traces, load_arrays
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    settings = snakemake.params.evaluation
    data = load_arrays(snakemake.input.data)

    def scores(posterior, model):
        if is_traces(data):  # calcium traces: scored under the model's likelihood family
            likelihood = yaml.safe_load(open(snakemake.input.run_config))["model"]["likelihood"]
            return evaluate_traces(data, load_arrays(posterior), likelihood,
                                   settings["smoothing_sigma_ms"], settings["psth_sigma_ms"],
                                   settings["decoding"], tuple(snakemake.params.selections[model]),
                                   settings["n_bootstrap"], settings["seed"])
        return evaluate(data, load_arrays(posterior), settings["smoothing_sigma_ms"],
                        settings["psth_sigma_ms"], settings["decoding"],
                        tuple(snakemake.params.selections[model]), settings["n_bootstrap"],
                        settings["seed"])

    table = scores(snakemake.input.posterior, "lfads")
    if "single" in snakemake.input.keys():  # a stitched session beside its own model
        table["method"] = table["method"].replace({"lfads": "lfads stitched"})
        single = scores(snakemake.input.single, "single")
        single = single[single["method"] == "lfads"].assign(method="lfads single-session")
        table = pd.concat([table, single], ignore_index=True)
    table.insert(0, "dataset", snakemake.wildcards.dataset)
    table.to_csv(snakemake.output.metrics, sep="\t", index=False)
    log.info("metrics:\n%s", table.to_string(index=False))
