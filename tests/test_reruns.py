"""What a change reruns, provenance of every result, file modes: real Snakemake runs of the tiny
configuration (tests/conftest.py)."""

import re
import stat

import pytest
import torch
import yaml

from conftest import TINY_SHEET, run_snakemake, tiny_config, workflow_dir
from lfads_core.fileio import sha256sum
from lfads_core.provenance import PACKAGES, load_records, trace

pytestmark = pytest.mark.workflow

DATA_RULES = {"simulate", "ingest", "bin_spikes"}
# Rerun whenever the configuration changes at all: the record of the configuration, the target.
ALWAYS = {"dataset_settings", "all"}  # the settings record follows any rerun result


def planned_rules(work, overlay: dict | None = None) -> set[str]:
    """The rules a dry run plans, with ``overlay`` merged over the configuration."""
    args = ["-n"]
    if overlay is not None:
        path = work / "overlay.yaml"
        path.write_text(yaml.safe_dump(overlay))
        args += ["--configfile", str(path)]
    out = run_snakemake(work, *args).stdout
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M)} - {"job"}


def test_an_unchanged_configuration_plans_nothing(tiny_run):
    work, _ = tiny_run
    assert planned_rules(work) == set()


def test_a_window_change_reruns_alignment_onwards_only(tiny_run):
    work, _ = tiny_run
    planned = planned_rules(work, {"defaults": {"window_end_ms": 400}})
    assert {"align_trials", "train_lfads", "sample_posterior", "evaluate"} <= planned
    assert not planned & DATA_RULES


def test_a_bin_width_change_reruns_binning_onwards_but_not_ingest(tiny_run):
    work, _ = tiny_run
    planned = planned_rules(work, {"defaults": {"bin_width_ms": 10}})
    assert {"bin_spikes", "align_trials", "train_lfads", "extract_factors"} <= planned
    assert not planned & {"simulate", "ingest"}


@pytest.mark.parametrize("overlay", [{"lfads": {"device": "cpu"}},
                                     {"lfads": {"execution": {"loops": "native"}}},
                                     {"lfads": {"execution": {"loops": "reference",
                                                              "compile": True}}},
                                     {"lfads": {"posterior_batch_size": 7}}],
                         ids=["device", "C loops", "reference loops", "posterior_batch_size"])
def test_device_execution_or_posterior_batch_changes_retrain_nothing(tiny_run, overlay):
    work, _ = tiny_run
    planned = planned_rules(work, overlay)
    assert "train_lfads" not in planned and not planned & DATA_RULES
    if "posterior_batch_size" not in overlay["lfads"]:
        assert planned <= ALWAYS  # the device and how the loops run change no result
    else:
        assert "sample_posterior" in planned  # the batches set the order of the random draws


def test_an_evaluation_change_reruns_scores_figures_and_summary_only(tiny_run):
    work, _ = tiny_run
    planned = planned_rules(work, {"evaluation": {"n_bootstrap": 50}})
    scoring = {"evaluate", "decode_behavior", "plot_decoding", "plot_metrics", "summary",
               "methods_text"}  # the methods text gives the scores and the resamplings
    assert scoring <= planned and planned <= scoring | ALWAYS


def test_every_result_traces_back_to_the_recording(tiny_run):
    work, _ = tiny_run
    results = work / "results"
    records = load_records(results)
    chain = trace(results / "tiny" / "metrics.tsv", records)
    by_rule = {r["rule"]: r for r in chain}
    assert chain[0]["rule"] == "evaluate" and len(by_rule) == len(chain)
    assert set(by_rule) == {"evaluate", "sample_posterior", "train_lfads", "align_trials",
                            "bin_spikes", "ingest"}
    ingest = by_rule["ingest"]
    assert ingest["inputs"]["nwb"] == {"path": "resources/simulated/tiny.nwb",
                                       "sha256": sha256sum(work / "resources/simulated/tiny.nwb")}
    align = by_rule["align_trials"]
    assert align["settings"]["settings"]["window_end_ms"] == 450
    assert "bin_width_ms" not in align["settings"]["settings"]  # only what the stage reads
    assert by_rule["train_lfads"]["settings"]["lfads"]["model"]["gen_dim"] == 16
    assert set(chain[0]["versions"]) == set(PACKAGES) and all(chain[0]["versions"].values())
    # the summary's copy of the same table is traced to the summary
    assert trace(results / "summary" / "metrics.tsv", records)[0]["rule"] == "summary"
    # every file under results/ is an output of some record with its present checksum ...
    for path in results.rglob("*"):
        if path.is_file() and path.parent.name != "provenance" and path.name != "checkpoint.pt":
            assert trace(path, records), path
    # ... and the checkpoint carries its own: the input's checksum and the settings
    ckpt = torch.load(results / "tiny/lfads/default/checkpoint.pt", weights_only=False)
    assert ckpt["input_sha256"] == sha256sum(results / "tiny/lfads_input.h5")
    assert ckpt["settings"]["model"]["gen_dim"] == 16


def test_files_get_the_users_umask(tiny_run):
    work, _ = tiny_run  # run under umask 022
    modes = {path.relative_to(work): stat.S_IMODE(path.stat().st_mode)
             for path in (work / "results").rglob("*") if path.is_file()}
    assert len(modes) > 40
    assert {path: mode for path, mode in modes.items() if mode != 0o644} == {}


def test_new_data_trains_a_new_model(tmp_path):
    """Change the sheet's seed (random split): alignment writes other trials, and training
    starts afresh instead of resuming the finished checkpoint of the old data."""
    header, row = TINY_SHEET.strip().split("\n")
    sheet = f"{header}\tsplit\tseed\n{row}\trandom\t{{seed}}\n"
    work = workflow_dir(tmp_path, sheet.format(seed=1), tiny_config())
    target = "results/tiny/lfads/default/model.pt"
    run_snakemake(work, target)
    first = torch.load(work / target, weights_only=False)
    (work / "config" / "datasets.tsv").write_text(sheet.format(seed=2))
    run_snakemake(work, target)
    second = torch.load(work / target, weights_only=False)
    assert second["meta"]["input_sha256"] == sha256sum(work / "results/tiny/lfads_input.h5")
    assert second["meta"]["input_sha256"] != first["meta"]["input_sha256"]
    assert not all(torch.equal(first["state_dict"][k], second["state_dict"][k])
                   for k in first["state_dict"])
    log = (work / "logs/tiny/train_lfads_default.log").read_text()
    assert "not resuming" in log and "the input file changed" in log
