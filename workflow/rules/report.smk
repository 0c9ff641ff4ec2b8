rule dataset_settings:
    """The resolved settings a dataset's results were made with, and their checksum."""
    localrule: LOCAL_LIGHT_RULES
    input:
        run_config=run_config_file,
        metrics="results/{dataset}/metrics.tsv",  # written with the results, after them
    output:
        settings=report(
            "results/{dataset}/settings.yaml",
            caption="../report/config.rst",
            category="Configuration",
            subcategory="{dataset}",
        ),
        provenance="results/{dataset}/provenance/dataset_settings.json",
    params:
        data=lambda wildcards: DATASETS[wildcards.dataset],
        model=lambda wildcards: GROUP_OF.get(wildcards.dataset, wildcards.dataset),
        evaluation=evaluation_settings(),
    log:
        "logs/{dataset}/dataset_settings.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/dataset_settings.py"
