# Sample sheet loading and input functions shared by the rules.

import dataclasses
import sys
from pathlib import Path

from lfads_core.errors import InputDataError

from lfads_core.nwb.alignment import AlignSettings
from lfads_core.nwb.ingest import IngestSettings
from lfads_core.workflow.preflight import check_datasets, check_trace_likelihoods
from lfads_core.workflow.settings import (
    baseline_runs,
    load_dataset_sheet,
    lfads_settings_for,
    read_schema,
)
from lfads_core.workflow.startup import check_override_names, exit_on_bad_input, startup_summary
from lfads_core.workflow.groups import model_groups
from lfads_core.workflow.pbt import pbt_settings
from lfads_core.workflow.results import present_datasets
from lfads_core.workflow.sweep import DEFAULT_RUN, SELECTED_RUN, sweep_points

# Every start-up step below stops a bad setting or file with one message naming the file, the
# key and what is allowed (no traceback), before any job runs.
started = lambda step, *args, **kwargs: exit_on_bad_input(CONFIG_SOURCES, step, *args, **kwargs)
# Training runs per dataset: `default`, or one per point of the sweep (config lfads.sweep).
SWEEP = started(sweep_points, config["lfads"].get("sweep"))
SWEEPING = list(SWEEP) != [DEFAULT_RUN]
# Population-based training (config lfads.pbt; None when off): generations x population
# member jobs from the `default` run's settings, the best member of the last one `selected`.
PBT = started(pbt_settings, config["lfads"].get("pbt"), config["lfads"].get("sweep"))
# `test_fraction: auto` holds test trials out (read by no training or selection) when a sweep
# or PBT chooses among models on the validation trials.
DATASETS = started(
    load_dataset_sheet,
    config["datasets"],
    config["defaults"],
    read_schema(workflow.source_path("../schemas/datasets.schema.yaml")),
    selecting=SWEEPING or PBT is not None,
)
# Stitching: rows with the same sheet `group` train one model (results/{group}/lfads/), each
# row a session of it. With lfads.stitching.single_session_baseline every such row also trains
# a model of its own, for comparison: one default run (`default`), or with the group's sweep or
# PBT (`selection`). MODELS: what trains, by the name of its results folder.
GROUPS = started(model_groups, DATASETS, config["datasets"])
GROUP_OF = {dataset: group for group, rows in GROUPS.items() for dataset in rows}
BASELINE = baseline_runs(config["lfads"].get("stitching", {}).get("single_session_baseline"))
MODELS = {
    **{d: [d] for d in DATASETS if d not in GROUP_OF or BASELINE != "none"},
    **GROUPS,
}
# The models a sweep or PBT trains (every model, but single-session baselines only with
# `selection`); the others train one `default` run.
SELECTING = [
    m for m in MODELS if (SWEEPING or PBT) and (m not in GROUP_OF or BASELINE == "selection")
]
SIMULATED_DIR = "resources/simulated"
started(
    check_override_names,
    config["lfads"].get("overrides", {}),
    [*DATASETS, *GROUPS],
    config.get("simulations", {}),
    config["datasets"],
    CONFIG_SOURCES,
)
# The light rules (ingestion, binning, alignment, decoding, metrics, figures, selections,
# summary) run in the main Snakemake process; config `submit_light_rules` submits them as jobs
# instead, on a cluster whose login node may not run them.
LOCAL_LIGHT_RULES = not config.get("submit_light_rules", False)


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    name="[A-Za-z0-9_.-]+",
    run="|".join([*SWEEP, DEFAULT_RUN, SELECTED_RUN]),
    generation="[0-9]{3}",
    member="[0-9]{3}",


def simulated_session(stem):
    """(simulation, session) a simulated file's name stands for: `{simulation}`, or
    `{simulation}_session{k}` for session k of a simulation with `sessions` > 1; None if the
    config has no such simulation."""
    simulations = config.get("simulations", {})
    if stem in simulations:
        return stem, 0
    name, _, session = stem.rpartition("_session")
    if session.isdigit() and int(session) < simulations.get(name, {}).get("sessions", 1):
        return name, int(session)
    return None


