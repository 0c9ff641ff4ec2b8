"""The dataset sheet: rows merged over config defaults, validated with errors naming the key."""

import pytest
import yaml

from conftest import ROOT
from lfads_core.errors import InputDataError
from lfads_core.workflow.settings import fill_defaults, load_dataset_sheet, read_schema

DEFAULTS = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["defaults"]
SCHEMA = read_schema(ROOT / "workflow" / "schemas" / "datasets.schema.yaml")


def sheet(tmp_path, text):
    path = tmp_path / "datasets.tsv"
    path.write_text(text)
    return path


def test_rows_override_defaults_and_cells_are_typed(tmp_path):
    path = sheet(tmp_path, "dataset\tnwb\tbin_width_ms\tfp_bins\theldout\tsplit\n"
                           "a\ta.nwb\t10\t4\t0.25\t\n"
                           "b\tb.nwb\t\t\tnone\trandom\n")
    datasets = load_dataset_sheet(path, DEFAULTS, SCHEMA)
    assert datasets["a"]["bin_width_ms"] == 10.0 and datasets["a"]["fp_bins"] == 4
    assert datasets["a"]["heldout"] == 0.25 and datasets["a"]["split"] == "auto"
    assert datasets["b"]["bin_width_ms"] == 5 and datasets["b"]["heldout"] == "none"
    assert datasets["b"]["split"] == "random"


@pytest.mark.parametrize("header,row,field", [
    ("dataset\tnwb\tbin_width_ms", "a\ta.nwb\t-5", "bin_width_ms"),
    ("dataset\tnwb\tbin_width_ms", "a\ta.nwb\tfive", "bin_width_ms"),
    ("dataset\tnwb\tfp_bins", "a\ta.nwb\t2.5", "fp_bins"),
    ("dataset\tnwb\tsplit", "a\ta.nwb\tsometimes", "split"),
    ("dataset\tnwb\theldout", "a\ta.nwb\t1.5", "heldout"),
    ("dataset\tnwb\tvalid_fraction", "a\ta.nwb\t0", "valid_fraction"),
    ("dataset\tnwb\twindow", "a\ta.nwb\t700", "window"),
    ("dataset\tbehavior", "a\thand_vel", "nwb"),
    ("dataset\tnwb", "a b\ta.nwb", "dataset"),
])
def test_bad_cells_name_the_sheet_and_column(tmp_path, header, row, field):
    path = sheet(tmp_path, f"{header}\n{row}\n")
    with pytest.raises(InputDataError) as err:
        load_dataset_sheet(path, DEFAULTS, SCHEMA)
    assert err.value.field == field and str(path) in str(err.value)


def test_bad_default_is_named(tmp_path):
    path = sheet(tmp_path, "dataset\tnwb\na\ta.nwb\n")
    with pytest.raises(InputDataError) as err:
        load_dataset_sheet(path, {**DEFAULTS, "bin_width_ms": 0}, SCHEMA)
    assert err.value.field == "bin_width_ms"
    with pytest.raises(InputDataError) as err:
        load_dataset_sheet(path, {**DEFAULTS, "binwidth": 5}, SCHEMA)
    assert err.value.field == "binwidth"


def test_duplicate_dataset_names(tmp_path):
    path = sheet(tmp_path, "dataset\tnwb\na\ta.nwb\na\tb.nwb\n")
    with pytest.raises(InputDataError, match="unique"):
        load_dataset_sheet(path, DEFAULTS, SCHEMA)


def test_project_sheets_are_valid():
    for name in ("datasets.tsv", "datasets_mc_maze_small.tsv", "continuous.tsv"):
        assert load_dataset_sheet(ROOT / "config" / name, DEFAULTS, SCHEMA)


def test_a_project_configuration_holds_only_what_differs():
    """Keys a project leaves out take the workflow's values, at any depth; blocks keyed by the
    project's own names are taken whole from whichever configuration sets them."""
    workflow = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    project = {"datasets": "config/mine.tsv", "defaults": {"bin_width_ms": 10},
               "simulations": {"tiny": {"system": "lorenz"}},
               "lfads": {"training": {"lr": 0.01},
                         "pbt": {"parameters": {"training.lr": {"low": 1e-3, "high": 1e-2,
                                                                "scale": "log"}}}}}
    config = fill_defaults(project, workflow)
    assert config["datasets"] == "config/mine.tsv"
    assert config["defaults"]["bin_width_ms"] == 10
    assert config["defaults"]["window_start_ms"] == workflow["defaults"]["window_start_ms"]
    assert config["lfads"]["training"]["lr"] == 0.01
    assert config["lfads"]["training"]["max_epochs"] == workflow["lfads"]["training"]["max_epochs"]
    assert config["lfads"]["model"] == workflow["lfads"]["model"]
    assert config["simulations"] == {"tiny": {"system": "lorenz"}}  # no `lorenz` joins it
    assert list(config["lfads"]["pbt"]["parameters"]) == ["training.lr"]
    assert config["lfads"]["pbt"]["population"] == workflow["lfads"]["pbt"]["population"]
    assert config["lfads"]["overrides"] == workflow["lfads"]["overrides"]  # not set: the workflow's
    # the test configuration holds only its simulation and its model's size
    test = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())
    assert set(test) == {"simulations", "lfads"} and set(test["lfads"]) == {"overrides"}
