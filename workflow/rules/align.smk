rule align_trials:
    """Cut trials around the alignment event into the lfads-torch input layout."""
    input:
        binned="results/{dataset}/binned.h5",
    output:
        lfads_input="results/{dataset}/lfads_input.h5",
        metadata="results/{dataset}/lfads_input.json",
        summary="results/{dataset}/align/summary.json",
    params:
        settings=dataset_settings,
    log:
        "logs/{dataset}/align_trials.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/align_trials.py"
