from lfads_core.nwb.alignment import AlignSettings
from lfads_core.nwb.segments import align_windows
from lfads_core.fileio import write_json
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    settings = AlignSettings.from_settings(snakemake.params.settings)
    summary = align_windows(snakemake.input.binned, snakemake.output.lfads_input, settings,
                           metadata_json=snakemake.output.metadata)
    summary["settings"] = dict(snakemake.params.settings)
    write_json(summary, snakemake.output.summary)
