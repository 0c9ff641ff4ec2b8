rule bin_spikes:
    """Count spikes in regular time bins; resample behaviour onto the same grid."""
    localrule: LOCAL_LIGHT_RULES
    input:
        session="results/{dataset}/ingest/session.h5",
    output:
        binned="results/{dataset}/binned.h5",
        summary="results/{dataset}/bin/summary.json",
        provenance="results/{dataset}/provenance/bin_spikes.json",
    params:
        bin_width_ms=bin_width_ms,
    log:
        "logs/{dataset}/bin_spikes.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/bin_spikes.py"
