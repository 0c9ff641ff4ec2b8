"""Parse-time checks: settings against the file's metadata, named before any job runs."""

import numpy as np
import pytest
import yaml

from conftest import ROOT, regular_trials, run_snakemake, workflow_dir, write_test_nwb
from lfads_core.errors import InputDataError
from lfads_core.workflow.preflight import check_dataset, check_datasets, minimum_trials

CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SHEET = "config/datasets.tsv"


def settings_for(nwb, **changes):
    return {**CONFIG["defaults"], "dataset": "lab", "nwb": str(nwb), **changes}


def fails(nwb, field, *words, config=CONFIG, **changes):
    """The check fails naming the sheet, the dataset, the field, the file and ``words``."""
    with pytest.raises(InputDataError) as err:
        check_dataset("lab", settings_for(nwb, **changes), SHEET, config)
    message = str(err.value)
    assert err.value.field == field, message
    for word in (SHEET, "dataset 'lab'", f"field '{field}'", str(nwb), *words):
        assert word in message, (word, message)
    return message


def recording(make_nwb, n_trials=20, name="lab.nwb", **kwargs):
    rng = np.random.default_rng(0)
    trials = kwargs.pop("trials", None)
    if trials is None:
        trials = regular_trials(n_trials, split=(["train"] * 4 + ["val"]) * (n_trials // 5),
                                condition=np.arange(n_trials) % 2)
    stop = trials.stop_time.max()
    spikes = [np.sort(rng.uniform(0, stop, 200)) for _ in range(4)]
    return make_nwb(name, spike_times=spikes, trials=trials, **kwargs)


@pytest.fixture
def lab(make_nwb):
    t = np.arange(0, 25, 1e-3)
    return recording(make_nwb, heldout=[0, 0, 0, 1],
                     behavior={"hand_vel": np.column_stack([np.sin(t), np.cos(t)])})


def test_a_good_file_passes_with_its_counts(lab):
    found = check_dataset("lab", settings_for(lab, behavior="hand_vel"), SHEET, CONFIG)
    assert found == {"n_window": 140, "units": 4, "heldout_units": 1, "train": 16, "valid": 4,
                     "test": 0, "windows_outside_trial": 0, "dropped": {}, "split": "file",
                     "heldout": "file", "no_heldout": None, "trials_table": "trials",
                     "warnings": []}
    found = check_dataset("lab", settings_for(lab, test_fraction=0.2), SHEET, CONFIG)
    assert (found["train"], found["valid"], found["test"]) == (12, 4, 4)


def test_window_end_before_start(lab):
    fails(lab, "window_end_ms", "-300 ms must be after window start -250 ms",
          window_end_ms=-300)


def test_window_not_whole_bins(lab):
    fails(lab, "window_start_ms", "not a whole number of 5 ms bins", window_end_ms=452)


def test_file_split_without_split_column(make_nwb):
    nwb = recording(make_nwb, trials=regular_trials(10))
    fails(nwb, "split", "no 'split' column", "random", split="file")


def test_trial_filter_keeping_nothing(lab):
    message = fails(lab, "trial_filter", "keep none of the 20 trials",
                    trial_filter="condition > 5")
    assert "condition > 5" in message


def test_bad_trial_query_names_the_columns(lab):
    fails(lab, "trial_filter", "columns are", trial_filter="no_such > 1")


def test_unit_filter_keeping_nothing(lab):
    fails(lab, "unit_filter", "no units left", unit_filter="id > 10")


def test_missing_alignment_and_condition_columns(lab):
    fails(lab, "trials.go_cue", "alignment column missing", align_event="go_cue")
    fails(lab, "condition_columns", "no column 'target'", condition_columns="target")


def test_missing_behaviour_lists_the_series_there(lab):
    message = fails(lab, "processing/behavior/hand_pos", "'hand_vel'", "setting 'behavior'",
                    behavior="hand_pos")
    assert "series there are ['hand_vel']" in message


def test_container_with_one_series_resolves(tmp_path):
    """A Position container holding one SpatialSeries: either name works, in the check and in
    ingestion; the error lists container/series."""
    import datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.behavior import Position

    from lfads_core.nwb.ingest import IngestSettings, ingest_nwb

    nwb = NWBFile(session_description="position", identifier="pos",
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    for start in np.arange(10) * 1.2 + 0.1:
        nwb.add_trial(start_time=start, stop_time=start + 1.0)
    nwb.add_trial_column("move_onset_time", "onset", data=list(np.arange(10) * 1.2 + 0.4))
    nwb.add_unit(spike_times=np.linspace(0.1, 11.0, 300))
    position = Position(name="Position")
    position.create_spatial_series(name="hand_position", data=np.ones((12000, 2)),
                                   reference_frame="screen", rate=1000.0, starting_time=0.0)
    nwb.create_processing_module("behavior", "behaviour").add(position)
    path = tmp_path / "pos.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    for name in ("Position", "hand_position", "Position/hand_position"):
        check_dataset("lab", settings_for(path, behavior=name, split="random"), SHEET, CONFIG)
        summary = ingest_nwb(path, tmp_path / name.replace("/", "_") / "s.h5",
                             IngestSettings(behavior=[name]))
        assert summary["behavior"][name]["dims"] == 2
    message = fails(path, "processing/behavior/hand_vel", behavior="hand_vel", split="random")
    assert "['Position/hand_position']" in message


def test_heldout_file_holding_out_every_unit(make_nwb):
    nwb = recording(make_nwb, heldout=[1, 1, 1, 1])
    fails(nwb, "heldout", "holds out all 4 kept units")


def test_heldout_fraction_holding_out_every_unit(lab):
    fails(lab, "heldout", "holds out all of them", heldout=0.9)


def test_too_few_trials_names_the_stage(make_nwb):
    nwb = recording(make_nwb, trials=regular_trials(2, split=["train", "train"]))
    fails(nwb, "split", "train_lfads needs at least 1 valid trials for the validation loss",
          "at most 2 train, 0 valid and 0 test")
    message = fails(nwb, "valid_fraction", "train_lfads", split="random")
    assert "dropped: none" in message


def test_decoding_needs_training_trials_for_its_inner_folds(make_nwb):
    t = np.arange(0, 6, 1e-3)
    trials = regular_trials(4, split=["train", "train", "val", "val"])
    nwb = recording(make_nwb, trials=trials, behavior={"hand_vel": np.sin(t)[:, None]})
    check_dataset("lab", settings_for(nwb), SHEET, CONFIG)  # no behaviour: 2 training trials suffice
    fails(nwb, "split", "decode_behavior needs at least 3 train trials",
          "evaluation.decoding.inner_folds", behavior="hand_vel")


def test_test_trials_asked_for_but_none_left(make_nwb):
    nwb = recording(make_nwb, trials=regular_trials(4, split=["train", "val"] * 2))
    fails(nwb, "test_fraction", "evaluate needs at least 1 test trials", test_fraction=0.05)


def test_minimum_trials_follow_the_decoding_config():
    config = {"evaluation": {"decoding": {"inner_folds": 3}}}
    needs = {(stage, which): n for stage, which, n, _ in
             minimum_trials({"behavior": "hand_vel"}, config)}
    assert needs[("decode_behavior", "train")] == 3 and needs[("train_lfads", "valid")] == 1
    assert ("evaluate", "test") not in needs
    config["evaluation"]["decoding"] = {"inner_folds": 4}
    needs = {(s, w): n for s, w, n, _ in minimum_trials({"behavior": "x", "test_fraction": 0.2}, config)}
    assert needs[("decode_behavior", "train")] == 4 and needs[("evaluate", "test")] == 1
    assert ("decode_behavior", "train") not in {(s, w) for s, w, _, _ in
                                                 minimum_trials({"behavior": ""}, config)}


def test_windows_leaving_every_trial_can_be_dropped(lab):
    found = check_dataset("lab", settings_for(lab, window_end_ms=1200), SHEET, CONFIG)
    assert found["windows_outside_trial"] == 20
    message = fails(lab, "outside_trial", "dropped: {'window outside trial': 20}",
                    window_end_ms=1200, outside_trial="drop")
    assert "1200 ms" in message


def test_pending_simulation_gets_the_settings_checks_only(tmp_path):
    datasets = {"sim": settings_for("resources/simulated/none_yet.nwb")}
    assert check_datasets(datasets, SHEET, CONFIG) == {"sim": {"n_window": 140}}
    datasets["sim"]["window_end_ms"] = -500
    with pytest.raises(InputDataError, match="field 'window_end_ms'"):
        check_datasets(datasets, SHEET, CONFIG)


def test_checks_read_metadata_only(make_nwb, tmp_path):
    """Spike times whose compressed chunks are corrupt pass the parse-time check (it never
    reads them) and fail ingestion with an error naming the file and the field."""
    import h5py

    from conftest import replace_dataset
    from lfads_core.nwb.ingest import IngestSettings, ingest_nwb

    nwb = recording(make_nwb, n_trials=10)
    with h5py.File(nwb, "r") as f:
        times = f["units/spike_times"][()]
    replace_dataset(nwb, "units/spike_times", times, chunks=(100,), compression="gzip")
    with h5py.File(nwb, "r") as f:
        info = f["units/spike_times"].id.get_chunk_info(3)
    with open(nwb, "r+b") as raw:
        raw.seek(info.byte_offset + 10)
        raw.write(b"\xff" * (info.size - 20))
    check_dataset("lab", settings_for(nwb, split="random"), SHEET, CONFIG)
    out = tmp_path / "out" / "session.h5"
    with pytest.raises(InputDataError) as err:
        ingest_nwb(nwb, out, IngestSettings())
    assert err.value.field == "units.spike_times" and "cannot be read" in str(err.value)
    assert str(nwb) in str(err.value) and not out.exists()


# --- the same checks through Snakemake, at parse time ---------------------------------------

@pytest.mark.workflow
def test_workflow_names_a_bad_setting_before_any_job(tmp_path):
    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    recording_path = write_test_nwb(data / "lab.nwb", spike_times=[[0.5, 1.5]],
                                    trials=regular_trials(10))
    sheet = f"dataset\tnwb\tsplit\nlab\t{recording_path}\tfile\n"
    work = workflow_dir(tmp_path, sheet)
    result = run_snakemake(work, check=False)
    assert result.returncode != 0
    assert "config/datasets.tsv (dataset 'lab'): field 'split'" in result.stdout
    assert str(recording_path) in result.stdout
    assert "Traceback" not in result.stdout and 'File "' not in result.stdout
    assert not (work / "results").exists() and not (work / "logs").exists()
