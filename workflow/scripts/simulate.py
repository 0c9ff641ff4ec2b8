from lfads_core.errors import InputDataError
from lfads_core.workflow.scripting import rule_logging
from lfads_core.nwb.simulate import simulate_to_nwb

with rule_logging(snakemake) as log:
    try:
        session = simulate_to_nwb(dict(snakemake.params.simulation), snakemake.output.nwb,
                                  snakemake.params.session)
    except ValueError as exc:
        name = snakemake.wildcards.name.rpartition("_session")[0] or snakemake.wildcards.name
        raise InputDataError("config", f"simulations.{name}", str(exc))
    log.info("simulated %d units, %d trials -> %s", len(session.spike_times),
             len(session.trials), snakemake.output.nwb)
