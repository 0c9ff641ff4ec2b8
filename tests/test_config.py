"""config/config.yaml lists every LFADS hyperparameter, and the schema knows each of them."""

import dataclasses

import yaml

from conftest import CONFIG, ROOT
from lfads_core.lfads.config import ModelConfig, TrainConfig

# Set from the data by the training code, not by the user.
DATA_FIELDS = {"encod_data_dims", "recon_data_dims", "encod_seq_len", "recon_seq_len",
               "ext_input_dim"}
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def user_fields(cls):
    return {f.name for f in dataclasses.fields(cls)} - DATA_FIELDS


def test_config_lists_every_hyperparameter():
    assert set(CONFIG["lfads"]["model"]) == user_fields(ModelConfig)
    assert set(CONFIG["lfads"]["training"]) == user_fields(TrainConfig)
    ModelConfig.from_dict(CONFIG["lfads"]["model"])
    TrainConfig.from_dict(CONFIG["lfads"]["training"])


def test_schema_knows_every_hyperparameter():
    lfads = SCHEMA["properties"]["lfads"]["properties"]
    assert set(lfads["model"]["properties"]) == user_fields(ModelConfig)
    assert set(lfads["training"]["properties"]) == user_fields(TrainConfig)


def test_config_readme_documents_every_key():
    readme = (ROOT / "config" / "README.md").read_text()
    keys = set(CONFIG) | set(CONFIG["defaults"]) | set(CONFIG["simulations"]["lorenz"]) | \
        set(CONFIG["lfads"]) | set(CONFIG["lfads"]["sweep"]) | set(CONFIG["lfads"]["pbt"]) | \
        set(CONFIG["lfads"]["stitching"]) | \
        user_fields(ModelConfig) | \
        user_fields(TrainConfig) | \
        set(CONFIG["evaluation"]) | set(CONFIG["evaluation"]["decoding"])
    missing = sorted(k for k in keys if f"`{k}`" not in readme)
    assert not missing, f"config/README.md does not document {missing}"


def test_full_quality_overlay_restores_every_default_the_quick_start_budget_changes():
    from snakemake.utils import update_config

    from lfads_core.workflow.settings import lfads_settings_for

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    quick = lfads_settings_for(config["lfads"], "lorenz")
    assert quick["training"]["max_epochs"] < config["lfads"]["training"]["max_epochs"]
    update_config(config, yaml.safe_load((ROOT / "config" / "lfads_full_quality.yaml").read_text()))
    full = lfads_settings_for(config["lfads"], "lorenz")
    assert full["model"] == config["lfads"]["model"]
    assert full["training"] == config["lfads"]["training"]
