rule bin_spikes:
    """Count spikes in regular time bins; resample behaviour onto the same grid."""
    input:
        session="results/{dataset}/ingest/session.h5",
    output:
        binned="results/{dataset}/binned.h5",
        summary="results/{dataset}/bin/summary.json",
    params:
        settings=dataset_settings,
    log:
        "logs/{dataset}/bin_spikes.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/bin_spikes.py"
