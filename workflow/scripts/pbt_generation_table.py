from pathlib import Path

import yaml

from lfads_core.fileio import atomic_path
from lfads_core.workflow.pbt import generation_table
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    plan = yaml.safe_load(Path(snakemake.input.plan).read_text())
    results = [yaml.safe_load(Path(path).read_text()) for path in snakemake.input.results]
    table = generation_table(plan["generation"], plan["members"],
                             [result["valid_loss_smooth"] for result in results])
    table.insert(0, "dataset", snakemake.wildcards.model)  # a group: its name
    table["epochs_run"] = [result["epochs_run"] for result in results]
    table["seconds"] = [result["seconds"] for result in results]
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    log.info("generation %d:\n%s", plan["generation"], table.drop(columns="why").to_string(index=False))
