import pandas as pd

from lfads_core.analysis.evaluation import method_scores
from lfads_core.analysis.score_figures import plot_method_comparison
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    metrics = pd.read_csv(snakemake.input.metrics, sep="\t")
    decoding = None
    if "decoding" in snakemake.input.keys():
        decoding = pd.read_csv(snakemake.input.decoding, sep="\t")
    table = method_scores(metrics, decoding).drop(columns="dataset")
    plot_method_comparison(table, snakemake.output.png.removesuffix(".png"))
