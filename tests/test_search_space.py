"""Search ranges (lfads_core.workflow.search_space): one grammar, one parser and one set of
draws for sweeps and PBT, its errors in the words of the other configuration errors, and the
same draws as before the two shared it."""

import dataclasses

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY_SHEET, run_snakemake, tiny_config, workflow_dir
from lfads_core.errors import InputDataError
from lfads_core.workflow.pbt import explore, generation_rng, initial_plan, pbt_settings
from lfads_core.workflow.search_space import SearchRange, check_search_ranges, parse_range
from lfads_core.workflow.sweep import sweep_points

WHERE = "lfads.sweep.parameters.training.lr"
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())

# The seven ranges of config/config.yaml's lfads.pbt.parameters, written out so that the draws
# below stay those of these ranges whatever the defaults become.
PBT_RANGES = {
    "training.lr": {"low": 1.0e-4, "high": 1.0e-2, "scale": "log"},
    "model.dropout_rate": {"low": 0.0, "high": 0.6, "scale": "linear"},
    "model.cd_rate": {"low": 0.01, "high": 0.7, "scale": "linear"},
    "training.l2_gen_scale": {"low": 10.0, "high": 10000.0, "scale": "log"},
    "training.l2_con_scale": {"low": 10.0, "high": 10000.0, "scale": "log"},
    "training.kl_ic_scale": {"low": 0.01, "high": 10.0, "scale": "log"},
    "training.kl_co_scale": {"low": 0.01, "high": 10.0, "scale": "log"},
}
PBT = {"enabled": True, "population": 3, "epochs_per_generation": 1, "generations": 2, "seed": 0,
       "exploit_fraction": 0.25, "explore_factors": [0.8, 1.25], "resample_probability": 0.5,
       "configured_member": False, "parameters": PBT_RANGES}
SWEEP = {"method": "random", "n_runs": 4, "seed": 7, "parameters": {
    "training.lr": {"low": 1e-4, "high": 1e-2, "scale": "log"},
    "model.dropout_rate": {"low": 0.0, "high": 0.3, "scale": "linear"},
    "model.gen_dim": {"low": 16, "high": 64, "scale": "linear"},
    "training.l2_gen_scale": {"low": 10, "high": 3000, "scale": "log"},
    "model.co_prior": ["ar1", "gaussian"]}}

# Computed by the sweep and PBT code before they shared the search ranges (the sweep's ranges
# then written {low, high, log: true|false}), for SWEEP and PBT above.
OLD_SWEEP = {
    "sweep_000": {"model": {"dropout_rate": 0.26916414029087266, "gen_dim": 44, "co_prior": "gaussian"},
                  "training": {"lr": 0.0017790613846114542, "l2_gen_scale": 36}},
    "sweep_001": {"model": {"dropout_rate": 0.26206603361887854, "gen_dim": 60, "co_prior": "ar1"},
                  "training": {"lr": 0.0003984121459627713, "l2_gen_scale": 1082}},
    "sweep_002": {"model": {"dropout_rate": 0.14038048585311622, "gen_dim": 56, "co_prior": "ar1"},
                  "training": {"lr": 0.003927704963152217, "l2_gen_scale": 49}},
    "sweep_003": {"model": {"dropout_rate": 0.13352289176479396, "gen_dim": 39, "co_prior": "gaussian"},
                  "training": {"lr": 0.0003233993742943506, "l2_gen_scale": 235}},
}
OLD_PBT_GENERATION_0 = [
    {"training.lr": 0.0018789852661499496, "model.dropout_rate": 0.16187202825832217,
     "model.cd_rate": 0.038271731515974336, "training.l2_gen_scale": 11.20941392828579,
     "training.l2_con_scale": 2753.028565072985, "training.kl_ic_scale": 5.473520283788642,
     "training.kl_co_scale": 0.6605524798050314},
    {"training.lr": 0.0028773528450070835, "model.dropout_rate": 0.3261749948792537,
     "model.cd_rate": 0.65519997241356, "training.l2_gen_scale": 2802.597061804133,
     "training.l2_con_scale": 10.19096946938244, "training.kl_ic_scale": 3.734331170867695,
     "training.kl_co_scale": 0.012611209081195616},
    {"training.lr": 0.002879458958733985, "model.dropout_rate": 0.10539337236153541,
     "model.cd_rate": 0.6055934564214217, "training.l2_gen_scale": 421.09846735288517,
     "training.l2_con_scale": 79.27489429502099, "training.kl_ic_scale": 0.1853794817028583,
     "training.kl_co_scale": 0.012160712284471822},
]
# explore() of members 0 and 1 of OLD_PBT_GENERATION_0, in turn, with generation 1's generator
OLD_PBT_EXPLORED = [
    {"training.lr": 0.002348731582687437, "model.dropout_rate": 0.2023400353229027,
     "model.cd_rate": 0.04783966439496792, "training.l2_gen_scale": 2309.0673137284957,
     "training.l2_con_scale": 1503.727769919478, "training.kl_ic_scale": 4.378816227030914,
     "training.kl_co_scale": 0.021130811518380307},
    {"training.lr": 0.0033373715557669854, "model.dropout_rate": 0.260939995903403,
     "model.cd_rate": 0.524159977930848, "training.l2_gen_scale": 12.597565466621408,
     "training.l2_con_scale": 61.76639705794435, "training.kl_ic_scale": 2.987464936694156,
     "training.kl_co_scale": 3.130621479188653},
]


