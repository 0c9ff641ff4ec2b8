rule extract_factors:
    """LFADS factors, rates (Hz) and inferred inputs with the recording's trials, in its order,
    as HDF5 and as an NWB file of their own."""
    localrule: LOCAL_LIGHT_RULES
    input:
        posterior=posterior_file,
        metadata="results/{dataset}/lfads_input.json",
        session="results/{dataset}/ingest/session.h5",
        ingest_summary="results/{dataset}/ingest/summary.json",
        nwb=nwb_file,
    output:
        h5="results/{dataset}/factors.h5",
        nwb="results/{dataset}/factors.nwb",
        provenance="results/{dataset}/provenance/extract_factors.json",
    params:
        bin_width_ms=bin_width_ms,
    log:
        "logs/{dataset}/extract_factors.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/extract_factors.py"


rule decode_behavior:
    """Ridge decoding of behaviour from LFADS rates and factors and from spike baselines."""
    localrule: LOCAL_LIGHT_RULES
    input:
        posterior=posterior_file,
        data="results/{dataset}/lfads_input.h5",
    output:
        scores="results/{dataset}/decoding/scores.tsv",
        summary=report(
            "results/{dataset}/decoding/summary.tsv",
            caption="../report/decoding_summary.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        predictions="results/{dataset}/decoding/predictions.h5",
        provenance="results/{dataset}/provenance/decode_behavior.json",
    params:
        decoding=config["evaluation"]["decoding"],
        smoothing_sigma_ms=config["evaluation"]["smoothing_sigma_ms"],
        bootstrap={key: config["evaluation"][key] for key in ("n_bootstrap", "seed")},
        selections=score_selections,
    log:
        "logs/{dataset}/decode_behavior.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/decode_behavior.py"


rule evaluate:
    """NLB metrics of LFADS and of the spike-smoothing baseline (and ground truth R^2); for a
    stitched session also its single-session model's."""
    localrule: LOCAL_LIGHT_RULES
    input:
        unpack(single_session_posterior),
        posterior=posterior_file,
        data="results/{dataset}/lfads_input.h5",
        run_config=run_config_file,  # the likelihood traces are scored under
    output:
        metrics=report(
            "results/{dataset}/metrics.tsv",
            caption="../report/metrics.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        provenance="results/{dataset}/provenance/evaluate.json",
    params:
        evaluation=evaluation_settings(),
        selections=score_selections,
    log:
        "logs/{dataset}/evaluate.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/evaluate.py"


rule methods_text:
    """A methods section of the dataset, from its settings, scores and provenance records."""
    localrule: LOCAL_LIGHT_RULES
    input:
        unpack(methods_inputs),
    output:
        methods="results/{dataset}/methods.md",
        provenance="results/{dataset}/provenance/methods_text.json",
    params:
        settings=lambda wildcards: DATASETS[wildcards.dataset],
        evaluation=evaluation_settings(),
        selections=lambda wildcards: validation_selections(
            GROUP_OF.get(wildcards.dataset, wildcards.dataset)
        ),
        search=methods_search(),
        group=methods_group,
    log:
        "logs/{dataset}/methods_text.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/methods_text.py"
