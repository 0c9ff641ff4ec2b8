# Sample sheet loading and input functions shared by the rules.

from pathlib import Path

from lfads_core.settings import load_dataset_sheet, lfads_settings_for

DATASETS = load_dataset_sheet(config["datasets"], config["defaults"])
SIMULATED_DIR = "resources/simulated"


wildcard_constraints:
    dataset="|".join(DATASETS),
    name="[A-Za-z0-9_.-]+",
    run="[A-Za-z0-9_.-]+",


def _check_nwb_paths():
    """Every sheet path must exist, or be a simulation this config can write."""
    for name, settings in DATASETS.items():
        path = Path(settings["nwb"])
        simulated = path.parent == Path(SIMULATED_DIR) and path.suffix == ".nwb"
        if simulated and path.stem not in config.get("simulations", {}):
            raise ValueError(
                f"{config['datasets']} (dataset '{name}'): field 'nwb': {path} is a simulated "
                f"file but config 'simulations' has no entry '{path.stem}'"
            )
        if not simulated and not path.is_file():
            raise ValueError(
                f"{config['datasets']} (dataset '{name}'): field 'nwb': file not found: {path}"
            )


_check_nwb_paths()


# LFADS settings of every dataset (config `lfads`, with the dataset's overrides), checked now.
LFADS_SETTINGS = {name: lfads_settings_for(config["lfads"], name) for name in DATASETS}


def lfads_settings(wildcards):
    return LFADS_SETTINGS[wildcards.dataset]


def dataset_settings(wildcards):
    """Merged settings of one dataset (sheet row over config defaults)."""
    return DATASETS[wildcards.dataset]


def nwb_file(wildcards):
    return DATASETS[wildcards.dataset]["nwb"]


def all_outputs():
    """Final targets: every stage's result for every dataset of the sheet."""
    return expand(
        [
            "results/{dataset}/align/summary.json",
            "results/{dataset}/lfads/default/posterior.h5",
        ],
        dataset=DATASETS,
    )