def reason(spec, where=WHERE) -> str:
    with pytest.raises(InputDataError) as err:
        parse_range(spec, where)
    assert err.value.path == "config"
    return err.value.field, err.value.reason


# --- the grammar ---------------------------------------------------------------------------

def test_a_range_is_low_high_and_scale():
    r = parse_range({"low": 1e-4, "high": 1e-2, "scale": "log"}, WHERE)
    assert r == SearchRange(1e-4, 1e-2, "log") and not r.integer
    r = parse_range({"scale": "linear", "high": 64, "low": 16}, WHERE)
    assert r == SearchRange(16, 64, "linear") and r.integer
    assert not parse_range({"low": 16, "high": 64.0, "scale": "linear"}, WHERE).integer
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.low = 0


def test_a_missing_scale_says_which_line_to_write():
    field, why = reason({"low": 1e-4, "high": 1e-2})
    assert field == WHERE
    assert why == ("a range needs its scale: add `scale: log` or `scale: linear` (log-uniform "
                   "or uniform draws)")


@pytest.mark.parametrize("old, new", [(True, "scale: log"), (False, "scale: linear")])
def test_the_old_log_form_says_what_to_write_instead(old, new):
    field, why = reason({"low": 1e-4, "high": 1e-2, "log": old})
    assert field == WHERE
    assert why.startswith(f"`log:` is the old form of a range's scale; replace "
                          f"`log: {str(old).lower()}` with `{new}`.")
    assert "{low: ..., high: ..., scale: linear|log}" in why


def test_the_old_log_form_beside_a_scale_is_to_be_removed():
    _, why = reason({"low": 1e-4, "high": 1e-2, "scale": "log", "log": True})
    assert "remove `log: true` (the range already says `scale: log`)" in why


@pytest.mark.parametrize("low, high", [(0.1, 0.1), (1.0, 0.1)])
def test_low_must_be_below_high(low, high):
    _, why = reason({"low": low, "high": high, "scale": "linear"})
    assert why.startswith(f"a range needs low < high, got low={low!r}, high={high!r}")


@pytest.mark.parametrize("low", [0, 0.0, -1e-3])
def test_a_log_range_needs_a_positive_low(low):
    _, why = reason({"low": low, "high": 1.0, "scale": "log"})
    assert why.startswith(f"a log range needs low > 0, got low={low!r}")
    assert parse_range({"low": low, "high": 1.0, "scale": "linear"}, WHERE).low == low


@pytest.mark.parametrize("spec, field, words", [
    ({"low": 1, "high": 2, "scale": "uniform"}, WHERE + ".scale",
     "'uniform' is not allowed: must be one of 'linear', 'log'"),
    ({"low": 1, "high": 2, "scale": "log", "step": 1}, WHERE, "unknown key 'step' in a range"),
    ({"high": 2, "scale": "log"}, WHERE, "a range needs `low`"),
    ({"low": "1e-3", "high": 2, "scale": "log"}, WHERE, "low and high must be numbers"),
    ({"low": True, "high": 2, "scale": "linear"}, WHERE, "low and high must be numbers"),
    ({"low": 1, "high": float("inf"), "scale": "linear"}, WHERE, "low and high must be numbers"),
    ([1, 2], WHERE, "a range is {low: ..., high: ..., scale: linear|log}"),
])
def test_other_malformed_ranges_are_named(spec, field, words):
    got_field, why = reason(spec)
    assert got_field == field and words in why


# --- sweeps and PBT share the parser and the draws -----------------------------------------

