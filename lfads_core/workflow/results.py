"""Results that describe themselves: each dataset's folder holds the resolved settings its
results were made with (``results/{dataset}/settings.yaml``, :func:`dataset_settings`), with a
checksum that names the configuration; the summary covers every dataset present under
``results/`` (:func:`present_datasets`), each with that checksum."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

import yaml

#: What a run's config.yaml says about the run rather than the settings (left out of the checksum)
RUN_OUTCOME = ("device", "input", "run", "stop_reason", "best_epoch", "best_valid_loss_smooth",
               "best_valid_metric_smooth", "epochs_run")  # the last: the name of earlier versions


def settings_checksum(settings: Mapping) -> str:
    """sha256 of the settings (canonical JSON): equal checksums, equal configurations."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def dataset_settings(dataset: str, data: Mapping, run_config: str | Path, model: str,
                     evaluation: Mapping, workflow: str) -> dict:
    """The resolved settings a dataset's results were made with: ``data`` (its sheet row over
    the config's defaults, as ingestion, binning and alignment read it), the LFADS settings of
    the run its later stages use (``run_config``: that run's ``config.yaml``; ``model``: the
    dataset, or its stitched group) with how that run ended, ``evaluation``, the workflow's
    version, and ``settings_sha256`` over data, LFADS model and training, and evaluation."""
    run = yaml.safe_load(Path(run_config).read_text())
    lfads = {"model": run["model"], "training": run["training"]}
    settings = {"data": dict(data), "lfads": lfads, "evaluation": dict(evaluation)}
    return {"dataset": dataset, "settings_sha256": settings_checksum(settings), "workflow": workflow,
            "model": model, **settings,
            "lfads_run": {key: run[key] for key in RUN_OUTCOME if key in run}}


def present_datasets(results: str | Path = "results") -> list[str]:
    """The datasets with results under ``results`` (folders holding a ``metrics.tsv``, other than
    the summary's own), sorted."""
    return sorted(p.parent.name for p in Path(results).glob("*/metrics.tsv")
                  if p.parent.name != "summary")