def check_nwb_paths():
    """Every sheet path must exist, or be a simulation this config can write."""
    for name, settings in DATASETS.items():
        path = Path(settings["nwb"])
        where = f"{config['datasets']} (dataset '{name}')"
        simulated = path.parent == Path(SIMULATED_DIR) and path.suffix == ".nwb"
        if simulated and simulated_session(path.stem) is None:
            raise InputDataError(
                where,
                "nwb",
                f"{path} is a simulated file but config 'simulations' has no entry "
                f"'{path.stem}' (nor a multi-session simulation of which it is "
                "`{name}_session{k}`)",
            )
        if not simulated and not path.is_file():
            raise InputDataError(where, "nwb", f"file not found: {path}")


started(check_nwb_paths)
# Settings against each file's metadata (lfads_core/workflow/preflight.py), before any job runs.
FOUND = started(check_datasets, DATASETS, config["datasets"], config, SIMULATED_DIR)


def runs_of(model):
    """The LFADS runs a model trains: the sweep's points, PBT's `default` base, or `default`."""
    return SWEEP if model in SELECTING else {DEFAULT_RUN: {}}


# LFADS settings of every model and run (config `lfads`, the model's overrides, the run's
# sweep point), checked now.
LFADS_SETTINGS = {
    (name, run): started(lfads_settings_for, config["lfads"], name, run, point)
    for name in MODELS
    for run, point in runs_of(name).items()
}
# Calcium traces need a likelihood for values (gamma, zig, gaussian), not poisson.
started(check_trace_likelihoods, DATASETS, MODELS, LFADS_SETTINGS)
# One line per dataset and one for the training jobs, before any job (a dry run too).
print(
    startup_summary(DATASETS, FOUND, GROUPS, {m: list(runs_of(m)) for m in MODELS}, SELECTING, PBT),
    file=sys.stderr,
)


# Each rule's params are exactly the settings its stage reads, so that changing a setting
# reruns that stage and what depends on it, and nothing else.
# Settings added after results may exist, with the value that behaves as before: a stage's
# params carry them only when set otherwise, so that results made before they existed do not
# rerun.
SETTINGS_ADDED = {
    "trials_table": "trials",
    "segment_length_ms": None,
    "segment_overlap_ms": "auto",
    "split_blocks": 10,
    "traces": "",
    "roi_filter": "",
    "bin_frames": 1,
}


def sheet_settings(stage):
    """Input function: the dataset settings (sheet row over config defaults) read by a stage
    whose settings are the dataclass `stage` (those of `SETTINGS_ADDED` only when they are
    not their default)."""
    names = [field.name for field in dataclasses.fields(stage)]

    def of_dataset(wildcards):
        settings = DATASETS[wildcards.dataset]
        added = {
            name: default
            for name, default in SETTINGS_ADDED.items()
            if settings.get(name, default) == default
        }
        return {name: settings[name] for name in names if name not in added}

    return of_dataset


def bin_width_ms(wildcards):
    """The bin width (ms) of a spikes dataset; a traces dataset's bins are frames, so its
    binning setting is `{"bin_frames": n}` (the width is read from the file)."""
    settings = DATASETS[wildcards.dataset]
    if is_traces(wildcards.dataset):
        return {"bin_frames": int(settings["bin_frames"])}
    return settings["bin_width_ms"]


def is_traces(dataset):
    """Whether a dataset models calcium imaging traces (setting `traces`) rather than spikes."""
    return bool(str(DATASETS[dataset].get("traces", "")).strip())


def lfads_training_settings(wildcards, run=None):
    """The model and training settings of one dataset and run (default: the `run` wildcard):
    what training reads (the device and the posterior batch size change no weights, so they
    are not among them)."""
    settings = LFADS_SETTINGS[(wildcards.model, run or wildcards.run)]
    return {"model": settings["model"], "training": settings["training"]}


