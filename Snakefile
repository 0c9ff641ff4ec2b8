# From NWB recordings to LFADS latent dynamics and behaviour decoding.
# Stages and the files between them: README.md ("The workflow"). Light rules are marked
# `localrule: True`: they run in the main Snakemake process, not as cluster jobs.

from pathlib import Path

from snakemake.utils import min_version

from lfads_core.workflow.startup import check_config, config_sources, exit_on_bad_input
from lfads_core.workflow.settings import read_schema

min_version("9.0")


# A project folder's own config/config.yaml (the working directory's); without one, the
# workflow's own (found beside this Snakefile), which --configfile and --config can amend.
PROJECT_CONFIG = Path("config/config.yaml")


configfile: PROJECT_CONFIG if PROJECT_CONFIG.is_file() else workflow.source_path("config/config.yaml")


CONFIG_SOURCES = config_sources(workflow)
exit_on_bad_input(
    CONFIG_SOURCES,
    check_config,
    config,
    read_schema(workflow.source_path("workflow/schemas/config.schema.yaml")),
    CONFIG_SOURCES,
)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/bin.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/lfads.smk"
include: "workflow/rules/pbt.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/summary.smk"


rule all:
    localrule: True
    input:
        all_outputs(),
    default_target: True
