"""What the workflow checks and says when it starts, before any job: the configuration against
its schema, with errors that name the file a key came from, the key's path and the allowed
values (:func:`check_config`); one voice for every start-up error (:func:`exit_on_bad_input`);
and the overrides' names (:func:`check_override_names`)."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Callable, Iterable, Mapping, TypeVar

import jsonschema
import yaml

from ..errors import InputDataError
from .search_space import check_search_ranges

T = TypeVar("T")
COMMAND_LINE = "--config (command line)"


def config_sources(workflow, defaults: str | Path) -> list[tuple[str, dict]]:
    """Where a Snakemake run's configuration came from, in the order it was merged (a later
    source overrides an earlier one): ``defaults`` (the workflow's own configuration, which
    fills in what the others leave out), the Snakefile's ``configfile``, each
    ``--configfile``, then ``--config`` values. ``workflow``: Snakemake's workflow object."""
    cli = [Path(p).absolute() for p in workflow.overwrite_configfiles]
    files = [Path(p).absolute() for p in workflow.configfiles if Path(p).absolute() not in cli]
    sources = [(_shown(p), _load(p)) for p in [Path(defaults).absolute()] + files + cli]
    if getattr(workflow.modifier, "skip_configfile", False):  # a module: its config is given
        sources.append(("the config given to the module", copy.deepcopy(dict(workflow.config))))
    sources.append((COMMAND_LINE, dict(workflow.config_settings.config)))
    return sources


