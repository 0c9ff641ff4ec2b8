import json
from pathlib import Path

from lfads_core.nwb.export import collect_factors, write_factors_h5, write_factors_nwb
from lfads_core.nwb.export_continuous import (write_continuous_factors_h5,
                                              write_continuous_factors_nwb)
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log:
    meta = json.loads(Path(snakemake.input.metadata).read_text())
    if "segments" in meta:  # a continuous recording: segments merged onto its clock
        write_continuous_factors_h5(snakemake.input.posterior, snakemake.input.metadata,
                                    snakemake.output.h5)
        write_continuous_factors_nwb(snakemake.output.h5, snakemake.input.nwb,
                                     snakemake.output.nwb)
        log.info("wrote %s and %s: segments merged onto the recording's %d bins of %g ms "
                 "(blocks %s)", snakemake.output.h5, snakemake.output.nwb,
                 meta["n_grid_bins"], meta["bin_width_s"] * 1e3,
                 {b["block"]: b["split"] for b in meta["segments"]["blocks"]})
    else:
        binning = snakemake.params.bin_width_ms  # traces: {"bin_frames": n}, width from the file
        output = collect_factors(snakemake.input.posterior, snakemake.input.metadata,
                                 snakemake.input.session, snakemake.input.ingest_summary,
                                 bin_width_s=None if isinstance(binning, dict) else binning / 1e3)
        write_factors_h5(output, snakemake.output.h5)
        write_factors_nwb(output, snakemake.input.nwb, snakemake.output.nwb)
        log.info("wrote %s and %s: %d trials in the recording's order (%s), trial columns %s%s",
                 snakemake.output.h5, snakemake.output.nwb, len(output.trials),
                 output.trials["lfads_split"].value_counts().to_dict(),
                 [c for c in output.all_trials.columns if c != "lfads_split"],
                 f"; not carried: {output.skipped_trial_columns}"
                 if output.skipped_trial_columns else "")
