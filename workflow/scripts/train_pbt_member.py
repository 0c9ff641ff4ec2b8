import math
import os
import time
from pathlib import Path

import torch
import yaml

from lfads_core.fileio import atomic_path
from lfads_core.lfads.checkpoint import load_checkpoint, save_model, write_train_log
from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.lfads.devices import claim_device
from lfads_core.lfads.training import NonFiniteLossError, train
from lfads_core.workflow.pbt import member_training_settings, pbt_settings
from lfads_core.workflow.scripting import rule_logging

# The device and how the loops run are read from the config, not from params: changing them
# retrains nothing.
with rule_logging(snakemake) as log, claim_device(snakemake.config["lfads"]["device"]) as device:
    torch.set_num_threads(snakemake.threads)
    started = time.perf_counter()
    pbt = pbt_settings(snakemake.params.pbt)
    generation, member = int(snakemake.wildcards.generation), int(snakemake.wildcards.member)
    entry = yaml.safe_load(Path(snakemake.input.plan).read_text())["members"][member]
    settings = member_training_settings(snakemake.params.lfads, entry, pbt, generation)
    model_cfg = ModelConfig.from_dict(settings["model"])
    train_cfg = TrainConfig.from_dict(settings["training"])
    parent = None if entry["parent"] is None else snakemake.input.parents[entry["parent"]]
    out_dir = Path(snakemake.output.state).parent
    log.info("generation %d, member %d on %s: %s; settings %s", generation, member, device,
             entry["why"], entry["settings"])
    try:
        data = list(snakemake.input.data)  # one session, or a group's sessions (stitched)
        result = train(data if len(data) > 1 else data[0], out_dir, model_cfg, train_cfg,
                       device=device, resume="if_compatible", start_from=parent,
                       execution=snakemake.config["lfads"].get("execution"))
        loss = float(result.best_valid_loss_smooth)
        epochs, stop = result.epochs_run, result.stop_reason
    except NonFiniteLossError as exc:  # replaced in the next generation, never copied
        log.warning("member %d diverged; its loss counts as NaN: %s", member, exc)
        blob = load_checkpoint(out_dir / "checkpoint.pt")
        save_model(Path(snakemake.output.model), blob["model"],
                   ModelConfig.from_dict(blob["settings"]["model"]),
                   TrainConfig.from_dict(blob["settings"]["training"]),
                   {"stop_reason": f"diverged: {exc}", "epochs_run": blob["state"]["epoch"]})
        write_train_log(Path(snakemake.output.train_log), blob["state"]["rows"])
        loss, epochs, stop = math.nan, blob["state"]["epoch"], "diverged"
    # The final state is the next generation's starting point; a rename, not a copy.
    os.replace(out_dir / "checkpoint.pt", snakemake.output.state)
    summary = {"generation": generation, "member": member, "parent": entry["parent"],
               "founder": entry["founder"], "settings": entry["settings"],
               "valid_loss_smooth": loss, "epochs_run": epochs, "stop_reason": stop,
               "device": str(device), "seconds": round(time.perf_counter() - started, 2),
               "model": model_cfg.to_dict(), "training": train_cfg.to_dict()}
    with atomic_path(snakemake.output.result) as tmp:
        tmp.write_text(yaml.safe_dump(summary, sort_keys=False))
    log.info("generation %d, member %d: smoothed validation loss %.4f after %d epochs", generation,
             member, loss, epochs)
