import yaml

from lfads_core.provenance import workflow_version
from lfads_core.workflow.results import dataset_settings
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    p = snakemake.params
    settings = dataset_settings(snakemake.wildcards.dataset, p.data, snakemake.input.run_config,
                                p.model, p.evaluation, workflow_version(snakemake.scriptdir))
    with open(snakemake.output.settings, "w") as f:
        yaml.safe_dump(settings, f, sort_keys=False)
    log.info("settings sha256 %s", settings["settings_sha256"])
