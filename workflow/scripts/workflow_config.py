import yaml

from lfads_core import __version__
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    resolved = {"lfads_core_version": __version__, "config": dict(snakemake.params.config),
                "datasets": dict(snakemake.params.datasets)}
    with open(snakemake.output[0], "w") as f:
        yaml.safe_dump(resolved, f, sort_keys=False)
