import torch

from lfads_core.lfads.devices import claim_device
from lfads_core.lfads.posterior import run_posterior
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log, claim_device(snakemake.config["lfads"]["device"]) as device:
    torch.set_num_threads(snakemake.threads)
    session = getattr(snakemake.params, "session", 0)  # a stitched model's session
    log.info("sampling on %s with %d CPU threads (session %d of the model)", device,
             snakemake.threads, session)
    run_posterior(snakemake.input.model, snakemake.input.data, snakemake.output.posterior,
                  batch_size=snakemake.params.batch_size, device=str(device), session=session,
                  execution=snakemake.config["lfads"].get("execution"))
