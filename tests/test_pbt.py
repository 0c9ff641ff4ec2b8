"""Population-based training: the settings check, exploit/explore, and a member continuing
from its parent's state (lfads_core.workflow.pbt, lfads_core.lfads.training.train)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from conftest import CONFIG
from lfads_core.errors import InputDataError
from lfads_core.lfads.training import NonFiniteLossError, train
from lfads_core.workflow.pbt import (SEARCHABLE, configured_values, explore, initial_plan,
                                     member_training_settings, next_plan, pbt_settings)
from test_training import read_log, tiny_model, tiny_train, write_lfads_h5

torch.set_num_threads(1)


def settings(**changes):
    pbt = {**CONFIG["lfads"]["pbt"], "enabled": True, **changes}
    return pbt_settings(pbt)


def results(plan, losses):
    return [{"member": e["member"], "founder": e["founder"], "settings": e["settings"],
             "valid_loss_smooth": loss} for e, loss in zip(plan, losses)]


def test_the_defaults_are_valid_and_off():
    assert pbt_settings(CONFIG["lfads"]["pbt"]) is None  # enabled: false
    pbt = settings()
    assert pbt.population == 20 and pbt.total_epochs == 1000 and pbt.n_exploit == 5
    assert set(pbt.parameters) == {"training.lr", "model.dropout_rate", "model.cd_rate",
                                   "training.l2_gen_scale", "training.l2_con_scale",
                                   "training.kl_ic_scale", "training.kl_co_scale"}


@pytest.mark.parametrize("change, key, words", [
    ({"population": 1}, "lfads.pbt.population", "integer >= 2"),
    ({"parameters": {"training.lr": {"low": 0.01, "high": 0.001, "scale": "log"}}},
     "lfads.pbt.parameters.training.lr", "low < high"),
    ({"parameters": {"training.lr": {"low": 0.001, "high": 0.01}}},
     "lfads.pbt.parameters.training.lr", "add `scale: log` or `scale: linear`"),
    ({"parameters": {"model.gen_dim": {"low": 10, "high": 100, "scale": "linear"}}},
     "lfads.pbt.parameters.model.gen_dim", "unknown setting for PBT"),
    ({"parameters": {"training.lr": {"low": 0.0, "high": 0.01, "scale": "log"}}},
     "lfads.pbt.parameters.training.lr", "low > 0"),
    ({"exploit_fraction": 0.7}, "lfads.pbt.exploit_fraction", "(0, 0.5]"),
    ({"explore_factors": []}, "lfads.pbt.explore_factors", "non-empty"),
    ({"parameters": {}}, "lfads.pbt.parameters", "at least one"),
    ({"configured_member": "yes"}, "lfads.pbt.configured_member", "true or false"),
])
def test_bad_settings_are_named(change, key, words):
    with pytest.raises(InputDataError) as err:
        settings(**change)
    assert err.value.field == key and words in str(err.value)


def test_pbt_and_a_sweep_exclude_each_other():
    with pytest.raises(InputDataError, match="cannot be combined with a sweep") as err:
        pbt_settings({**CONFIG["lfads"]["pbt"], "enabled": True},
                     {"method": "grid", "parameters": {"training.lr": [0.01]}})
    assert err.value.field == "lfads.pbt"


def test_every_searchable_setting_exists():
    from lfads_core.lfads.config import ModelConfig, TrainConfig
    fields = {"model": ModelConfig().to_dict(), "training": TrainConfig().to_dict()}
    for name in SEARCHABLE:
        section, _, key = name.partition(".")
        assert key in fields[section], name


def test_initial_draws_respect_ranges_and_log_scale():
    pbt = settings(population=400)
    plan = initial_plan(pbt)
    for name, r in pbt.parameters.items():
        values = np.array([e["settings"][name] for e in plan])
        assert values.min() >= r.low and values.max() <= r.high, name
        if r.scale == "log":  # log-uniform: the median sits at the geometric middle
            middle = math.sqrt(r.low * r.high)
            assert 0.6 * middle < np.median(values) < 1.6 * middle, name
        else:
            assert abs(np.median(values) - (r.low + r.high) / 2) < 0.1 * (r.high - r.low), name
    assert all(e["parent"] is None and e["founder"] == e["member"] for e in plan)


def test_the_configured_member_starts_from_the_config_clipped_to_the_ranges():
    assert not settings().configured_member  # config/config.yaml: every member draws
    pbt = settings(population=4, configured_member=True)
    base = {"model": dict(CONFIG["lfads"]["model"]), "training": dict(CONFIG["lfads"]["training"])}
    base["training"].update(l2_con_scale=0.0, lr=0.5)  # below a log range; above its top
    configured = configured_values(base, pbt)
    assert configured["training.l2_con_scale"] == pbt.parameters["training.l2_con_scale"].low
    assert configured["training.lr"] == pbt.parameters["training.lr"].high
    assert configured["model.cd_rate"] == CONFIG["lfads"]["model"]["cd_rate"]
    drawn, plan = initial_plan(pbt), initial_plan(pbt, configured)
    assert plan[0]["settings"] == configured and plan[0]["why"] == "configured settings"
    assert plan[1:] == drawn[1:] and drawn[0]["settings"] != configured  # the others' draws stay


def test_explore_multiplies_or_resamples_and_clips():
    pbt = settings(explore_factors=[0.8, 1.25], resample_probability=0.0)
    rng = np.random.default_rng(0)
    start = {name: r.high for name, r in pbt.parameters.items()}  # at the top of every range
    seen = {name: set() for name in start}
    for _ in range(50):
        out = explore(start, pbt, rng)
        for name, value in out.items():
            r = pbt.parameters[name]
            assert r.low <= value <= r.high
            seen[name].add(round(value / start[name], 9))
    for name, ratios in seen.items():  # x1.25 is clipped back to the top
        assert ratios == {0.8, 1.0}, (name, ratios)
    resampled = settings(resample_probability=1.0)
    out = [explore(start, resampled, rng)["training.lr"] for _ in range(200)]
    assert len(set(out)) == 200 and min(out) < 1e-3  # drawn afresh over the whole range


def test_exploit_replaces_the_worst_with_the_best():
    pbt = settings(population=8, exploit_fraction=0.25)  # 2 replaced, 2 donors
    plan = initial_plan(pbt)
    losses = [5.0, 1.0, 7.0, 3.0, 2.0, 8.0, 4.0, 6.0]
    new = next_plan(pbt, 1, results(plan, losses))
    copied = {e["member"]: e["parent"] for e in new if e["parent"] != e["member"]}
    assert set(copied) == {5, 2}  # the two worst
    assert set(copied.values()) <= {1, 4}  # from the two best
    for e in new:
        if e["member"] in copied:
            parent = plan[e["parent"]]
            assert e["founder"] == parent["founder"]
            assert e["settings"] != parent["settings"] and "exploit" in e["why"]
        else:
            assert e["settings"] == plan[e["member"]]["settings"] and e["parent"] == e["member"]


def test_ties_rank_by_member_number():
    pbt = settings(population=4, exploit_fraction=0.25)
    plan = initial_plan(pbt)
    new = next_plan(pbt, 1, results(plan, [2.0, 2.0, 2.0, 2.0]))
    assert [e["parent"] for e in new] == [0, 1, 2, 0]  # the last one copies the first


def test_a_nan_member_is_always_replaced_and_never_copied():
    pbt = settings(population=8, exploit_fraction=0.25)
    plan = initial_plan(pbt)
    losses = [1.0, math.nan, 3.0, 4.0, math.nan, 6.0, math.inf, 2.0]  # 3 not finite > 2 worst
    for generation in range(1, 20):
        new = next_plan(pbt, generation, results(plan, losses))
        parents = {e["member"]: e["parent"] for e in new}
        assert all(parents[m] not in (m, None) for m in (1, 4, 6))
        assert not {parents[m] for m in parents} & {1, 4, 6}
        assert set(parents[m] for m in (1, 4, 6)) <= {0, 7}
    with pytest.raises(ValueError, match="no member has a finite"):
        next_plan(pbt, 1, results(plan, [math.nan] * 8))


def test_the_same_seed_gives_the_same_plans():
    def history(seed):
        pbt = settings(population=6, seed=seed)
        plan, plans = initial_plan(pbt), []
        for generation in range(1, 5):
            losses = [sum(e["settings"].values()) for e in plan]  # any deterministic metric
            plan = next_plan(pbt, generation, results(plan, losses))
            plans.append(plan)
        return yaml.safe_dump(plans)
    assert history(0) == history(0) != history(1)


def test_member_settings_train_one_generation_at_a_constant_rate():
    pbt = settings(population=4, epochs_per_generation=5)
    entry = initial_plan(pbt)[2]
    base = {"model": dict(CONFIG["lfads"]["model"]), "training": dict(CONFIG["lfads"]["training"])}
    out = member_training_settings(base, entry, pbt, generation=3)
    t = out["training"]
    assert t["max_epochs"] == 20 and t["early_stop_burn_in"] == 20 and t["lr_factor"] == 1.0
    assert not t["stop_at_lr_min"] and t["max_nonfinite_rollbacks"] == 0
    assert t["lr"] == entry["settings"]["training.lr"]
    assert out["model"]["cd_rate"] == entry["settings"]["model.cd_rate"]
    assert base["training"]["max_epochs"] == CONFIG["lfads"]["training"]["max_epochs"]  # copied
    other = member_training_settings(base, initial_plan(pbt)[1], pbt, generation=3)
    assert other["training"]["seed"] != t["seed"]


# ------------------------------------------------------------------ a member's training
def test_a_member_continues_from_its_parent(tmp_path):
    data = tmp_path / "lfads_input.h5"
    write_lfads_h5(data)
    mc = tiny_model()
    parent = train(data, tmp_path / "parent", mc, tiny_train(max_epochs=2, early_stop_burn_in=2),
                   device="cpu")
    state = tmp_path / "parent" / "checkpoint.pt"
    parent_blob = torch.load(state, weights_only=False)
    child_cfg = tiny_train(max_epochs=4, lr=2e-3, lr_factor=1.0, early_stop_burn_in=4, seed=7)
    seen = []
    child = train(data, tmp_path / "child", tiny_model(dropout_rate=0.2), child_cfg, device="cpu",
                  start_from=state, progress=lambda row: seen.append((row["epoch"], row["lr"])))
    assert seen == [(2, 2e-3), (3, 2e-3)]  # epochs 2 and 3, at the child's learning rate
    log = read_log(child.log_path)
    assert len(log) == 4 and log[:2] == read_log(parent.log_path)  # the lineage's history
    blob = torch.load(tmp_path / "child" / "checkpoint.pt", weights_only=False)
    assert blob["settings"]["start_from"]["sha256"]
    assert blob["batcher"]["seed"] == 7
    assert blob["settings"]["model"]["dropout_rate"] == 0.2
    # the parent is unchanged, and the child's weights moved on from the parent's
    assert torch.equal(torch.load(state, weights_only=False)["model"]["generator.cell.weight_hh"],
                       parent_blob["model"]["generator.cell.weight_hh"])
    final = torch.load(child.model_path, weights_only=False)["state_dict"]
    assert not torch.equal(final["generator.cell.weight_hh"],
                           parent_blob["model"]["generator.cell.weight_hh"])


def test_a_preempted_member_resumes_from_its_own_checkpoint(tmp_path):
    data = tmp_path / "lfads_input.h5"
    write_lfads_h5(data)
    mc = tiny_model()
    train(data, tmp_path / "parent", mc, tiny_train(max_epochs=2, early_stop_burn_in=2), device="cpu")
    state = tmp_path / "parent" / "checkpoint.pt"
    cfg = tiny_train(max_epochs=5, lr=3e-3, lr_factor=1.0, early_stop_burn_in=5, seed=3)
    whole = train(data, tmp_path / "whole", mc, cfg, device="cpu", start_from=state)

    class Killed(Exception):
        pass

    def kill_after_epoch_3(row):
        if row["epoch"] == 3:
            raise Killed

    with pytest.raises(Killed):
        train(data, tmp_path / "member", mc, cfg, device="cpu", start_from=state,
              progress=kill_after_epoch_3)
    seen = []
    resumed = train(data, tmp_path / "member", mc, cfg, device="cpu", start_from=state,
                    resume="if_compatible", progress=lambda row: seen.append(row["epoch"]))
    assert seen == [4]
    a = torch.load(whole.model_path, weights_only=False)["state_dict"]
    b = torch.load(resumed.model_path, weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a checkpoint that started from another parent is not resumed
    other = tmp_path / "other_parent"
    train(data, other, mc, tiny_train(max_epochs=2, early_stop_burn_in=2, seed=1), device="cpu")
    seen.clear()
    train(data, tmp_path / "member", mc, cfg, device="cpu", start_from=other / "checkpoint.pt",
          resume="if_compatible", progress=lambda row: seen.append(row["epoch"]))
    assert seen == [2, 3, 4]


def test_a_parent_of_other_data_is_refused(tmp_path):
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    write_lfads_h5(first, seed=0)
    write_lfads_h5(second, seed=1)
    train(first, tmp_path / "parent", tiny_model(), tiny_train(max_epochs=1), device="cpu")
    with pytest.raises(ValueError, match="belongs to another input file"):
        train(second, tmp_path / "child", tiny_model(), tiny_train(max_epochs=2), device="cpu",
              start_from=tmp_path / "parent" / "checkpoint.pt")


def test_a_diverging_member_fails_at_once(tmp_path):
    """With max_nonfinite_rollbacks 0 (PBT's setting) a NaN ends the member's generation."""
    data = tmp_path / "lfads_input.h5"
    write_lfads_h5(data)
    nan_at_epoch_1 = lambda epoch, batch, loss: loss * math.nan if epoch == 1 else loss  # noqa: E731
    with pytest.raises(NonFiniteLossError):
        train(data, tmp_path / "run", tiny_model(), tiny_train(max_epochs=3, max_nonfinite_rollbacks=0),
              device="cpu", loss_hook=nan_at_epoch_1)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1
