# From NWB recordings to LFADS latent dynamics and behaviour decoding.
# Stages and the files between them: README.md ("The workflow"). Light rules are marked
# `localrule: LOCAL_LIGHT_RULES`: they run in the main Snakemake process, not as cluster jobs,
# unless config `submit_light_rules` submits them (workflow/rules/common.smk).

from pathlib import Path

from snakemake.utils import min_version

from lfads_core.workflow.startup import check_config, config_sources, exit_on_bad_input
from lfads_core.workflow.settings import fill_defaults, read_schema

from lfads_core.workflow.cluster import gpu_partitions_or_exit

min_version("9.0")


# A project folder's own config/config.yaml (the working directory's); without one, the
# workflow's own (found beside this Snakefile), which --configfile and --config can amend.
# The workflow's own holds every key's default: a project's need hold only what differs.
PROJECT_CONFIG = Path("config/config.yaml")
WORKFLOW_CONFIG = workflow.source_path("config/config.yaml")


configfile: PROJECT_CONFIG if PROJECT_CONFIG.is_file() else WORKFLOW_CONFIG


CONFIG_SOURCES = config_sources(workflow, WORKFLOW_CONFIG)
fill_defaults(config, CONFIG_SOURCES[0][1])
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


# On a cluster profile, a rule that asks for a GPU with no partition of its own would be
# submitted to the CPU partition: stop before any job (lfads_core/workflow/cluster.py).
gpu_partitions_or_exit(
    [r.name for r in workflow.rules if "gpu" in r.resources and r.resources["gpu"].raw],
    {k: v.raw for k, v in (workflow.resource_settings.default_resources or {}).items()},
    workflow.resource_settings.overwrite_resources,
)
