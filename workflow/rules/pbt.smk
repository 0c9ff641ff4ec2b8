# Population-based training (config lfads.pbt; lfads_core/workflow/pbt.py): a plan per
# generation, one training job per member, a table per generation, the best member selected.
# The number of generations is fixed, so `snakemake -n` lists every job up front.


if PBT:

    rule pbt_plan:
        """PBT: the members' parents and settings for one generation (exploit and explore)."""
        localrule: LOCAL_LIGHT_RULES
        input:
            unpack(pbt_plan_inputs),
        output:
            plan="results/{model}/lfads/pbt/plan_{generation}.yaml",
            provenance="results/{model}/provenance/pbt_plan_{generation}.json",
        params:
            lfads=lambda wildcards: lfads_training_settings(wildcards, run=DEFAULT_RUN),
            pbt=config["lfads"]["pbt"],
        log:
            "logs/{model}/pbt/plan_{generation}.log",
        benchmark:
            "logs/{model}/benchmark/pbt_plan_{generation}.tsv"
        conda:
            "../envs/lfads_core.yaml"
        script:
            "../scripts/pbt_plan.py"

    rule train_pbt_member:
        """PBT: one member trains one generation's epochs from its parent's state."""
        input:
            unpack(pbt_member_inputs),
        output:
            state="results/{model}/lfads/pbt/gen_{generation}/member_{member}/state.pt",
            model="results/{model}/lfads/pbt/gen_{generation}/member_{member}/model.pt",
            train_log="results/{model}/lfads/pbt/gen_{generation}/member_{member}/train_log.csv",
            result="results/{model}/lfads/pbt/gen_{generation}/member_{member}/result.yaml",
            provenance="results/{model}/provenance/train_pbt_member_{generation}_{member}.json",
        params:
            lfads=lambda wildcards: lfads_training_settings(wildcards, run=DEFAULT_RUN),
            pbt=config["lfads"]["pbt"],
        threads: 2
        resources:
            gpu=1,
            mem_mb=2500,  # as train_lfads
            runtime=60,
        log:
            "logs/{model}/pbt/train_{generation}_{member}.log",
        benchmark:
            "logs/{model}/benchmark/train_pbt_member_{generation}_{member}.tsv"
        conda:
            "../envs/lfads_core.yaml"
        script:
            "../scripts/train_pbt_member.py"

    rule pbt_generation_table:
        """PBT: one generation's members, parents, settings and validation losses."""
        localrule: LOCAL_LIGHT_RULES
        input:
            unpack(pbt_generation_results),
        output:
            table="results/{model}/lfads/pbt/generation_{generation}.tsv",
            provenance="results/{model}/provenance/pbt_generation_table_{generation}.json",
        log:
            "logs/{model}/pbt/generation_table_{generation}.log",
        benchmark:
            "logs/{model}/benchmark/pbt_generation_table_{generation}.tsv"
        conda:
            "../envs/lfads_core.yaml"
        script:
            "../scripts/pbt_generation_table.py"

    rule select_pbt_member:
        """PBT: the last generation's member with the lowest smoothed validation loss."""
        localrule: LOCAL_LIGHT_RULES
        input:
            unpack(pbt_selection_inputs),
        output:
            model="results/{model}/lfads/selected/model.pt",
            train_log="results/{model}/lfads/selected/train_log.csv",
            config="results/{model}/lfads/selected/config.yaml",
            table=report(
                "results/{model}/lfads/pbt/generations.tsv",
                caption="../report/pbt_generations.rst",
                category="Tables",
                subcategory="{model}",
            ),
            provenance="results/{model}/provenance/select_pbt_member.json",
        log:
            "logs/{model}/select_pbt_member.log",
        conda:
            "../envs/lfads_core.yaml"
        script:
            "../scripts/select_pbt_member.py"

    rule plot_pbt:
        """PBT: each searched setting and the validation loss over generations, by lineage."""
        localrule: LOCAL_LIGHT_RULES
        input:
            table="results/{model}/lfads/pbt/generations.tsv",
        output:
            png=report(
                "results/{model}/figures/pbt_progress.png",
                caption="../report/pbt_progress.rst",
                category="Training",
                subcategory="{model}",
            ),
            pdf="results/{model}/figures/pbt_progress.pdf",
            provenance="results/{model}/provenance/plot_pbt.json",
        params:
            log_scale=[name for name, r in PBT.parameters.items() if r.scale == "log"],
        log:
            "logs/{model}/plot_pbt.log",
        conda:
            "../envs/lfads_core.yaml"
        script:
            "../scripts/plot_pbt.py"
