from lfads_core.scripting import rule_logging
from lfads_core.simulate import simulate_to_nwb

with rule_logging(snakemake.log[0]) as log:
    session = simulate_to_nwb(dict(snakemake.params.simulation), snakemake.output.nwb)
    log.info("simulated %d units, %d trials -> %s", len(session.spike_times),
             len(session.trials), snakemake.output.nwb)
