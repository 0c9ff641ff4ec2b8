"""Batches of datasets and hyperparameter sweeps, as real Snakemake runs on tiny recordings.

One working directory goes through the whole story: a sheet with one dataset and a 2-point
grid sweep runs end to end; then a second dataset is added to the sheet and only its chain
(and the summary over both) runs.
"""

import re

import pandas as pd
import pytest
import yaml

from conftest import TINY_SHEET, run_snakemake, tiny_config, workflow_dir

pytestmark = pytest.mark.workflow

SECOND_ROW = "tiny2\tresources/simulated/tiny2.nwb\thand_vel\tcondition\t10\n"
LEARNING_RATES = [0.004, 0.02]


def sweep_config() -> str:
    config = yaml.safe_load(tiny_config())
    config["simulations"]["tiny2"] = {**config["simulations"]["tiny"], "seed": 1}
    config["lfads"]["overrides"]["tiny2"] = config["lfads"]["overrides"]["tiny"]
    config["lfads"]["sweep"] = {"method": "grid", "parameters": {"training.lr": LEARNING_RATES}}
    return yaml.safe_dump(config)


def planned_jobs(stdout: str) -> list[tuple[str, str | None]]:
    """(rule, dataset or simulation name, or None) of every job in a dry run's output."""
    jobs = []
    for block in re.split(r"^\[.*\]$", stdout, flags=re.M):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if rule:
            dataset = re.search(r"^\s+wildcards: .*?\b(?:dataset|model|name)=([\w.-]+)", block, re.M)
            jobs.append((rule.group(1), dataset.group(1) if dataset else None))
    return jobs


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    work = workflow_dir(tmp_path_factory.mktemp("sweep"), TINY_SHEET, sweep_config())
    result = run_snakemake(work)
    return work, result


def test_sweep_trains_one_model_per_point(sweep_run):
    work, _ = sweep_run
    lfads = work / "results" / "tiny" / "lfads"
    for run, lr in zip(("sweep_000", "sweep_001"), LEARNING_RATES):
        resolved = yaml.safe_load((lfads / run / "config.yaml").read_text())
        assert resolved["training"]["lr"] == lr and resolved["run"] == run
        assert resolved["model"]["gen_dim"] == 16  # the dataset's overrides still apply
    assert not (lfads / "default").exists()


def test_selection_keeps_the_lowest_smoothed_validation_loss(sweep_run):
    work, _ = sweep_run
    lfads = work / "results" / "tiny" / "lfads"
    table = pd.read_csv(lfads / "selection.tsv", sep="\t")
    assert list(table["run"]) == ["sweep_000", "sweep_001"]
    assert list(table["training.lr"]) == LEARNING_RATES
    # the loss comes from the run's own training log: its smoothed loss at the epoch kept
    for row in table.itertuples():
        log = pd.read_csv(lfads / row.run / "train_log.csv")
        kept = log.loc[log["epoch"] == row.best_epoch, "valid_loss_smooth"].item()
        assert row.best_valid_loss_smooth == pytest.approx(kept)
    best = table.loc[table["best_valid_loss_smooth"].idxmin(), "run"]
    assert table.loc[table["selected"], "run"].tolist() == [best]
    # downstream stages use the selected model
    assert (lfads / "selected" / "model.pt").read_bytes() == (lfads / best / "model.pt").read_bytes()
    assert (lfads / "selected" / "posterior.h5").exists()
    assert not (lfads / "sweep_000" / "posterior.h5").exists()
    summary = pd.read_csv(work / "results" / "summary" / "selection.tsv", sep="\t")
    assert summary.loc[summary["selected"], ["dataset", "run"]].values.tolist() == [["tiny", best]]