def evaluation_settings():
    """What `evaluate` reads of config `evaluation` (the vel R^2 ridge uses the decoding
    penalties, inner folds, lag and seed; the number of outer folds is decoding's alone)."""
    evaluation = config["evaluation"]
    decoding = {
        key: evaluation["decoding"][key] for key in ("lag_ms", "alphas", "inner_folds", "seed")
    }
    return {
        "smoothing_sigma_ms": evaluation["smoothing_sigma_ms"],
        "psth_sigma_ms": evaluation["psth_sigma_ms"],
        "n_bootstrap": evaluation["n_bootstrap"],
        "seed": evaluation["seed"],
        "decoding": decoding,
    }


def validation_selections(model):
    """What chooses on a model's validation trials (the scores' `seen_by`): the kept epoch and
    the learning-rate schedule always, and the sweep's or PBT's choice of a model."""
    selection = ["sweep selection"] if SWEEPING else ["PBT selection"] if PBT else []
    return ["early stopping", "learning-rate plateau"] + (selection if model in SELECTING else [])


def score_selections(wildcards):
    """`validation_selections` of the models a dataset's scores come from: its own (or its
    group's) and, for a stitched row with the baseline, its single-session model's."""
    dataset = wildcards.dataset
    selections = {"lfads": validation_selections(GROUP_OF.get(dataset, dataset))}
    if dataset in GROUP_OF and dataset in MODELS:
        selections["single"] = validation_selections(dataset)
    return selections


def nwb_file(wildcards):
    return DATASETS[wildcards.dataset]["nwb"]


def has_behavior(dataset):
    return bool(DATASETS[dataset]["behavior"].strip())


def is_simulated(dataset):
    return Path(DATASETS[dataset]["nwb"]).parent == Path(SIMULATED_DIR)


def run_of(model):
    """The LFADS run of a model the later stages use: the sweep's or PBT's `selected` run, or
    `default` (also for single-session baselines, unless they train with the selection)."""
    return SELECTED_RUN if model in SELECTING else DEFAULT_RUN


def lfads_inputs(wildcards):
    """A model's training data: the `lfads_input.h5` of each of its sessions (one, or a
    group's rows in sheet order)."""
    return [f"results/{dataset}/lfads_input.h5" for dataset in MODELS[wildcards.model]]


def posterior_file(wildcards):
    """The posterior the later stages of a dataset use: from its group's model if it has one."""
    dataset = wildcards.dataset
    if dataset in GROUP_OF:
        return f"results/{dataset}/lfads/stitched/{run_of(GROUP_OF[dataset])}/posterior.h5"
    return f"results/{dataset}/lfads/{run_of(dataset)}/posterior.h5"


def single_session_posterior(wildcards):
    """A grouped dataset's single-session posterior (with the baseline), for `evaluate`."""
    dataset = wildcards.dataset
    if dataset in GROUP_OF and dataset in MODELS:
        return {"single": f"results/{dataset}/lfads/{run_of(dataset)}/posterior.h5"}
    return {}


def group_model(wildcards):
    """A grouped dataset's model, and its session number in it."""
    group = GROUP_OF[wildcards.dataset]
    return f"results/{group}/lfads/{wildcards.run}/model.pt"


def session_index(wildcards):
    return GROUPS[GROUP_OF[wildcards.dataset]].index(wildcards.dataset)


def run_config_file(wildcards):
    """The resolved settings of the LFADS run a dataset's later stages use (its group's)."""
    model = GROUP_OF.get(wildcards.dataset, wildcards.dataset)
    return f"results/{model}/lfads/{run_of(model)}/config.yaml"


def train_log_file(wildcards):
    model = GROUP_OF.get(wildcards.dataset, wildcards.dataset)
    return f"results/{model}/lfads/{run_of(model)}/train_log.csv"


