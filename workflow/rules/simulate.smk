rule simulate:
    """Write a simulated NWB recording with known latent dynamics (the default dataset)."""
    localrule: LOCAL_LIGHT_RULES
    output:
        nwb=f"{SIMULATED_DIR}/{{name}}.nwb",
    params:
        simulation=lambda wildcards: config["simulations"][simulated_session(wildcards.name)[0]],
        session=lambda wildcards: simulated_session(wildcards.name)[1],
    log:
        "logs/simulate/{name}.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/simulate.py"
