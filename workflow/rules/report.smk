rule workflow_config:
    """The configuration and dataset settings this run used, for the report."""
    localrule: LOCAL_LIGHT_RULES
    output:
        config=report(
            "results/config.yaml",
            caption="../report/config.rst",
            category="Configuration",
        ),
        provenance="results/provenance/workflow_config.json",
    params:
        config=config,
        datasets=DATASETS,
    log:
        "logs/workflow_config.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/workflow_config.py"
