"""A stitched group of three simulated sessions through Snakemake, and bad groups."""

from __future__ import annotations

import h5py
import pandas as pd
import pytest
import torch
import yaml

from conftest import run_snakemake, tiny_config, workflow_dir

pytestmark = pytest.mark.workflow

SESSIONS = ["s_a", "s_b", "s_c"]


def group_config() -> str:
    """One simulated latent system seen in three sessions (own neurons and trial counts)."""
    config = yaml.safe_load(tiny_config())
    tiny = config["simulations"].pop("tiny")
    config["simulations"]["lorenz3"] = {**tiny, "n_neurons": 40, "sessions": 3,
                                        "neurons_per_session": 24,
                                        "session_trials_per_condition": [4, 6]}
    overrides = config["lfads"]["overrides"].pop("tiny")
    config["lfads"]["overrides"] = {name: overrides for name in [*SESSIONS, "maze"]}
    return yaml.safe_dump(config)


def sheet(**changes) -> str:
    rows = ["dataset\tnwb\tbehavior\tcondition_columns\tfp_bins\tgroup\tbin_width_ms"]
    for k, name in enumerate(SESSIONS):
        rows.append(f"{name}\tresources/simulated/lorenz3_session{k}.nwb\thand_vel\tcondition\t"
                    f"10\t{changes.get('group', 'maze')}\t{changes.get(name, 5)}")
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    work = workflow_dir(tmp_path_factory.mktemp("stitch"), sheet(), group_config())
    dry = run_snakemake(work, "-n", "--quiet", "rules")
    run_snakemake(work)
    return work, dry.stdout


def test_one_model_for_the_group_and_one_per_session(group_run):
    work, dry = group_run
    counts = {line.split()[0]: int(line.split()[1]) for line in dry.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["train_lfads"] == 1 + 3  # the group, and each session's baseline
    assert counts["sample_stitched_posterior"] == 3 and counts["sample_posterior"] == 3
    blob = torch.load(work / "results/maze/lfads/default/model.pt", weights_only=False)
    dims = blob["model_cfg"]["encod_data_dims"]
    assert len(dims) == 3 and blob["model_cfg"]["readin_dim"] == min(dims)
    log = pd.read_csv(work / "results/maze/lfads/default/train_log.csv")
    assert {f"valid_recon_session_{k}" for k in range(3)} <= set(log.columns)


def test_every_session_gets_its_own_results_from_the_shared_model(group_run):
    work, _ = group_run
    for k, name in enumerate(SESSIONS):
        results = work / "results" / name
        with h5py.File(results / "lfads/stitched/default/posterior.h5") as post, \
                h5py.File(results / "lfads_input.h5") as data:
            assert post.attrs["session"] == k
            assert post["valid_rates"].shape == data["valid_recon_data"].shape
        metrics = pd.read_csv(results / "metrics.tsv", sep="\t")
        methods = set(metrics["method"])
        assert {"lfads stitched", "lfads single-session", "smoothing"} <= methods
        assert (results / "factors.nwb").is_file() and (results / "decoding/summary.tsv").is_file()
        assert (results / "figures/latents_vs_truth.png").is_file()
        methods = (results / "methods.md").read_text()
        assert "One model was trained on the 3 sessions of the group `maze`" in methods
    summary = pd.read_csv(work / "results/summary/metrics.tsv", sep="\t")
    both = summary[summary["method"].isin(["lfads stitched", "lfads single-session"])]
    assert set(both["dataset"]) == set(SESSIONS)


def test_the_group_has_a_figure_of_its_sessions_in_the_shared_latent_space(group_run):
    import json

    import matplotlib.image

    work, _ = group_run
    figures = work / "results" / "maze" / "figures"
    for ext in ("png", "pdf"):
        assert (figures / f"stitched_factors.{ext}").stat().st_size > 1000
    image = matplotlib.image.imread(figures / "stitched_factors.png")
    assert image.shape[1] == 7 * 300  # two paper columns at 300 dpi
    record = json.loads((work / "results/maze/provenance/plot_stitched_factors.json").read_text())
    assert [p["path"] for p in record["inputs"]["posteriors"]] == \
        [f"results/{name}/lfads/stitched/default/posterior.h5" for name in SESSIONS]
    log = (work / "logs/maze/plot_stitched_factors.log").read_text()
    assert all(name in log for name in SESSIONS)


@pytest.mark.parametrize("changes, words", [
    ({"s_b": 10}, "(group 'maze', rows ['s_a', 's_b', 's_c']): field 'bin_width_ms': must agree"),
    ({"group": "s_a"}, "field 'group': 's_a' is also the name of a dataset"),
])
def test_bad_groups_stop_before_any_job(tmp_path, changes, words):
    work = workflow_dir(tmp_path, sheet(**changes), group_config())
    result = run_snakemake(work, check=False)
    assert result.returncode != 0 and words in result.stdout
    assert not (work / "results").exists() and not (work / "resources").exists()
