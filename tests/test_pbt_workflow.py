"""Population-based training through Snakemake: a tiny PBT (population 4, 3 generations of 2
epochs) on the tiny configuration, run for real; a second run, stopped and resumed with
--rerun-incomplete, must make the same plans and end with the same weights."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, TINY_SHEET, run_snakemake, tiny_config, workflow_dir

pytestmark = pytest.mark.workflow

POPULATION, GENERATIONS, EPOCHS = 4, 3, 2


def pbt_config(**changes) -> str:
    config = yaml.safe_load(tiny_config())
    config["lfads"]["pbt"].update({"enabled": True, "population": POPULATION,
                                   "generations": GENERATIONS, "epochs_per_generation": EPOCHS,
                                   "configured_member": True, **changes})
    return yaml.safe_dump(config)


def pbt_dir(work):
    return work / "results" / "tiny" / "lfads" / "pbt"


def second_generation_training(work) -> bool:
    """A member of generation 1 has started training (its rule log names it); with 2 cores and
    2 threads a member, it is the one job running."""
    return any("generation 1, member" in log.read_text()
               for log in (work / "logs" / "tiny" / "pbt").glob("train_001_*.log"))


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def pbt_run(tmp_path_factory):
    work = workflow_dir(tmp_path_factory.mktemp("pbt"), TINY_SHEET, pbt_config())
    dry = run_snakemake(work, "-n", "--quiet", "rules")
    run_snakemake(work)
    return work, dry.stdout


def job_counts(dry_run_output: str) -> dict[str, int]:
    counts = {}
    for line in dry_run_output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_the_dry_run_lists_every_generation(pbt_run):
    _, dry = pbt_run
    counts = job_counts(dry)
    assert counts["train_pbt_member"] == POPULATION * GENERATIONS
    assert counts["pbt_plan"] == counts["pbt_generation_table"] == GENERATIONS
    assert counts["select_pbt_member"] == 1 and "train_lfads" not in counts


def test_plans_and_lineage(pbt_run):
    work, _ = pbt_run
    table = pd.read_csv(pbt_dir(work) / "generations.tsv", sep="\t")
    assert len(table) == POPULATION * GENERATIONS
    ranges = yaml.safe_load(pbt_config())["lfads"]["pbt"]["parameters"]
    for name, r in ranges.items():
        assert table[name].between(r["low"], r["high"]).all(), name
    rows = table.set_index(["generation", "member"])
    copies = 0
    for generation in range(GENERATIONS):
        plan = yaml.safe_load((pbt_dir(work) / f"plan_{generation:03d}.yaml").read_text())
        assert [e["member"] for e in plan["members"]] == list(range(POPULATION))
        for entry in plan["members"]:
            member = entry["member"]
            row = rows.loc[(generation, member)]
            folder = pbt_dir(work) / f"gen_{generation:03d}" / f"member_{member:03d}"
            log = pd.read_csv(folder / "train_log.csv")
            assert list(log["epoch"]) == list(range((generation + 1) * EPOCHS))
            assert {name: row[name] for name in ranges} == pytest.approx(entry["settings"])
            if generation == 0:
                assert entry["parent"] is None and row["founder"] == member
                assert (entry["why"] == "configured settings") == (member == 0)
                continue
            parent = rows.loc[(generation - 1, entry["parent"])]
            assert row["founder"] == parent["founder"]  # lineage follows the parent
            parent_log = pd.read_csv(folder.parent.parent / f"gen_{generation - 1:03d}" /
                                     f"member_{entry['parent']:03d}" / "train_log.csv")
            pd.testing.assert_frame_equal(log.head(len(parent_log)).drop(columns="time_s"),
                                          parent_log.drop(columns="time_s"))
            if entry["parent"] != member:  # copied a better member: the worst one, explored
                copies += 1
                worst = rows.loc[generation - 1]["valid_loss_smooth"].idxmax()
                assert member == worst and parent["valid_loss_smooth"] == \
                    rows.loc[generation - 1]["valid_loss_smooth"].min()
                assert "exploit" in entry["why"]
    assert copies == GENERATIONS - 1  # population 4, fraction 0.25: one copy per step
    configured = yaml.safe_load(pbt_config())["lfads"]
    for name, r in ranges.items():  # member 0 started from the config, clipped to the range
        section, _, key = name.partition(".")
        value = min(max(configured[section][key], r["low"]), r["high"])
        assert rows.loc[(0, 0)][name] == pytest.approx(value), name


def test_selected_is_the_best_member(pbt_run):
    work, _ = pbt_run
    table = pd.read_csv(pbt_dir(work) / "generations.tsv", sep="\t")
    last = table[table["generation"] == GENERATIONS - 1]
    best = int(last.loc[last["valid_loss_smooth"].idxmin(), "member"])
    assert table.loc[table["selected"], "member"].tolist() == [best]
    folder = pbt_dir(work) / f"gen_{GENERATIONS - 1:03d}" / f"member_{best:03d}"
    selected = load(work / "results" / "tiny" / "lfads" / "selected" / "model.pt")["state_dict"]
    member = load(folder / "model.pt")["state_dict"]
    state = load(folder / "state.pt")["model"]
    assert selected.keys() == member.keys() == state.keys()
    assert all(torch.equal(selected[k], member[k]) and torch.equal(selected[k], state[k])
               for k in selected)
    resolved = yaml.safe_load((folder.parents[2] / "selected" / "config.yaml").read_text())
    assert resolved["method"] == "pbt" and resolved["member"] == best
    # every later stage used it, and the report figure was drawn
    assert (work / "results" / "tiny" / "lfads" / "selected" / "posterior.h5").is_file()
    assert (work / "results" / "tiny" / "figures" / "pbt_progress.png").is_file()
    assert not (work / "results" / "tiny" / "lfads" / "default").exists()
    # the methods text says how the model was chosen, and cites what did it
    methods = (work / "results" / "tiny" / "methods.md").read_text()
    assert f"{POPULATION} models trained side by side" in methods
    assert f"{GENERATIONS} generations of {EPOCHS} epochs" in methods
    assert "population-based training's choices of models" in methods
    assert "Jaderberg M" in methods and "Keshtkaran MR" in methods


def test_an_interrupted_rerun_makes_the_same_plans_and_weights(pbt_run, tmp_path):
    first, _ = pbt_run
    work = workflow_dir(tmp_path, TINY_SHEET, pbt_config())
    target = "results/tiny/lfads/selected/model.pt"  # the later stages are the first run's
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(work), "--cores", "2", target]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not second_generation_training(work) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert second_generation_training(work), "the second generation never started training"
    # stopped in the middle of the second generation (SIGTERM, as a cluster or `kill` sends:
    # Snakemake finishes the running jobs and starts no more). Not sooner: Snakemake 9's SIGTERM
    # handler takes the scheduler's lock (a threading.Lock) in the main thread, so a SIGTERM that
    # lands while the scheduler holds it, as it does while re-planning after the PBT checkpoint,
    # waits for ever (CI hung there once).
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) != 0
    assert not (pbt_dir(work) / "generations.tsv").exists()
    run_snakemake(work, "--rerun-incomplete", target)
    for generation in range(GENERATIONS):
        name = f"plan_{generation:03d}.yaml"
        assert (pbt_dir(work) / name).read_text() == (pbt_dir(first) / name).read_text()
    a = load(first / "results" / "tiny" / "lfads" / "selected" / "model.pt")["state_dict"]
    b = load(work / "results" / "tiny" / "lfads" / "selected" / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("change, words", [
    ({"population": 1}, "lfads.pbt.population"),
    ({"parameters": {"training.lr": {"low": 0.01, "high": 0.001, "scale": "log"}}},
     "config/config.yaml: field 'lfads.pbt.parameters.training.lr': a range needs low < high"),
    ({"parameters": {"model.gen_dim": {"low": 10, "high": 100, "scale": "linear"}}},
     "field 'lfads.pbt.parameters.model.gen_dim': unknown setting for PBT"),
])
def test_bad_pbt_settings_stop_before_any_job(tmp_path, change, words):
    work = workflow_dir(tmp_path, TINY_SHEET, pbt_config(**change))
    result = run_snakemake(work, check=False)
    assert result.returncode != 0 and words in result.stdout
    assert not (work / "results").exists() and not (work / "resources").exists()
