rule ingest:
    """Read the dataset's NWB file into the normalised session file."""
    localrule: LOCAL_LIGHT_RULES
    input:
        nwb=nwb_file,
    output:
        session="results/{dataset}/ingest/session.h5",
        summary="results/{dataset}/ingest/summary.json",
        provenance="results/{dataset}/provenance/ingest.json",
    params:
        settings=sheet_settings(IngestSettings),
    log:
        "logs/{dataset}/ingest.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/ingest.py"
