import shutil
from pathlib import Path

import pandas as pd
import yaml

from lfads_core.fileio import atomic_path
from lfads_core.workflow.pbt import best_member
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    tables = pd.concat([pd.read_csv(path, sep="\t") for path in snakemake.input.tables],
                       ignore_index=True)
    last = tables[tables["generation"] == tables["generation"].max()]
    best = best_member(last)
    tables["selected"] = (tables["generation"] == tables["generation"].max()) & \
        (tables["member"] == best)
    for name in ("model", "train_log"):
        shutil.copyfile(snakemake.input[f"{name}s"][best], snakemake.output[name])
    result = yaml.safe_load(Path(snakemake.input.results[best]).read_text())
    resolved = {"run": "selected", "method": "pbt", **result,
                "best_valid_loss_smooth": result["valid_loss_smooth"]}
    with atomic_path(snakemake.output.config) as tmp:
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
    with atomic_path(snakemake.output.table) as tmp:
        tables.to_csv(tmp, sep="\t", index=False)
    log.info("selected member %d of generation %d (founder %d): smoothed validation loss %.4f",
             best, result["generation"], result["founder"], result["valid_loss_smooth"])