@pytest.mark.parametrize("spec", [
    {"low": 1e-4, "high": 1e-2},
    {"low": 1e-4, "high": 1e-2, "log": True},
    {"low": 1e-2, "high": 1e-4, "scale": "log"},
    {"low": 0.0, "high": 1e-2, "scale": "log"},
])
def test_sweeps_and_pbt_refuse_a_range_in_the_same_words(spec):
    with pytest.raises(InputDataError) as swept:
        sweep_points({"method": "random", "n_runs": 2, "parameters": {"training.lr": spec}})
    with pytest.raises(InputDataError) as pbt:
        pbt_settings({**PBT, "parameters": {"training.lr": spec}})
    assert swept.value.field == "lfads.sweep.parameters.training.lr"
    assert pbt.value.field == "lfads.pbt.parameters.training.lr"
    assert swept.value.reason == pbt.value.reason == reason(spec)[1]


def test_both_hold_the_same_search_range():
    settings = pbt_settings(PBT)
    assert all(type(r) is SearchRange for r in settings.parameters.values())
    assert settings.parameters["training.lr"] == parse_range(PBT_RANGES["training.lr"], WHERE)


def test_sweep_draws_are_those_of_before():
    assert sweep_points(SWEEP) == OLD_SWEEP
    types = {k: type(v) for run in sweep_points(SWEEP).values() for part in run.values()
             for k, v in part.items()}
    assert types["gen_dim"] is int and types["l2_gen_scale"] is int and types["lr"] is float


def test_pbt_draws_and_perturbations_are_those_of_before():
    settings = pbt_settings(PBT)
    plan = initial_plan(settings)
    assert [e["settings"] for e in plan] == OLD_PBT_GENERATION_0
    rng = generation_rng(settings, 1)
    assert [explore(plan[m]["settings"], settings, rng) for m in (0, 1)] == OLD_PBT_EXPLORED


def old_sweep_draw(low, high, log, rng):
    """The sweep's draw from a range as it was written before the shared module."""
    integer = isinstance(low, int) and isinstance(high, int)
    if log:
        value = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return int(round(value)) if integer else value
    return int(rng.integers(low, high + 1)) if integer else float(rng.uniform(low, high))


def old_pbt_draw(low, high, log, rng):
    """PBT's draw from a range as it was written before the shared module (float ends)."""
    low, high = float(low), float(high)
    if log:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(rng.uniform(low, high))


@pytest.mark.parametrize("low, high, log", [(1e-4, 1e-2, True), (0.0, 0.3, False),
                                            (16, 64, False), (10, 3000, True), (-2.5, 7, False)])
def test_draws_equal_the_old_formula_bit_for_bit(low, high, log):
    r = parse_range({"low": low, "high": high, "scale": "log" if log else "linear"}, WHERE)
    for seed in range(5):
        old, new = np.random.default_rng(seed), np.random.default_rng(seed)
        swept = [r.draw(new, integers=True) for _ in range(50)]
        before = [old_sweep_draw(low, high, log, old) for _ in range(50)]
        assert [(type(v), v) for v in swept] == [(type(v), v) for v in before]
        old, new = np.random.default_rng(seed), np.random.default_rng(seed)
        continuous = [r.draw(new) for _ in range(50)]  # PBT's: never whole numbers
        assert continuous == [old_pbt_draw(low, high, log, old) for _ in range(50)]
        assert all(type(v) is float and low <= v <= high for v in continuous)


def test_clip_and_perturb():
    r = SearchRange(10.0, 10000.0, "log")
    assert r.clip(0.0) == 10.0 and r.clip(1e6) == 10000.0 and r.clip(50) == 50.0
    assert r.perturb(100.0, 1.25) == 125.0 and r.perturb(9000.0, 1.25) == 10000.0
    assert r.perturb(11.0, 0.8) == 10.0


# --- the configuration: schema and start-up -------------------------------------------------

def test_one_schema_definition_serves_sweeps_and_pbt():
    lfads = SCHEMA["properties"]["lfads"]["properties"]
    sweep = lfads["sweep"]["properties"]["parameters"]["additionalProperties"]["oneOf"]
    pbt = lfads["pbt"]["properties"]["parameters"]["additionalProperties"]
    assert {"$ref": "#/$defs/search_range"} in sweep and pbt == {"$ref": "#/$defs/search_range"}
    definition = SCHEMA["$defs"]["search_range"]
    assert set(definition["properties"]) == {"low", "high", "scale"}
    assert definition["required"] == ["low", "high", "scale"]
    assert definition["properties"]["scale"]["enum"] == ["linear", "log"]


def test_every_shipped_configuration_writes_the_grammar():
    configs = [*(ROOT / "config").glob("*.yaml"), *(ROOT / ".test" / "config").glob("*.yaml")]
    assert configs
    for path in configs:
        check_search_ranges(yaml.safe_load(path.read_text()) or {})


