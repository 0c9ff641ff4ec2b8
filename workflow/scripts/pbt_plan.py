import pandas as pd
import yaml

from lfads_core.fileio import atomic_path
from lfads_core.workflow.pbt import (configured_values, initial_plan, next_plan, pbt_settings,
                                     results_from_table)
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    settings = pbt_settings(snakemake.params.pbt)
    generation = int(snakemake.wildcards.generation)
    if generation == 0:
        configured = configured_values(snakemake.params.lfads, settings) \
            if settings.configured_member else None
        members = initial_plan(settings, configured)
    else:
        table = pd.read_csv(snakemake.input.table, sep="\t")
        members = next_plan(settings, generation, results_from_table(table, settings))
    with atomic_path(snakemake.output.plan) as tmp:
        tmp.write_text(yaml.safe_dump({"generation": generation, "members": members},
                                      sort_keys=False))
    for entry in members:
        log.info("member %d: %s", entry["member"], entry["why"])
