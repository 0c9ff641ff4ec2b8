"""What the workflow says when it starts, before any job (dry runs): one line per dataset and
the training jobs, warnings, and errors in one voice: the file a bad key came from, its path,
the allowed values, no schema dump and no traceback."""

import pytest
import yaml

from conftest import TINY_SHEET, run_snakemake, tiny_config, workflow_dir

pytestmark = pytest.mark.workflow


def dry_run(tmp_path, *args, sheet=TINY_SHEET, config=None, check=True):
    work = workflow_dir(tmp_path, sheet, config if config is not None else tiny_config())
    return work, run_snakemake(work, "-n", *args, check=check)


def fails(result, *named):
    assert result.returncode != 0
    text = result.stdout
    assert all(word in text for word in named), text[-2000:]
    assert "Traceback" not in text and "Failed validating" not in text and "$schema" not in text
    return text


def test_one_line_per_dataset_and_the_training_jobs(tmp_path):
    _, result = dry_run(tmp_path)
    assert "tiny: simulated by the first job" in result.stdout
    assert "training: 1 job (one run for each of tiny)" in result.stdout


def test_an_overlay_typo_names_the_overlay_and_the_key(tmp_path):
    work = workflow_dir(tmp_path, TINY_SHEET, tiny_config())
    (work / "overlay.yaml").write_text("lfads:\n  trainin:\n    lr: 0.01\n")
    result = run_snakemake(work, "-n", "--configfile", str(work / "overlay.yaml"), check=False)
    fails(result, "overlay.yaml: field 'lfads.trainin': unknown key (did you mean 'training'?)")


def test_a_bad_value_names_the_allowed_ones(tmp_path):
    work = workflow_dir(tmp_path, TINY_SHEET, tiny_config())
    result = run_snakemake(work, "-n", "--config", "lfads={'device': 'gpu0'}", check=False)
    fails(result, "--config (command line): field 'lfads.device'", "'gpu0' is not allowed",
          "auto|cpu|mps|cuda")
    config = yaml.safe_load(tiny_config())
    config["lfads"]["stitching"] = {"single_session_baseline": "always"}
    _, result = dry_run(tmp_path / "b", config=yaml.safe_dump(config), check=False)
    fails(result, "config/config.yaml: field 'lfads.stitching.single_session_baseline'",
          "'default', 'selection', 'none'")


def test_an_override_for_no_dataset_names_those_there_are(tmp_path):
    config = yaml.safe_load(tiny_config())
    config["lfads"]["overrides"]["tinny"] = {"training": {"lr": 0.01}}
    _, result = dry_run(tmp_path, config=yaml.safe_dump(config), check=False)
    fails(result, "field 'lfads.overrides.tinny'", "did you mean 'tiny'?", "['tiny']")


def test_an_unknown_sheet_column_is_named_without_a_traceback(tmp_path):
    sheet = "dataset\tnwb\twindow_ms\ntiny\tresources/simulated/tiny.nwb\t700\n"
    _, result = dry_run(tmp_path, sheet=sheet, check=False)
    fails(result, "config/datasets.tsv: field 'window_ms': unknown column")
    assert "common.smk" not in result.stdout and "settings.py" not in result.stdout


def test_stitching_with_pbt_says_what_trains(tmp_path):
    sheet = ("dataset\tnwb\tgroup\nsa\tresources/simulated/multi_session0.nwb\tg\n"
             "sb\tresources/simulated/multi_session1.nwb\tg\n")
    config = yaml.safe_load(tiny_config())
    config["simulations"] = {"multi": {**config["simulations"]["tiny"], "sessions": 2}}
    config["lfads"]["overrides"] = {}
    config["lfads"]["model"]["readin_dim"] = 8
    config["lfads"]["pbt"].update(enabled=True, population=2, generations=3, epochs_per_generation=1)
    _, result = dry_run(tmp_path, sheet=sheet, config=yaml.safe_dump(config))
    assert "g: one stitched model of 2 sessions (sa, sb)" in result.stdout
    assert ("training: 8 jobs (PBT 2 members x 3 generations = 6 jobs for each of g; "
            "one run for each of sa, sb)") in result.stdout