def sweep_run_files(wildcards):
    """Every sweep run's model, training log and resolved config (for the selection)."""
    runs = [f"results/{wildcards.model}/lfads/{run}" for run in SWEEP]
    return {
        "models": [f"{run}/model.pt" for run in runs],
        "train_logs": [f"{run}/train_log.csv" for run in runs],
        "configs": [f"{run}/config.yaml" for run in runs],
    }


def pbt_member_dir(model, generation, member):
    """The folder of one PBT member in one generation."""
    return f"results/{model}/lfads/pbt/gen_{int(generation):03d}/member_{int(member):03d}"


def pbt_generation_files(model, generation, name):
    """One file (`name`) of every member of one PBT generation, in member order."""
    return [
        f"{pbt_member_dir(model, generation, member)}/{name}" for member in range(PBT.population)
    ]


def pbt_plan_inputs(wildcards):
    """A plan's inputs: nothing for generation 0; else the previous generation's table."""
    generation = int(wildcards.generation)
    if generation == 0:
        return {}
    return {"table": f"results/{wildcards.model}/lfads/pbt/generation_{generation - 1:03d}.tsv"}


def pbt_member_inputs(wildcards):
    """A member's inputs: the data, its generation's plan and the previous generation's states
    (the plan names the member's parent among them)."""
    generation = int(wildcards.generation)
    inputs = {
        "data": lfads_inputs(wildcards),
        "plan": f"results/{wildcards.model}/lfads/pbt/plan_{generation:03d}.yaml",
    }
    if generation > 0:
        inputs["parents"] = pbt_generation_files(wildcards.model, generation - 1, "state.pt")
    return inputs


def pbt_generation_results(wildcards):
    """One generation's plan and every member's result (for its table)."""
    generation = int(wildcards.generation)
    return {
        "plan": f"results/{wildcards.model}/lfads/pbt/plan_{generation:03d}.yaml",
        "results": pbt_generation_files(wildcards.model, generation, "result.yaml"),
    }


def pbt_selection_inputs(wildcards):
    """Every generation's table, and the last generation's models, logs and results."""
    last = PBT.generations - 1
    return {
        "tables": [
            f"results/{wildcards.model}/lfads/pbt/generation_{g:03d}.tsv"
            for g in range(PBT.generations)
        ],
        "models": pbt_generation_files(wildcards.model, last, "model.pt"),
        "train_logs": pbt_generation_files(wildcards.model, last, "train_log.csv"),
        "results": pbt_generation_files(wildcards.model, last, "result.yaml"),
    }


def metric_tables(wildcards):
    """The metrics table, and the decoding summary where the dataset has behaviour."""
    tables = {"metrics": f"results/{wildcards.dataset}/metrics.tsv"}
    if has_behavior(wildcards.dataset):
        tables["decoding"] = f"results/{wildcards.dataset}/decoding/summary.tsv"
    return tables


def group_session_files(wildcards):
    """A stitched group's sessions: each row's posterior from the group's model and its input."""
    rows, run = GROUPS[wildcards.group], run_of(wildcards.group)
    return {
        "posteriors": [f"results/{row}/lfads/stitched/{run}/posterior.h5" for row in rows],
        "data": [f"results/{row}/lfads_input.h5" for row in rows],
    }


def figure_files():
    """Every figure (PNG and PDF) of every dataset (and stitched group); which ones depends on
    the data."""
    names = ["training_curves", "raster_rates", "factor_trajectories", "method_comparison"]
    files = [
        f"results/{model}/figures/pbt_progress.{ext}"
        for model in SELECTING
        if PBT
        for ext in ("png", "pdf")
    ]
    files += [
        f"results/{group}/figures/stitched_factors.{ext}"
        for group in GROUPS
        for ext in ("png", "pdf")
    ]
    for dataset in DATASETS:
        extra = (["decoded_behavior"] if has_behavior(dataset) else []) + (
            ["latents_vs_truth"] if is_simulated(dataset) else []
        )
        files += [
            f"results/{dataset}/figures/{name}.{ext}"
            for name in names + extra
            for ext in ("png", "pdf")
        ]
    return files


