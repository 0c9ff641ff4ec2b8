import torch

from lfads_core.lfads.devices import claim_device
from lfads_core.lfads.posterior import run_posterior
from lfads_core.workflow.scripting import rule_logging

with rule_logging(snakemake) as log, claim_device(snakemake.config["lfads"]["device"]) as device:
    torch.set_num_threads(snakemake.threads)
    log.info("sampling on %s with %d CPU threads", device, snakemake.threads)
    run_posterior(snakemake.input.model, snakemake.input.data, snakemake.output.posterior,
                  batch_size=snakemake.params.batch_size, device=str(device))
