import pandas as pd

from lfads_core.analysis.plotting import plot_pbt_progress
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    table = pd.read_csv(snakemake.input.table, sep="\t")
    plot_pbt_progress(table, snakemake.output.png.removesuffix(".png"),
                      log_scale=tuple(snakemake.params.log_scale))
    log.info("PBT progress of %d generations", table["generation"].nunique())
