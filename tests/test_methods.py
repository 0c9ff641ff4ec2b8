"""The methods text written from a run's settings and records, and the citation file."""

from __future__ import annotations

import re
import tomllib

import pandas as pd
import pytest
import yaml

from conftest import CONFIG, ROOT
from lfads_core.workflow.methods import (RunRecord, collect_versions, headline_split,
                                         methods_markdown)

SETTINGS = {**CONFIG["defaults"], "dataset": "maze", "nwb": "data/maze.nwb",
            "behavior": "hand_vel", "condition_columns": "trial_type", "test_fraction": 0.2}
METADATA = {"bin_width_s": 0.005, "window_start_offset_s": -0.25, "window_end_offset_s": 0.45,
            "fp_bins": 0,
            "align_event": "move_onset_time", "source": "data/maze.nwb",
            "source_sha256": "ab" * 32, "behavior_columns": ["hand_vel_x", "hand_vel_y"],
            "conditions": {"columns": ["trial_type"], "values": [[1], [2], [3]]},
            "split_mode": "file", "heldout_mode": "file"}  # as alignment resolves ``auto``
INGEST = {"units_in_file": 182, "units_kept": 180, "unit_drop_reasons": {"no spikes": 2},
          "trials_in_file": 100}
ALIGNMENT = {"trials_in_file": 100, "train_trials": 60, "valid_trials": 16, "test_trials": 19,
             "dropped_trials": 5, "drop_reasons": {"move_onset_time is NaN": 5},
             "n_bins_window": 140, "fp_bins": 0, "n_heldin": 137, "n_heldout": 43,
             "windows_outside_trial": 0}
VERSIONS = {"lfads-core": ["0.1.0"], "torch": ["2.13.0+cu128", "2.13.0+cpu"],
            "numpy": ["2.4.6"], "h5py": ["3.16.0"], "pynwb": ["4.2.0"], "snakemake": ["9.27.1"]}


def training(**changes) -> dict:
    lfads = CONFIG["lfads"]
    return {"model": dict(lfads["model"], readin_dim=None), "training": dict(lfads["training"]),
            "device": "cuda:0", "stop_reason": "early stopping", "best_epoch": 212,
            "best_valid_loss_smooth": 1234.5678, "epochs_run": 413, **changes}


def metrics(splits=("valid", "test")) -> pd.DataFrame:
    rows = []
    for split in splits:
        seen = "none" if split == "test" else "early stopping; learning-rate plateau"
        n = 19 if split == "test" else 16
        for method, metric, value, err in (("lfads", "co-bps", 0.3456, 0.012),
                                           ("lfads", "vel R2", 0.9012, 0.004),
                                           ("lfads", "psth R2", 0.71, None),
                                           ("smoothing", "co-bps", 0.2101, 0.01)):
            rows.append({"dataset": "maze", "method": method, "metric": metric, "split": split,
                         "value": value + (0.01 if split == "valid" else 0), "err": err,
                         "n_trials": n, "seen_by": seen})
    return pd.DataFrame(rows)


def record(**changes) -> RunRecord:
    base = dict(dataset="maze", settings=SETTINGS, ingest=INGEST, alignment=ALIGNMENT,
                metadata=METADATA, training=training(), metrics=metrics(),
                evaluation=CONFIG["evaluation"],
                selections=["early stopping", "learning-rate plateau"], versions=VERSIONS,
                decoding=pd.DataFrame({"dataset": "maze",
                                       "method": ["lfads_rates", "smoothed_spikes"],
                                       "target": "all", "split": "test", "r2": [0.88, 0.61],
                                       "r2_sem": [0.01, 0.03], "n_trials": 19, "seen_by": "none"}))
    base.update(changes)
    return RunRecord(**base)


