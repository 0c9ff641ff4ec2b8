import pandas as pd
import yaml

from lfads_core.analysis.evaluation import method_scores
from lfads_core.analysis.score_figures import plot_dataset_summary
from lfads_core.workflow.scripting import rule_logging

DECODING_COLUMNS = ["dataset", "method", "target", "split", "r2", "r2_sem", "n_trials", "seen_by"]


def gather(paths, columns=None):
    """The tables (TSV, each with a dataset column) one below the other."""
    if not paths:
        return pd.DataFrame(columns=columns)
    return pd.concat([pd.read_csv(path, sep="\t") for path in paths], ignore_index=True)


def dataset_rows(settings_files, datasets, sheet):
    """One row per dataset: in the sheet or not, and what made its results."""
    made = {}
    for path in settings_files:
        s = yaml.safe_load(open(path))
        made[s["dataset"]] = {"settings_sha256": s["settings_sha256"], "model": s["model"],
                              "nwb": s["data"]["nwb"], "workflow": s["workflow"]}
    return pd.DataFrame([{"dataset": d, "in_sheet": d in sheet, **made.get(d, {})} for d in datasets])


with rule_logging(snakemake) as log:
    metrics = gather(snakemake.input.metrics)
    datasets = list(dict.fromkeys(metrics["dataset"]))
    dataset_rows(snakemake.input.settings, datasets, set(snakemake.params.sheet)).to_csv(
        snakemake.output.datasets, sep="\t", index=False)
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
