rule train_lfads:
    """Train LFADS on the aligned trials; resumes from its checkpoint after an interruption."""
    input:
        data="results/{dataset}/lfads_input.h5",
    output:
        model="results/{dataset}/lfads/{run}/model.pt",
        train_log="results/{dataset}/lfads/{run}/train_log.csv",
        config="results/{dataset}/lfads/{run}/config.yaml",
    params:
        lfads=lfads_settings,
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    log:
        "logs/{dataset}/train_lfads_{run}.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/train_lfads.py"


rule sample_posterior:
    """Average posterior samples into rates, factors and inferred inputs for every trial."""
    input:
        model="results/{dataset}/lfads/{run}/model.pt",
        data="results/{dataset}/lfads_input.h5",
    output:
        posterior="results/{dataset}/lfads/{run}/posterior.h5",
    params:
        lfads=lfads_settings,
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    log:
        "logs/{dataset}/sample_posterior_{run}.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/sample_posterior.py"
