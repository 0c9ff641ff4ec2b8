from lfads_core.fileio import write_json
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    settings = IngestSettings.from_settings(snakemake.params.settings)
    summary = ingest_nwb(snakemake.input.nwb, snakemake.output.session, settings,
                         progress_every=50)
    summary["settings"] = dict(snakemake.params.settings)
    write_json(summary, snakemake.output.summary)