def summary_datasets():
    """The datasets the summary covers: the sheet's, then any other with results under
    `results/` (made by an earlier configuration; their files are used as they are)."""
    sheet = list(DATASETS)
    return sheet + [d for d in present_datasets() if d not in DATASETS]


def methods_inputs(wildcards):
    """What a dataset's methods text reads: its summaries, the used run's resolved settings,
    the selection table, the scores and the provenance records that name the versions."""
    dataset = wildcards.dataset
    model = GROUP_OF.get(dataset, dataset)
    run = run_of(model)
    if SWEEPING:
        training = [f"results/{model}/provenance/train_lfads_{point}.json" for point in SWEEP]
    elif PBT:
        training = [f"results/{model}/provenance/select_pbt_member.json"]
    else:
        training = [f"results/{model}/provenance/train_lfads_{run}.json"]
    sampling = "sample_stitched_posterior" if dataset in GROUP_OF else "sample_posterior"
    files = {
        "ingest": f"results/{dataset}/ingest/summary.json",
        "alignment": f"results/{dataset}/align/summary.json",
        "metadata": f"results/{dataset}/lfads_input.json",
        "training": f"results/{model}/lfads/{run}/config.yaml",
        "metrics": f"results/{dataset}/metrics.tsv",
        "provenance": [f"results/{dataset}/provenance/ingest.json", *training]
        + [
            f"results/{dataset}/provenance/{sampling}_{run}.json",
            f"results/{dataset}/provenance/evaluate.json",
        ],
    }
    if has_behavior(dataset):
        files["decoding"] = f"results/{dataset}/decoding/summary.tsv"
    if SWEEPING:
        files["selection"] = f"results/{model}/lfads/selection.tsv"
    elif PBT:
        files["selection"] = f"results/{model}/lfads/pbt/generations.tsv"
    return files


def methods_search():
    """How the used model was chosen among several (a sweep or PBT), for the methods text."""
    if SWEEPING:
        return {"method": "sweep", "config": config["lfads"]["sweep"]}
    if PBT:
        return {"method": "pbt", "config": config["lfads"]["pbt"]}
    return None


def methods_group(wildcards):
    """A stitched dataset's group and its sessions (None for a model of its own)."""
    group = GROUP_OF.get(wildcards.dataset)
    return {"name": group, "sessions": GROUPS[group]} if group else None


def summary_inputs(wildcards):
    """Every dataset's metrics, decoding summary and settings, and the sweep selections."""
    datasets = summary_datasets()
    decoding = [f"results/{dataset}/decoding/summary.tsv" for dataset in datasets]
    settings = [f"results/{dataset}/settings.yaml" for dataset in datasets]
    tables = {
        "metrics": [f"results/{dataset}/metrics.tsv" for dataset in datasets],
        "decoding": [
            path
            for dataset, path in zip(datasets, decoding)
            if (has_behavior(dataset) if dataset in DATASETS else Path(path).is_file())
        ],
        "settings": [
            path
            for dataset, path in zip(datasets, settings)
            if dataset in DATASETS or Path(path).is_file()
        ],
    }
    if SWEEPING:
        tables["selections"] = [f"results/{model}/lfads/selection.tsv" for model in SELECTING]
    return tables


def all_outputs():
    """Final targets: every stage's result for every dataset of the sheet, and the summary."""
    files = figure_files() + (list(rules.summary.output) if summary_datasets() else [])
    for dataset in DATASETS:
        files += [
            f"results/{dataset}/align/summary.json",
            f"results/{dataset}/factors.nwb",
            f"results/{dataset}/metrics.tsv",
            f"results/{dataset}/settings.yaml",
            f"results/{dataset}/methods.md",
        ]
        if has_behavior(dataset):
            files.append(f"results/{dataset}/decoding/summary.tsv")
    return files
