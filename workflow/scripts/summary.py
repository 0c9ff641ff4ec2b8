import pandas as pd

from lfads_core.analysis.evaluation import method_scores
from lfads_core.analysis.score_figures import plot_dataset_summary
from lfads_core.workflow.scripting import rule_logging

DECODING_COLUMNS = ["dataset", "method", "target", "split", "r2", "r2_sem", "n_trials", "seen_by"]


def gather(paths, columns=None):
    """The tables (TSV, each with a dataset column) one below the other."""
    if not paths:
        return pd.DataFrame(columns=columns)
    return pd.concat([pd.read_csv(path, sep="\t") for path in paths], ignore_index=True)


with rule_logging(snakemake) as log:
    metrics = gather(snakemake.input.metrics)
    decoding = gather(snakemake.input.decoding, DECODING_COLUMNS)
    metrics.to_csv(snakemake.output.metrics, sep="\t", index=False)
    decoding.to_csv(snakemake.output.decoding, sep="\t", index=False)
    if "selection" in snakemake.output.keys():
        gather(snakemake.input.selections).to_csv(snakemake.output.selection, sep="\t",
                                                   index=False)
    scores = method_scores(metrics, decoding)
    plot_dataset_summary(scores, snakemake.output.png.removesuffix(".png"))
    log.info("summary of %d dataset(s):\n%s", metrics["dataset"].nunique(),
             scores.pivot_table(index=["dataset", "method"], columns="metric",
                                values="value").to_string())
