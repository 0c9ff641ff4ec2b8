"""Population-based training (PBT; Jaderberg et al. 2017, arXiv 1711.09846) of LFADS as in
AutoLFADS (Keshtkaran et al. 2022, Nature Methods 19:1572), planned generation by generation.

Config ``lfads.pbt`` (defaults and their sources: ``config/config.yaml``, ``config/README.md``)::

    enabled: true
    population: 20               # members trained side by side
    epochs_per_generation: 50    # epochs between two exploit/explore steps
    generations: 20              # fixed, so the whole workflow DAG is known up front
    seed: 0
    exploit_fraction: 0.25       # the worst fraction copies a member of the best fraction
    explore_factors: [0.8, 1.25] # each setting is multiplied by one of these ...
    resample_probability: 0.25   # ... or, with this probability, drawn afresh from its range
    configured_member: false     # true: member 0 starts from the configured settings
    parameters:                  # "model.<key>" or "training.<key>" -> its range
      training.lr: {low: 1.0e-4, high: 1.0e-2, scale: log}   # (search_space.py)

A *plan* says, for every member of one generation, which member of the previous generation it
starts from (``parent``: its weights, optimiser state and training progress; none in the first
generation), its settings and why. The plan of generation 0 draws every setting from its
range (with ``configured_member``, member 0 instead takes the values the model and training
config set, each clipped to its range, so the configured run is one of the founders); the plan
of generation g+1 follows from generation g's results:

* **exploit** (truncation selection): members are ranked by their smoothed validation loss at
  the end of the generation (NaN last; ties by member number). The worst
  ``ceil(exploit_fraction * population)`` members, and every member whose loss is not finite,
  copy a member drawn uniformly from the best ``ceil(exploit_fraction * population)`` finite
  ones. A member whose loss is not finite is never copied.
* **explore**: a member that copied perturbs each of the parent's settings: with probability
  ``resample_probability`` it is drawn afresh from its range, otherwise multiplied by one of
  ``explore_factors`` drawn uniformly; then clipped to the range. The others keep their
  settings and continue from their own state.

Every decision draws from ``numpy.random.default_rng([seed, generation])``, so the same config
gives the same plans. This module holds no torch: the members' training is
``lfads_core.lfads.training.train(..., start_from=...)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputDataError
from .search_space import SearchRange, parse_range

_WHERE = "lfads.pbt"
# Settings a member may change between generations: they change neither the model's shape nor
# the data, so a copied state stays valid under them.
SEARCHABLE = (
    "training.lr", "training.l2_gen_scale", "training.l2_con_scale", "training.kl_ic_scale",
    "training.kl_co_scale", "training.weight_decay", "training.grad_clip",
    "model.dropout_rate", "model.cd_rate",
)
@dataclass(frozen=True)
class PBTSettings:
    """Config ``lfads.pbt``, checked (see the module docstring)."""

    population: int
    epochs_per_generation: int
    generations: int
    seed: int
    exploit_fraction: float
    explore_factors: tuple[float, ...]
    resample_probability: float
    parameters: dict[str, SearchRange] = field(default_factory=dict)
    configured_member: bool = False

    @property
    def n_exploit(self) -> int:
        """How many members are replaced, and how many are candidates to copy, per step."""
        return max(1, math.ceil(self.exploit_fraction * self.population))

    @property
    def total_epochs(self) -> int:
        """Epochs each lineage trains: generations x epochs per generation."""
        return self.generations * self.epochs_per_generation


def _bad(key: str, why: str):
    raise InputDataError("config", f"{_WHERE}.{key}", why)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def _integer(pbt: dict, key: str, minimum: int) -> int:
    value = pbt.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        _bad(key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def pbt_settings(pbt: dict | None, sweep: dict | None = None) -> PBTSettings | None:
    """Check config ``lfads.pbt``; None when PBT is off. ``sweep`` (config ``lfads.sweep``):
    PBT and a sweep exclude each other. Raises :class:`InputDataError` naming the key."""
    pbt = pbt or {}
    if not pbt.get("enabled", False):
        return None
    method = (sweep or {}).get("method", "none")
    if method != "none":
        raise InputDataError("config", _WHERE, f"PBT cannot be combined with a sweep (lfads.sweep."
                             f"method is '{method}'): set lfads.sweep.method to none, or disable PBT")
    population = _integer(pbt, "population", 2)
    epochs = _integer(pbt, "epochs_per_generation", 1)
    generations = _integer(pbt, "generations", 1)
    seed = _integer(pbt, "seed", 0)
    fraction = pbt.get("exploit_fraction")
    if not _number(fraction) or not 0 < fraction <= 0.5:
        _bad("exploit_fraction", f"must be a number in (0, 0.5], got {fraction!r}")
    factors = pbt.get("explore_factors")
    if not isinstance(factors, list) or not factors or \
            not all(_number(f) and f > 0 for f in factors):
        _bad("explore_factors", f"must be a non-empty list of numbers > 0, got {factors!r}")
    resample = pbt.get("resample_probability")
    if not _number(resample) or not 0 <= resample <= 1:
        _bad("resample_probability", f"must be a number in [0, 1], got {resample!r}")
    parameters = pbt.get("parameters") or {}
    if not parameters:
        _bad("parameters", "PBT needs at least one searched setting")
    ranges = {}
    for name, spec in parameters.items():
        key = f"parameters.{name}"
        if name not in SEARCHABLE:
            _bad(key, f"unknown setting for PBT; the settings a member can change between "
                      f"generations are {list(SEARCHABLE)}")
        ranges[name] = parse_range(spec, f"{_WHERE}.{key}")
    configured = pbt.get("configured_member", False)
    if not isinstance(configured, bool):
        _bad("configured_member", f"must be true or false, got {configured!r}")
    return PBTSettings(population, epochs, generations, seed, float(fraction),
                       tuple(float(f) for f in factors), float(resample), ranges, configured)


def generation_rng(settings: PBTSettings, generation: int) -> np.random.Generator:
    return np.random.default_rng([settings.seed, generation])


def member_seed(train_seed: int, settings: PBTSettings, generation: int, member: int) -> int:
    """The training seed of one member in one generation (weight initialisation in the first
    generation; batch order, dropout and posterior draws in every generation)."""
    sequence = np.random.SeedSequence([train_seed, settings.seed, generation, member])
    return int(sequence.generate_state(1)[0] % 2**31)


def configured_values(base: dict, settings: PBTSettings) -> dict[str, float]:
    """The searched settings as the dataset's config sets them (``base``: ``{"model": ...,
    "training": ...}``), each clipped to its range (a log range clips 0 to its low end)."""
    values = {}
    for name, r in settings.parameters.items():
        section, _, key = name.partition(".")
        values[name] = r.clip(float(base[section][key]))
    return values


def initial_plan(settings: PBTSettings, configured: dict[str, float] | None = None) -> list[dict]:
    """Generation 0: every member's settings drawn from their ranges; no parents. With
    ``configured`` (:func:`configured_values`) member 0 takes those instead of its draw (the
    others' draws stay the same)."""
    rng = generation_rng(settings, 0)
    plan = [{"member": m, "parent": None, "founder": m, "why": "initial draw",
             "settings": {name: r.draw(rng) for name, r in settings.parameters.items()}}
            for m in range(settings.population)]
    if configured is not None:
        plan[0].update(why="configured settings", settings=dict(configured))
    return plan


def explore(values: dict[str, float], settings: PBTSettings,
            rng: np.random.Generator) -> dict[str, float]:
    """Perturb a copied member's settings (module docstring), clipped to their ranges."""
    out = {}
    for name, r in settings.parameters.items():
        if rng.uniform() < settings.resample_probability:
            out[name] = r.clip(r.draw(rng))  # a log-uniform draw may round past an end
        else:
            factor = settings.explore_factors[int(rng.integers(len(settings.explore_factors)))]
            out[name] = r.perturb(values[name], factor)
    return out


def next_plan(settings: PBTSettings, generation: int, results: list[dict]) -> list[dict]:
    """The plan of ``generation`` from the results of ``generation - 1``.

    ``results``: one dict per member of the previous generation, in member order, with
    ``member``, ``founder``, ``settings`` and ``valid_loss_smooth`` (NaN when it diverged).
    Raises ValueError when no member has a finite loss."""
    if len(results) != settings.population:
        raise ValueError(f"expected {settings.population} members, got {len(results)}")
    loss = np.array([float(r["valid_loss_smooth"]) for r in results])
    finite = np.isfinite(loss)
    if not finite.any():
        raise ValueError(f"generation {generation - 1}: no member has a finite validation loss")
    # rank: finite losses ascending, ties by member number; non-finite last
    order = sorted(range(len(results)), key=lambda m: (not finite[m], loss[m] if finite[m] else 0, m))
    n = settings.n_exploit
    donors = [m for m in order[:n] if finite[m]]
    replaced = set(order[-n:]) | {m for m in range(len(results)) if not finite[m]}
    replaced -= set(donors)  # a small population: the best are never replaced
    rng = generation_rng(settings, generation)
    plan = []
    for m, result in enumerate(results):
        if m in replaced:
            parent = donors[int(rng.integers(len(donors)))]
            source = results[parent]
            why = (f"exploit: loss {loss[m]:.4g} in the worst {n}"
                   if finite[m] else "exploit: loss not finite")
            why += f"; copies member {parent} (loss {loss[parent]:.4g}) and explores"
            values = explore(source["settings"], settings, rng)
            plan.append({"member": m, "parent": parent, "founder": source["founder"],
                         "why": why, "settings": values})
        else:
            plan.append({"member": m, "parent": m, "founder": result["founder"],
                         "why": f"keeps its state (loss {loss[m]:.4g}, rank {order.index(m) + 1})",
                         "settings": dict(result["settings"])})
    return plan


def generation_table(generation: int, plan: list[dict], losses: list[float]) -> pd.DataFrame:
    """One row per member of one generation: its parent, founder (lineage), why, settings and
    smoothed validation loss at the generation's end."""
    rows = []
    for entry, loss in zip(plan, losses):
        rows.append({"generation": generation, "member": entry["member"],
                     "parent": -1 if entry["parent"] is None else entry["parent"],
                     "founder": entry["founder"], **entry["settings"],
                     "valid_loss_smooth": float(loss), "why": entry["why"]})
    return pd.DataFrame(rows)


def results_from_table(table: pd.DataFrame, settings: PBTSettings) -> list[dict]:
    """The members' results (for :func:`next_plan`) from a :func:`generation_table`."""
    table = table.sort_values("member")
    return [{"member": int(row["member"]), "founder": int(row["founder"]),
             "valid_loss_smooth": float(row["valid_loss_smooth"]),
             "settings": {name: float(row[name]) for name in settings.parameters}}
            for _, row in table.iterrows()]


def best_member(table: pd.DataFrame) -> int:
    """The member with the lowest finite smoothed validation loss (ties: the lowest number)."""
    finite = table[np.isfinite(table["valid_loss_smooth"].to_numpy(dtype=float))]
    if finite.empty:
        raise ValueError("no member of the last generation has a finite validation loss")
    return int(finite.sort_values(["valid_loss_smooth", "member"]).iloc[0]["member"])


def member_training_settings(base: dict, entry: dict, settings: PBTSettings, generation: int
                             ) -> dict:
    """The model and training settings of one member in one generation: the dataset's LFADS
    settings (``base``: ``{"model": ..., "training": ...}``) with the member's searched values;
    training ends after ``generation + 1`` generations' epochs, with a constant learning rate
    (PBT sets it), no early stopping, no keeping of a best epoch (the state at the end of the
    generation is what the metric describes) and no rollback on a non-finite loss (such a
    member is replaced in the next generation)."""
    out = {"model": dict(base["model"]), "training": dict(base["training"])}
    for name, value in entry["settings"].items():
        section, _, key = name.partition(".")
        out[section][key] = value
    epochs = (generation + 1) * settings.epochs_per_generation
    out["training"].update(
        max_epochs=epochs, lr_factor=1.0, lr_min=0.0, stop_at_lr_min=False,
        early_stop_burn_in=epochs, max_nonfinite_rollbacks=0,
        seed=member_seed(base["training"]["seed"], settings, generation, entry["member"]),
    )
    return out
