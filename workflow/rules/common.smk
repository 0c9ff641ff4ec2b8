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


def has_behavior(dataset):
    return bool(DATASETS[dataset]["behavior"].strip())


def is_simulated(dataset):
    return Path(DATASETS[dataset]["nwb"]).parent == Path(SIMULATED_DIR)


def posterior_file(wildcards):
    """The LFADS run whose posterior the downstream stages use."""
    return f"results/{wildcards.dataset}/lfads/default/posterior.h5"


def train_log_file(wildcards):
    return f"results/{wildcards.dataset}/lfads/default/train_log.csv"


def metric_tables(wildcards):
    """The metrics table, and the decoding summary where the dataset has behaviour."""
    tables = {"metrics": f"results/{wildcards.dataset}/metrics.tsv"}
    if has_behavior(wildcards.dataset):
        tables["decoding"] = f"results/{wildcards.dataset}/decoding/summary.tsv"
    return tables


def figure_files():
    """Every figure (PNG and PDF) of every dataset; which ones depends on the data."""
    names = ["training_curves", "raster_rates", "factor_trajectories", "method_comparison"]
    files = []
    for dataset in DATASETS:
        extra = (["decoded_behavior"] if has_behavior(dataset) else []) + (
            ["latents_vs_truth"] if is_simulated(dataset) else [])
        files += [f"results/{dataset}/figures/{name}.{ext}" for name in names + extra
                  for ext in ("png", "pdf")]
    return files


def all_outputs():
    """Final targets: every stage's result for every dataset of the sheet."""
    files = ["results/config.yaml"] + figure_files()
    for dataset in DATASETS:
        files += [f"results/{dataset}/align/summary.json", f"results/{dataset}/factors.nwb",
                  f"results/{dataset}/metrics.tsv"]
        if has_behavior(dataset):
            files.append(f"results/{dataset}/decoding/summary.tsv")
    return files