def _shown(path: Path) -> str:
    """A path as a user would type it: relative to the working directory where it can be."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _load(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _sets(values, key_path: list) -> bool:
    """Whether ``values`` sets ``key_path``; a key may itself hold dots (``training.lr`` of
    ``lfads.pbt.parameters``), so a path split at every dot still finds it."""
    if not key_path:
        return True
    if not isinstance(values, Mapping):
        return False
    for n in range(1, len(key_path) + 1):
        key = ".".join(map(str, key_path[:n]))
        if key in values and _sets(values[key], key_path[n:]):
            return True
    return False


def source_of(key_path: Iterable, sources: list[tuple[str, dict]]) -> str:
    """The last source (the one that wins) that sets ``key_path``, or its nearest parent."""
    key_path = list(key_path)
    for depth in range(len(key_path), 0, -1):
        for name, values in reversed(sources):
            if _sets(values, key_path[:depth]):
                return name
    return sources[-2][0] if len(sources) > 1 else "config"


def _allowed(schema: dict) -> str:
    """The values a (sub)schema allows, in words."""
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    if "anyOf" in schema:
        return " or ".join(_allowed(s) for s in schema["anyOf"])
    words = []
    kind = schema.get("type")
    if kind:
        words.append(" or ".join(kind) if isinstance(kind, list) else kind)
    for bound, text in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                        ("exclusiveMaximum", "<")):
        if bound in schema:
            words.append(f"{text} {schema[bound]}")
    if "pattern" in schema:
        words.append(f"matching {schema['pattern']}")
    return " ".join(words) or "a value the schema allows"


def _describe(error: jsonschema.ValidationError) -> tuple[list, str]:
    """``(key path, message)`` of a schema error, in the words of the other start-up checks."""
    path, schema, value = list(error.absolute_path), error.schema, error.instance
    if error.validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = sorted(set(value) - set(known))
        close = difflib.get_close_matches(str(extra[0]), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return path + [extra[0]], f"unknown key{hint}; the keys here are {known}"
    if error.validator == "required":
        key = error.message.split("'")[1]
        return path + [key], "required key is missing"
    return path, f"{value!r} is not allowed: must be {_allowed(schema)}"


def check_config(config: dict, schema: dict, sources: list[tuple[str, dict]]) -> None:
    """Validate the merged ``config`` against ``schema``. The first error (in key order) raises
    :class:`InputDataError` naming the source that set the key (see :func:`config_sources`),
    the key's path (``lfads.training.lr``) and the allowed values, without the schema. The
    search ranges are checked first, so that a range's error says what to write
    (:func:`lfads_core.workflow.search_space.check_search_ranges`): the old form in each
    source as written there, then every range as merged."""
    for name, values in sources:
        try:
            check_search_ranges(values, old_form_only=True)
        except InputDataError as exc:
            raise InputDataError(name, exc.field, exc.reason)
    try:
        check_search_ranges(config)
    except InputDataError as exc:
        raise InputDataError(source_of(exc.field.split("."), sources), exc.field, exc.reason)
    check_moved_execution_keys(config, sources)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        key_path, message = _describe(errors[0])
        raise InputDataError(source_of(key_path, sources), ".".join(map(str, key_path)) or "<root>",
                             message)


# Settings of how the loops run that moved out of the model into ``lfads.execution``: what to
# write instead.
MOVED_TO_EXECUTION = {
    "model.impl": "lfads.execution.loops: reference (or fast)",
    "model.native_kernels": "lfads.execution.loops: native",
    "model.cuda_graphs": "lfads.execution.loops: cuda_graphs (the default, auto, uses them on CUDA)",
    "model.triton_decoder": "lfads.execution.loops: triton",
    "training.compile": "lfads.execution.compile: true",
}


def check_moved_execution_keys(config: dict, sources: list[tuple[str, dict]]) -> None:
    """A setting of how the loops run under ``lfads.model``/``training`` (or an override's)
    is an error that says what to write in ``lfads.execution`` instead."""
    lfads = config.get("lfads") or {}
    blocks = [(["lfads"], lfads)] + [(["lfads", "overrides", str(name)], block or {})
                                     for name, block in (lfads.get("overrides") or {}).items()]
    for prefix, block in blocks:
        for moved, instead in MOVED_TO_EXECUTION.items():
            part, key = moved.split(".")
            if isinstance(block.get(part), Mapping) and key in block[part]:
                key_path = [*prefix, part, key]
                raise InputDataError(source_of(key_path, sources), ".".join(key_path),
                                     "how the loops run is no longer a model setting (changing "
                                     f"it retrains nothing): write {instead} instead")


def check_override_names(overrides: Mapping, names: Iterable[str], simulations: Iterable[str],
                         sheet: str, sources: list[tuple[str, dict]]) -> None:
    """Every ``lfads.overrides`` name must be a dataset or stitched group of the sheet, or a
    simulation of the config (the overrides of the shipped simulated datasets may stay when
    another sheet is used); a misspelt name would otherwise be ignored in silence."""
    known = sorted(set(names))
    for name in overrides:
        if name not in known and name not in set(simulations):
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise InputDataError(source_of(["lfads", "overrides", name], sources),
                                 f"lfads.overrides.{name}",
                                 f"'{name}' is no dataset or group of {sheet}{hint}; those are {known}")


def exit_on_bad_input(sources: list[tuple[str, dict]], check: Callable[..., T], *args, **kwargs) -> T:
    """Run a start-up step; bad input ends the run with its message alone (no traceback) and a
    non-zero exit, as every start-up check does. An error about a configuration key
    (``InputDataError`` with path ``config``) is re-worded to name the source that set it."""
    try:
        return check(*args, **kwargs)
    except InputDataError as exc:
        if exc.path == "config":
            exc = InputDataError(source_of(exc.field.split("."), sources), exc.field, exc.reason)
        raise SystemExit(f"Error: {exc}")


def _dataset_line(name: str, settings: dict, found: dict) -> str:
    """One dataset's start-up line: units, trials per split, bins, behaviour (a continuous
    dataset's: segments per split, their length and overlap in ms and bins, blocks of time;
    calcium traces: bins of frames)."""
    bins = found.get("bins_text") or \
        f"{found['n_window']} bins of {settings['bin_width_ms']:g} ms + {settings['fp_bins']} forward"
    behaviour = settings["behavior"].strip() or "none"
    if found.get("segments"):
        width = settings["bin_width_ms"]
        bins = (f"segments of {found['n_window'] * width:g} ms overlapping by "
                f"{found['n_overlap'] * width:g} ms ({found['n_window']} bins of {width:g} ms + "
                f"{settings['fp_bins']} forward, overlap {found['n_overlap']} bins)")
    if "units" not in found:  # a simulated file the first job writes
        return f"{name}: simulated by the first job (counts once written); {bins}; behaviour {behaviour}"
    heldout = {"file": "the file's heldout column", "none": "none held out"}.get(
        found["heldout"], f"a random {found['heldout']}")
    trials = ", ".join(f"{found[s]} {s}" for s in ("train", "valid", "test"))
    if found.get("segments"):
        segments = ", ".join(f"{found[s]} {s}" for s in ("train", "valid", "test"))
        return (f"{name}: {found['units']} units, {found['heldout_units']} held out ({heldout}); "
                f"continuous: segments {segments} (split by {found['split_blocks']} blocks of "
                f"time); {bins}; behaviour {behaviour}")
    table = found.get("trials_table", "trials")
    source = "" if table == "trials" else f", from intervals/{table}"
    units = found.get("channel_name", "units")  # ROIs for calcium traces
    if found.get("traces"):
        behaviour += f"; traces {found['traces']}"
    return (f"{name}: {found['units']} {units}, {found['heldout_units']} held out ({heldout}); "
            f"trials {trials} (split {found['split']}{source}); {bins}; behaviour {behaviour}")


def training_jobs(runs: Mapping[str, list[str]], selecting: Iterable[str], pbt) -> tuple[int, str]:
    """How many training jobs the models mean, and in words. ``runs``: each model's runs (the
    sweep's points, or ``default``); ``selecting``: the models trained by a sweep or PBT;
    ``pbt``: :class:`lfads_core.workflow.pbt.PBTSettings` or None."""
    selecting = [m for m in runs if m in set(selecting)]
    plain = [m for m in runs if m not in set(selecting)]
    parts, total = [], 0
    if selecting and pbt is not None:
        n = pbt.population * pbt.generations
        total += n * len(selecting)
        parts.append(f"PBT {pbt.population} members x {pbt.generations} generations = {n} jobs "
                     f"for each of {', '.join(selecting)}")
    elif selecting:
        total += sum(len(runs[m]) for m in selecting)
        parts.append(f"a sweep of {len(runs[selecting[0]])} runs for each of {', '.join(selecting)}")
    if plain:
        total += len(plain)
        parts.append(f"one run for each of {', '.join(plain)}")
    return total, "; ".join(parts)


def startup_summary(datasets: Mapping[str, dict], found: Mapping[str, dict],
                    groups: Mapping[str, list[str]], runs: Mapping[str, list[str]],
                    selecting: Iterable[str], pbt) -> str:
    """What the run will do, before any job: one line per dataset (units kept and held out,
    trials per split and the trials table where it is not ``trials``, bins per window,
    behaviour), warnings (the file's: columns left out of a table's ``colnames``, NaN alignment
    events; no held-out unit: no co-bps), the stitched groups, and how many training jobs."""
    lines = [_dataset_line(name, settings, found[name]) for name, settings in datasets.items()]
    for name, info in found.items():
        for note in info.get("warnings", []):
            lines.append(f"warning: {name}: {note}")
        if info.get("no_heldout"):
            lines.append(f"warning: {name}: no unit is held out ({info['no_heldout']}): no co-bps "
                         "or other held-out metrics; set heldout to a fraction such as 0.2")
    for group, rows in groups.items():
        lines.append(f"{group}: one stitched model of {len(rows)} sessions ({', '.join(rows)})")
    total, how = training_jobs(runs, selecting, pbt)
    lines.append(f"training: {total} job{'s' if total != 1 else ''} ({how})")
    return "\n".join(lines)
