"""The SLURM profile without a cluster: every rule that asks for a GPU has the GPU partition,
the partitions and the account are each written once, and a dry run through the profile, as a
lab adapts it, gives every job the partition and account it should get. tests/test_slurm.py
runs the profile on a real SLURM cluster."""

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_snakemake, tiny_config, workflow_dir
from lfads_core.workflow.cluster import gpu_rules_on_the_default_partition

PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"


def rule_bodies() -> dict[str, str]:
    """Rule name -> the text of its definition, for every rule in workflow/rules/*.smk."""
    bodies = {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^\s*rule (\w+):\n", path.read_text(), flags=re.M)
        bodies.update(zip(parts[1::2], parts[2::2]))
    return bodies


def gpu_rules() -> set[str]:
    """The rules whose `resources:` ask for a GPU."""
    return {name for name, body in rule_bodies().items() if re.search(r"^\s+gpu=", body, re.M)}


def test_every_rule_that_asks_for_a_gpu_has_the_gpu_partition():
    profile = yaml.safe_load(PROFILE.read_text())
    asking = gpu_rules()
    assert {"train_lfads", "train_pbt_member", "sample_posterior",
            "sample_stitched_posterior"} <= asking
    cpu = profile["default-resources"]["slurm_partition"]
    gpu = profile["set-resources"]["train_lfads"]["slurm_partition"]
    assert gpu != cpu
    given = {rule for rule, res in profile["set-resources"].items() if res.get("gpu")}
    assert given == asking
    for rule in asking:
        assert profile["set-resources"][rule]["slurm_partition"] == gpu, rule
        assert profile["set-resources"][rule]["gpu"] == 1, rule
        assert rule in profile["set-threads"], rule


def test_every_light_rule_follows_the_submit_light_rules_switch():
    bodies = rule_bodies()
    local = {name for name, body in bodies.items() if "localrule:" in body}
    assert {"ingest", "decode_behavior", "summary", "select_pbt_member"} <= local
    for name in local:
        assert "localrule: LOCAL_LIGHT_RULES" in bodies[name], name
    assert not local & gpu_rules()


def test_partitions_and_account_are_written_once():
    text = PROFILE.read_text()
    assert len(re.findall(r"^\s*slurm_partition:", text, flags=re.M)) == 2  # cpu, gpu
    assert len(re.findall(r"^\s*#?\s*slurm_account:", text, flags=re.M)) == 1
    assert len(re.findall(r"^\s*#?\s*gpu_model:", text, flags=re.M)) == 1


def adapted_profile(directory: Path, drop: str | None = None) -> Path:
    """The shipped profile as a lab adapts it, each value changed on its one line: partitions
    `cpu` and `gpu-a100`, account `my_lab`; ``drop`` leaves out the lines of one rule whose
    entries are one line each (set-resources and set-threads)."""
    text = PROFILE.read_text()
    for old, new in [("slurm_partition: gpu ", "slurm_partition: gpu-a100 "),
                     ("# slurm_account: my_lab_account", "slurm_account: my_lab")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    if drop is not None:
        text = re.sub(rf"^  {drop}:.*\n", "", text, flags=re.M)
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(text)
    return directory


def planned_jobs(output: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job a dry run lists."""
    jobs = []
    for rule, block in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", output, re.M):
        line = re.search(r"^    resources: (.*)$", block, re.M)[1]
        jobs.append((rule, dict(item.split("=", 1) for item in line.split(", "))))
    return jobs


def stitched_config(**lfads) -> str:
    """The tiny model on a group of two simulated sessions (with single-session baselines)."""
    config = yaml.safe_load(tiny_config(submit_light_rules=True))
    tiny = config["simulations"].pop("tiny")
    overrides = config["lfads"]["overrides"].pop("tiny")
    config["lfads"]["overrides"] = {name: overrides for name in ["s_a", "s_b", "pair"]}
    config["simulations"]["pair"] = {**tiny, "n_neurons": 40, "sessions": 2,
                                     "neurons_per_session": 24}
    config["lfads"].update(lfads)
    return yaml.safe_dump(config)


STITCHED_SHEET = "dataset\tnwb\tbehavior\tcondition_columns\tfp_bins\tgroup\n" + "".join(
    f"{name}\tresources/simulated/pair_session{k}.nwb\thand_vel\tcondition\t10\tpair\n"
    for k, name in enumerate(["s_a", "s_b"]))


@pytest.mark.workflow
@pytest.mark.parametrize("pbt", [False, True], ids=["training", "pbt"])
def test_a_dry_run_gives_every_job_its_partition_and_the_account(tmp_path, pbt):
    """A stitched group with its baselines (and with PBT): every job that asks for a GPU on the
    GPU partition, every other job, the light rules that config `submit_light_rules` submits
    among them, on the CPU partition; all charged to the account."""
    lfads = {"pbt": {**yaml.safe_load(tiny_config())["lfads"]["pbt"], "enabled": True,
                     "population": 2, "generations": 1}} if pbt else {}
    work = workflow_dir(tmp_path, STITCHED_SHEET, stitched_config(**lfads))
    result = run_snakemake(work, "-n", "--workflow-profile", str(adapted_profile(tmp_path / "p")))
    jobs = planned_jobs(result.stdout)
    for rule, resources in jobs:
        wanted = "gpu-a100" if resources.get("gpu") == "1" else "cpu"
        assert (resources["slurm_partition"], resources["slurm_account"]) == \
            (wanted, "my_lab"), rule
    on_gpu = {rule for rule, resources in jobs if resources.get("gpu") == "1"}
    # with PBT the group trains a population, each session's baseline one default run
    assert on_gpu == {"train_lfads", "sample_posterior", "sample_stitched_posterior",
                      *(["train_pbt_member"] if pbt else [])}
    assert {"ingest", "align_trials", "evaluate", "summary"} <= {rule for rule, _ in jobs}


@pytest.mark.workflow
def test_a_gpu_rule_missing_from_the_profile_stops_the_run(tmp_path):
    """A profile without sample_stitched_posterior (as written before the rule existed) would
    send it to the CPU partition: the run stops before any job, naming the rule."""
    profile = adapted_profile(tmp_path / "p", drop="sample_stitched_posterior")
    assert "sample_stitched_posterior" not in (profile / "config.yaml").read_text()
    work = workflow_dir(tmp_path, STITCHED_SHEET, stitched_config())
    result = run_snakemake(work, "-n", "--workflow-profile", str(profile), check=False)
    assert result.returncode != 0
    assert "ask for a GPU" in result.stdout and "(cpu): sample_stitched_posterior." in \
        result.stdout
    assert not (work / "results").exists()


def test_gpu_rules_on_the_default_partition():
    rules = ["train_lfads", "sample_posterior"]
    assert gpu_rules_on_the_default_partition(rules, {}, {}) == []  # one machine, no partitions
    assert gpu_rules_on_the_default_partition(rules, {"slurm_partition": "cpu"}, {}) == rules[::-1]
    given = {"train_lfads": {"slurm_partition": "gpu"}, "sample_posterior": {"mem_mb": 10}}
    assert gpu_rules_on_the_default_partition(
        rules, {"slurm_partition": "cpu"}, given) == ["sample_posterior"]