def test_a_run_with_test_trials():
    text = methods_markdown(record())
    assert text.startswith("# Methods: maze\n")
    for words in ["maze.nwb", "ab" * 32, "180 of its 182 units were kept (left out: 2 no spikes)",
                  "43 of them were held out", "137 held-in units", "5 ms bins",
                  "from -250 to 450 ms around its `move_onset_time`", "140 bins",
                  "60 training, 16 validation and 19 test trials",
                  "5 were left out (5 move_onset_time is NaN)", "3 combinations of `trial_type`",
                  "`hand_vel_x` and `hand_vel_y`", "generator GRU of 100 units",
                  "40 factors", "controller GRU of 80 units inferring 4 inputs",
                  "an autoregressive prior", "a Poisson observation model",
                  "coordinated dropout 0.3", "at most 500 epochs on a CUDA GPU (cuda:0)",
                  "It ran 413 epochs (early stopping); the weights of epoch 212",
                  "1234.6 nats per trial", "the test trials were read by no training or "
                  "selection step", "the choice of the kept epoch and early stopping and the "
                  "learning-rate schedule", "posterior means over 50 samples",
                  "Scores are on the 19 test trials, which no training or selection step saw",
                  "200 resamplings", "50 ms Gaussian kernel",
                  "LFADS: co-bps 0.346 ± 0.012, vel R^2 0.901 ± 0.004, PSTH R^2 0.710",
                  "spike smoothing: co-bps 0.210 ± 0.010",
                  "LFADS rates 0.880 ± 0.010; smoothed spikes 0.610 ± 0.030",
                  "lfads_core 0.1.0, PyTorch 2.13.0+cu128 / 2.13.0+cpu, NumPy 2.4.6",
                  "Snakemake 9.27.1", "Sussillo D", "Pandarinath C, O'Shea DJ",
                  "arXiv:2109.04463"]:
        assert words in text, words
    assert "Jaderberg" not in text and "Keshtkaran" not in text  # no PBT here
    assert "forward prediction" not in text  # no forward-prediction bins


def test_trials_from_another_table_are_named_with_it():
    default = methods_markdown(record())
    assert "Of the 100 trials, 95 were modelled" in default
    assert "taken from the trials table's `split` column" in default
    text = methods_markdown(record(metadata={**METADATA, "trials_table": "encoding_table"},
                                   ingest={**INGEST, "trials_table": "encoding_table"}))
    assert ("Of the 100 trials of the recording's `encoding_table` table "
            "(intervals/encoding_table), 95 were modelled") in text
    assert "taken from the `encoding_table` table's `split` column" in text
    assert "trials table" not in text


def test_without_test_trials_the_scores_are_named_optimistic():
    r = record(metrics=metrics(splits=("valid",)), decoding=None,
               alignment={**ALIGNMENT, "test_trials": 0, "train_trials": 79})
    assert headline_split(r.metrics) == "valid"
    text = methods_markdown(r)
    assert "There were no test trials" in text
    assert "Scores are on the 16 validation trials, which the choice of the kept epoch and " \
        "early stopping and the learning-rate schedule read, so the scores are optimistic" in text
    assert "Results (validation trials): LFADS: co-bps 0.356" in text
    assert "decoded" not in text


def test_population_based_training_is_described_and_cited():
    pbt = dict(CONFIG["lfads"]["pbt"], enabled=True, population=4, generations=8,
               epochs_per_generation=25)
    chosen = training(method="pbt", generation=7, member=2, founder=0, valid_loss_smooth=987.65,
                      settings={"training.lr": 0.0031, "model.dropout_rate": 0.12})
    table = pd.DataFrame({"generation": [7, 7], "member": [1, 2], "selected": [False, True]})
    text = methods_markdown(record(training=chosen, search={"method": "pbt", "config": pbt,
                                                            "table": table},
                                   selections=["early stopping", "learning-rate plateau",
                                               "PBT selection"]))
    for words in ["population-based training (Jaderberg et al. 2017) as in AutoLFADS "
                  "(Keshtkaran et al. 2022)", "4 models trained side by side",
                  "8 generations of 25 epochs", "`training.lr` 0.0001-0.01 (log)",
                  "the model with the highest smoothed validation loss copied the weights and "
                  "settings of the one with the lowest",
                  "one of 0.8 and 1.25", "987.65 nats per trial",
                  "training.lr = 0.0031, model.dropout_rate = 0.12",
                  "population-based training's choices of models",
                  "Jaderberg M, Dalibard V", "Keshtkaran MR, Sedler AR"]:
        assert words in text, words
    assert "It ran 413 epochs" not in text


