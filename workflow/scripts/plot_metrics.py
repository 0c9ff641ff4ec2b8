import pandas as pd

from lfads_core.plotting import plot_method_comparison
from lfads_core.scripting import rule_logging

with rule_logging(snakemake.log[0]) as log:
    table = pd.read_csv(snakemake.input.metrics, sep="\t")[["method", "metric", "value", "err"]]
    if "decoding" in snakemake.input.keys():
        decoding = pd.read_csv(snakemake.input.decoding, sep="\t")
        decoding = decoding[decoding["target"] == "all"]
        table = pd.concat([table, pd.DataFrame({
            "method": decoding["method"], "metric": "decoding R2",
            "value": decoding["r2_mean"], "err": decoding["r2_sem"]})], ignore_index=True)
    plot_method_comparison(table, snakemake.output.png.removesuffix(".png"))
