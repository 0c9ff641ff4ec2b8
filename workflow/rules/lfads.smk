rule train_lfads:
    """Train LFADS on the aligned trials (of one dataset, or of a group's datasets: one stitched
    model); resumes from its checkpoint after an interruption."""
    input:
        data=lfads_inputs,
    output:
        model="results/{model}/lfads/{run}/model.pt",
        train_log="results/{model}/lfads/{run}/train_log.csv",
        config="results/{model}/lfads/{run}/config.yaml",
        provenance="results/{model}/provenance/train_lfads_{run}.json",
    params:
        lfads=lfads_training_settings,
    threads: 2
    resources:
        gpu=1,
        mem_mb=2500,  # 2.3x the 1.07 GB peak recorded on the default dataset (benchmark file)
        runtime=240,
    wildcard_constraints:
        run="|".join([*SWEEP, DEFAULT_RUN]),  # `selected` is a copy of one of them
    log:
        "logs/{model}/train_lfads_{run}.log",
    benchmark:
        "logs/{model}/benchmark/train_lfads_{run}.tsv"
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
        provenance="results/{dataset}/provenance/sample_posterior_{run}.json",
    params:
        batch_size=config["lfads"]["posterior_batch_size"],  # the order of the random draws
    threads: 2
    resources:
        gpu=1,
        mem_mb=1500,  # 2.4x the 0.62 GB peak recorded on the default dataset (benchmark file)
        runtime=60,
    log:
        "logs/{dataset}/sample_posterior_{run}.log",
    benchmark:
        "logs/{dataset}/benchmark/sample_posterior_{run}.tsv"
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/sample_posterior.py"


rule sample_stitched_posterior:
    """Stitching: a grouped dataset's posterior from its group's model (its own session)."""
    input:
        model=group_model,
        data="results/{dataset}/lfads_input.h5",
    output:
        posterior="results/{dataset}/lfads/stitched/{run}/posterior.h5",
        provenance="results/{dataset}/provenance/sample_stitched_posterior_{run}.json",
    params:
        batch_size=config["lfads"]["posterior_batch_size"],
        session=session_index,
    threads: 2
    resources:
        gpu=1,
        mem_mb=1500,  # as sample_posterior
        runtime=60,
    log:
        "logs/{dataset}/sample_stitched_posterior_{run}.log",
    benchmark:
        "logs/{dataset}/benchmark/sample_stitched_posterior_{run}.tsv"
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/sample_posterior.py"


if SWEEPING:

    rule select_lfads_run:
        """Sweep: keep the run with the lowest smoothed validation loss for downstream stages."""
        localrule: LOCAL_LIGHT_RULES
        input:
            unpack(sweep_run_files),
        output:
            model="results/{model}/lfads/selected/model.pt",
            train_log="results/{model}/lfads/selected/train_log.csv",
            config="results/{model}/lfads/selected/config.yaml",
            table=report(
                "results/{model}/lfads/selection.tsv",
                caption="../report/selection.rst",
                category="Tables",
                subcategory="{model}",
            ),
            provenance="results/{model}/provenance/select_lfads_run.json",
        params:
            points=SWEEP,
        log:
            "logs/{model}/select_lfads_run.log",
        conda:
            "../envs/lfads_core.yaml"
        script:
            "../scripts/select_lfads_run.py"