def test_a_sweep_names_the_chosen_run():
    sweep = {"method": "grid", "parameters": {"training.lr": [0.002, 0.004]}}
    table = pd.DataFrame({"run": ["sweep_000", "sweep_001"], "training.lr": [0.002, 0.004],
                          "best_valid_loss_smooth": [12.0, 11.0], "selected": [False, True]})
    text = methods_markdown(record(search={"method": "sweep", "config": sweep, "table": table}))
    assert "2 such models were trained over a grid sweep of `training.lr`" in text
    assert "(sweep_001: training.lr = 0.004)" in text


def test_a_stitched_session_and_random_held_out_units():
    settings = {**SETTINGS, "heldout": "auto", "split": "auto", "seed": 3}
    metadata = {**METADATA, "split_mode": "random", "heldout_mode": "0.25"}
    model = dict(training()["model"], readin_dim=40)
    text = methods_markdown(record(settings=settings, metadata=metadata,
                                   training=training(model=model),
                                   group={"name": "monkey", "sessions": ["s1", "s2", "maze"]}))
    assert "chosen at random, 25% of the units (seed 3)" in text
    assert "drawn at random (seed 3; validation fraction 0.2, test fraction 0.2)" in text
    assert "One model was trained on the 3 sessions of the group `monkey` (`s1`, `s2` and " \
        "`maze`; stitching" in text
    assert "read-in to 40 dimensions and read-out, initialised from principal components" in text
    model = dict(model, readin_dim=None)  # the group's fewest held-in units
    text = methods_markdown(record(training=training(model=model),
                                   group={"name": "monkey", "sessions": ["s1", "maze"]}))
    assert "read-in to as many dimensions as the fewest held-in units of the sessions" in text


def test_versions_are_collected_from_the_records():
    records = [{"versions": {"torch": "2.13.0+cpu", "numpy": "2.4.6"}},
               {"versions": {"torch": "2.13.0+cu128", "numpy": "2.4.6", "pynwb": None}}]
    assert collect_versions(records) == {"torch": ["2.13.0+cpu", "2.13.0+cu128"],
                                         "numpy": ["2.4.6"]}


def test_the_citation_file_describes_this_version_and_its_references():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(cff)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert cff["version"] == version and cff["type"] == "software" and cff["license"] == "MIT"
    found = {ident["value"] for ref in cff["references"]
             for ident in ref.get("identifiers", [])} | \
        {ref.get("doi") for ref in cff["references"]}
    for expected in ["10.48550/arXiv.1608.06315", "10.1038/s41592-018-0109-9",
                     "10.1038/s41592-022-01675-0", "10.48550/arXiv.1711.09846",
                     "10.48550/arXiv.2109.04463"]:
        assert expected in found, expected
    for ref in cff["references"]:
        assert {"type", "title", "authors", "year"} <= set(ref)
        doi = ref.get("doi")
        assert doi is None or re.match(r"^10\.\d{4,9}/\S+$", doi)
    readme = (ROOT / "README.md").read_text()
    assert "## How to cite" in readme and "CITATION.cff" in readme


@pytest.mark.parametrize("key", ["lfads", "lfads2018", "autolfads", "pbt", "nlb"])
def test_the_methods_references_match_the_citation_file(key):
    from lfads_core.workflow.methods import REFERENCES

    cff = (ROOT / "CITATION.cff").read_text()
    year = re.search(r"\((\d{4})\)", REFERENCES[key]).group(1)
    first_author = REFERENCES[key].split(" ", 1)[0]
    assert f"family-names: {first_author}" in cff and f"year: {year}" in cff
