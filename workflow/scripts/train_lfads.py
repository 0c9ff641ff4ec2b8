from pathlib import Path

import torch
import yaml

from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.lfads.devices import claim_device
from lfads_core.workflow.scripting import rule_logging
from lfads_core.lfads.training import train

# The device and how the loops run are read from the config, not from params: changing them
# retrains nothing.
with rule_logging(snakemake) as log, claim_device(snakemake.config["lfads"]["device"]) as device:
    torch.set_num_threads(snakemake.threads)
    settings = snakemake.params.lfads
    model_cfg = ModelConfig.from_dict(settings["model"])
    train_cfg = TrainConfig.from_dict(settings["training"])
    log.info("training on %s with %d CPU threads", device, snakemake.threads)
    data = list(snakemake.input.data)  # one session, or a group's sessions (stitched)
    data = data if len(data) > 1 else data[0]
    result = train(data, Path(snakemake.output.model).parent,
                   model_cfg, train_cfg, device=device, resume="if_compatible",
                   execution=snakemake.config["lfads"].get("execution"))
    log.info("done: %s; best epoch %d of %d", result.stop_reason, result.best_epoch,
             result.epochs_run)
    with open(snakemake.output.config, "w") as f:
        yaml.safe_dump({"model": model_cfg.to_dict(), "training": train_cfg.to_dict(),
                        "device": str(device), "input": data,
                        "run": snakemake.wildcards.run, "stop_reason": result.stop_reason,
                        "best_epoch": result.best_epoch,
                        "best_valid_loss_smooth": float(result.best_valid_loss_smooth),
                        "epochs_run": result.epochs_run}, f, sort_keys=False)
