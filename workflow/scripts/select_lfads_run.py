import shutil

from lfads_core.workflow.scripting import rule_logging
from lfads_core.workflow.sweep import selection_table

with rule_logging(snakemake) as log:
    runs = list(snakemake.params.points)
    table = selection_table(dict(zip(runs, snakemake.input.configs)), snakemake.params.points)
    table.insert(0, "dataset", snakemake.wildcards.model)  # a group: its name
    best = runs.index(table.loc[table["selected"], "run"].item())
    for name in ("model", "train_log", "config"):
        shutil.copyfile(snakemake.input[f"{name}s"][best], snakemake.output[name])
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    log.info("runs:\n%s\nselected: %s", table.to_string(index=False), runs[best])