def test_adding_a_dataset_computes_only_that_dataset(sweep_run):
    work, _ = sweep_run
    results = work / "results"
    before = {path: path.stat().st_mtime_ns for path in (results / "tiny").rglob("*")
              if path.is_file()}
    summary_before = (results / "summary" / "metrics.tsv").stat().st_mtime_ns
    with open(work / "config" / "datasets.tsv", "a") as sheet:
        sheet.write(SECOND_ROW)

    jobs = planned_jobs(run_snakemake(work, "-n").stdout)
    assert ("train_lfads", "tiny2") in jobs and ("summary", None) in jobs
    assert sum(rule == "train_lfads" for rule, _ in jobs) == 2  # one per sweep point
    others = [(rule, dataset) for rule, dataset in jobs if dataset != "tiny2"
              and rule not in ("summary", "all")]
    assert not others, f"jobs outside the new dataset: {others}"

    run_snakemake(work)
    after = {path: path.stat().st_mtime_ns for path in (results / "tiny").rglob("*")
             if path.is_file()}
    assert after == before  # nothing of the first dataset was rewritten
    assert (results / "summary" / "metrics.tsv").stat().st_mtime_ns > summary_before
    metrics = pd.read_csv(results / "summary" / "metrics.tsv", sep="\t")
    assert set(metrics["dataset"]) == {"tiny", "tiny2"}
    for dataset in ("tiny", "tiny2"):
        own = pd.read_csv(results / dataset / "metrics.tsv", sep="\t")
        pd.testing.assert_frame_equal(
            metrics[metrics["dataset"] == dataset].reset_index(drop=True), own)
    decoding = pd.read_csv(results / "summary" / "decoding.tsv", sep="\t")
    assert set(decoding["dataset"]) == {"tiny", "tiny2"}
    selection = pd.read_csv(results / "summary" / "selection.tsv", sep="\t")
    assert selection.groupby("dataset")["selected"].sum().to_dict() == {"tiny": 1, "tiny2": 1}
    for ext in ("png", "pdf"):
        assert (results / "summary" / f"metrics.{ext}").stat().st_size > 1000


def test_a_dataset_off_the_sheet_stays_in_the_summary(sweep_run):
    """The summary covers every dataset with results under results/, each with the checksum
    of the settings its results were made with, whether or not the sheet still names it."""
    work, _ = sweep_run
    header = TINY_SHEET.splitlines(keepends=True)[0]
    (work / "config" / "datasets.tsv").write_text(header + SECOND_ROW)
    run_snakemake(work)
    results = work / "results"
    rows = pd.read_csv(results / "summary" / "datasets.tsv", sep="\t").set_index("dataset")
    assert rows.loc["tiny2", "in_sheet"] and not rows.loc["tiny", "in_sheet"]
    for dataset in ("tiny", "tiny2"):
        made = yaml.safe_load((results / dataset / "settings.yaml").read_text())
        assert rows.loc[dataset, "settings_sha256"] == made["settings_sha256"]
        assert made["data"]["nwb"] == f"resources/simulated/{dataset}.nwb"
        assert made["workflow"].startswith(("git ", "lfads_core "))
    checksums = rows["settings_sha256"]
    assert checksums["tiny"] != checksums["tiny2"]  # their sheet rows differ
    metrics = pd.read_csv(results / "summary" / "metrics.tsv", sep="\t")
    assert set(metrics["dataset"]) == {"tiny", "tiny2"}


def test_bad_sweep_is_named(tmp_path):
    config = yaml.safe_load(sweep_config())
    config["lfads"]["sweep"]["parameters"] = {"training.learning_rate": [0.01]}
    work = workflow_dir(tmp_path / "unknown", TINY_SHEET, yaml.safe_dump(config))
    result = run_snakemake(work, "-n", check=False)
    assert result.returncode != 0
    assert "lfads.sweep.parameters" in result.stdout and "learning_rate" in result.stdout
    config["lfads"]["sweep"] = {"method": "grid",
                                "parameters": {"training.lr": {"low": 0.001, "high": 0.01,
                                                               "scale": "log"}}}
    work = workflow_dir(tmp_path / "range", TINY_SHEET, yaml.safe_dump(config))
    result = run_snakemake(work, "-n", check=False)
    assert result.returncode != 0
    assert "lfads.sweep.parameters.training.lr" in result.stdout and "grid" in result.stdout
