# From NWB recordings to LFADS latent dynamics and behaviour decoding.
# Stages and the files between them: README.md ("The workflow"). Light rules are marked
# `localrule: True`: they run in the main Snakemake process, not as cluster jobs.

from snakemake.utils import min_version, validate

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
