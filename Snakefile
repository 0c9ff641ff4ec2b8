# From NWB recordings to LFADS latent dynamics and behaviour decoding.
# Stages and the files between them: README.md ("The workflow"). Light rules are marked
# `localrule: LOCAL_LIGHT_RULES`: they run in the main Snakemake process, not as cluster jobs,
# unless config `submit_light_rules` submits them (workflow/rules/common.smk).

from snakemake.utils import min_version, validate

from lfads_core.workflow.cluster import gpu_partitions_or_exit

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


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
