# Figures are made from results only: `snakemake figures --forceall --allowed-rules
# plot_training plot_metrics plot_decoding plot_latents` redraws them without retraining.


rule plot_training:
    """Training curves, one trial's raster with inferred rates, factor trajectories."""
    localrule: LOCAL_LIGHT_RULES
    input:
        train_log=train_log_file,
        posterior=posterior_file,
        data="results/{dataset}/lfads_input.h5",
        metadata="results/{dataset}/lfads_input.json",
    output:
        curves=report(
            "results/{dataset}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="{dataset}",
        ),
        raster=report(
            "results/{dataset}/figures/raster_rates.png",
            caption="../report/raster_rates.rst",
            category="Latent dynamics",
            subcategory="{dataset}",
        ),
        factors=report(
            "results/{dataset}/figures/factor_trajectories.png",
            caption="../report/factor_trajectories.rst",
            category="Latent dynamics",
            subcategory="{dataset}",
        ),
        curves_pdf="results/{dataset}/figures/training_curves.pdf",
        raster_pdf="results/{dataset}/figures/raster_rates.pdf",
        factors_pdf="results/{dataset}/figures/factor_trajectories.pdf",
        provenance="results/{dataset}/provenance/plot_training.json",
    log:
        "logs/{dataset}/plot_training.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/plot_training.py"


rule plot_metrics:
    """Bar chart of every method's NLB metrics and decoding R^2."""
    localrule: LOCAL_LIGHT_RULES
    input:
        unpack(metric_tables),
    output:
        png=report(
            "results/{dataset}/figures/method_comparison.png",
            caption="../report/method_comparison.rst",
            category="Evaluation",
            subcategory="{dataset}",
        ),
        pdf="results/{dataset}/figures/method_comparison.pdf",
        provenance="results/{dataset}/provenance/plot_metrics.json",
    log:
        "logs/{dataset}/plot_metrics.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/plot_metrics.py"


rule plot_decoding:
    """Decoded vs true behaviour for a few validation trials."""
    localrule: LOCAL_LIGHT_RULES
    input:
        predictions="results/{dataset}/decoding/predictions.h5",
    output:
        png=report(
            "results/{dataset}/figures/decoded_behavior.png",
            caption="../report/decoded_behavior.rst",
            category="Evaluation",
            subcategory="{dataset}",
        ),
        pdf="results/{dataset}/figures/decoded_behavior.pdf",
        provenance="results/{dataset}/provenance/plot_decoding.json",
    log:
        "logs/{dataset}/plot_decoding.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/plot_decoding.py"


rule plot_latents:
    """Simulated data: LFADS factors mapped onto the true latents."""
    localrule: LOCAL_LIGHT_RULES
    input:
        posterior=posterior_file,
        data="results/{dataset}/lfads_input.h5",
    output:
        png=report(
            "results/{dataset}/figures/latents_vs_truth.png",
            caption="../report/latents_vs_truth.rst",
            category="Evaluation",
            subcategory="{dataset}",
        ),
        pdf="results/{dataset}/figures/latents_vs_truth.pdf",
        provenance="results/{dataset}/provenance/plot_latents.json",
    log:
        "logs/{dataset}/plot_latents.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/plot_latents.py"


if GROUPS:

    rule plot_stitched_factors:
        """Stitching: every session of a group in the shared latent space of its model."""
        localrule: LOCAL_LIGHT_RULES
        input:
            unpack(group_session_files),
        output:
            png=report(
                "results/{group}/figures/stitched_factors.png",
                caption="../report/stitched_factors.rst",
                category="Latent dynamics",
                subcategory="{group}",
            ),
            pdf="results/{group}/figures/stitched_factors.pdf",
            provenance="results/{group}/provenance/plot_stitched_factors.json",
        params:
            sessions=lambda wildcards: GROUPS[wildcards.group],
        wildcard_constraints:
            group="|".join(GROUPS),
        log:
            "logs/{group}/plot_stitched_factors.log",
        conda:
            "../envs/lfads_core.yaml"
        script:
            "../scripts/plot_stitched_factors.py"


rule figures:
    """Every figure of every dataset (target: `snakemake figures`)."""
    localrule: LOCAL_LIGHT_RULES
    input:
        figure_files(),