def sweep_config(parameters) -> str:
    config = yaml.safe_load(tiny_config())
    config["lfads"]["sweep"] = {"method": "random", "n_runs": 3, "seed": 0,
                                "parameters": parameters}
    return yaml.safe_dump(config)


def refused(result, *words):
    assert result.returncode != 0
    assert all(w in result.stdout for w in words), result.stdout[-2000:]
    assert "Traceback" not in result.stdout and "Failed validating" not in result.stdout
    assert "is a required property" not in result.stdout  # the schema's words never come first


@pytest.mark.workflow
def test_a_sweep_over_ranges_plans_its_runs(tmp_path):
    work = workflow_dir(tmp_path, TINY_SHEET, sweep_config({
        "training.lr": {"low": 1.0e-3, "high": 1.0e-2, "scale": "log"},
        "model.dropout_rate": {"low": 0.0, "high": 0.3, "scale": "linear"}}))
    result = run_snakemake(work, "-n")
    assert "a sweep of 3 runs for each of tiny" in result.stdout
    for run in ("sweep_000", "sweep_001", "sweep_002"):
        assert f"results/tiny/lfads/{run}/model.pt" in result.stdout


@pytest.mark.workflow
def test_the_old_grammar_stops_the_start_naming_file_and_key(tmp_path):
    # the sweep's old form, in an overlay: the overlay, the key and what to write instead
    work = workflow_dir(tmp_path / "sweep", TINY_SHEET, sweep_config({"training.lr": [0.01]}))
    (work / "overlay.yaml").write_text(
        "lfads:\n  sweep:\n    parameters:\n"
        "      training.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n")
    result = run_snakemake(work, "-n", "--configfile", str(work / "overlay.yaml"), check=False)
    refused(result, "Error: overlay.yaml: field 'lfads.sweep.parameters.training.lr': "
                    "`log:` is the old form of a range's scale; replace `log: true` with "
                    "`scale: log`.")
    # a PBT range without its scale, in config/config.yaml
    config = yaml.safe_load(tiny_config())
    config["lfads"]["pbt"]["parameters"]["model.cd_rate"] = {"low": 0.01, "high": 0.7}
    work = workflow_dir(tmp_path / "pbt", TINY_SHEET, yaml.safe_dump(config))
    result = run_snakemake(work, "-n", check=False)
    refused(result, "Error: config/config.yaml: field 'lfads.pbt.parameters.model.cd_rate': "
                    "a range needs its scale: add `scale: log` or `scale: linear`")
    assert not (work / "results").exists()


def test_the_documented_ranges_parse():
    """Every range the READMEs write, in a YAML block or in a comment or code span of one line,
    is a range of the grammar."""
    import re

    found = 0
    for doc in ("README.md", "config/README.md", "config/config.yaml"):
        text = (ROOT / doc).read_text()
        for spec in re.findall(r"\{low: [^{}]*\}", text):
            if "..." in spec or "|" in spec:  # the grammar itself, not an example
                continue
            parse_range(yaml.safe_load(spec), doc)
            found += 1
    assert found >= 5


def test_an_overlay_in_the_old_form_is_named_as_it_wrote_it():
    """A `--configfile` overlay's range merges into config/config.yaml's: the error names the
    overlay and answers what the overlay wrote, not the merged range."""
    from snakemake.utils import update_config

    from lfads_core.workflow.startup import check_config

    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    overlay = {"lfads": {"pbt": {"parameters": {
        "training.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}}}}}
    merged = yaml.safe_load(yaml.safe_dump(base))
    update_config(merged, overlay)
    assert merged["lfads"]["pbt"]["parameters"]["training.lr"]["scale"] == "log"
    sources = [("config/config.yaml", base), ("overlay.yaml", overlay),
               ("--config (command line)", {})]
    with pytest.raises(InputDataError) as err:
        check_config(merged, SCHEMA, sources)
    assert str(err.value) == (
        "overlay.yaml: field 'lfads.pbt.parameters.training.lr': `log:` is the old form of a "
        "range's scale; replace `log: true` with `scale: log`. A range is {low: ..., high: ..., "
        "scale: linear|log} (config/README.md, \"Search ranges\")")
    # a range the merged configuration leaves without its scale: named in the file that set it
    overlay = {"lfads": {"sweep": {"parameters": {"training.lr": {"low": 1.0e-3, "high": 0.1}}}}}
    merged = yaml.safe_load(yaml.safe_dump(base))
    update_config(merged, overlay)
    with pytest.raises(InputDataError) as err:
        check_config(merged, SCHEMA, [("config/config.yaml", base), ("overlay.yaml", overlay)])
    assert err.value.path == "overlay.yaml" and "add `scale: log` or `scale: linear`" in str(err.value)
