rule align_trials:
    """Cut trials around the alignment event into the lfads-torch input layout."""
    localrule: LOCAL_LIGHT_RULES
    input:
        binned="results/{dataset}/binned.h5",
    output:
        lfads_input="results/{dataset}/lfads_input.h5",
        metadata="results/{dataset}/lfads_input.json",
        summary="results/{dataset}/align/summary.json",
        provenance="results/{dataset}/provenance/align_trials.json",
    params:
        settings=sheet_settings(AlignSettings),
    log:
        "logs/{dataset}/align_trials.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/align_trials.py"
