"""Per-dataset settings: the sample sheet (config/datasets.tsv) merged over config defaults."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from ..errors import InputDataError

#: ``test_fraction: auto`` where a sweep or PBT chooses among models on the validation trials
AUTO_TEST_FRACTION = 0.2


# Blocks keyed by names a project chooses (datasets, groups, searched settings): a project
# configuration that writes one replaces the workflow's whole, so no name of the workflow's
# own (its simulated `lorenz`, its PBT ranges) joins a project's.
NAMED_BLOCKS = (("simulations",), ("lfads", "overrides"), ("lfads", "sweep", "parameters"),
                ("lfads", "pbt", "parameters"))


def fill_defaults(config: dict, defaults: dict, _path: tuple = ()) -> dict:
    """Fill ``config`` in place with the keys of ``defaults`` (the workflow's own
    config/config.yaml) that it leaves out, recursively, so that a project's configuration
    need hold only what differs; the blocks of :data:`NAMED_BLOCKS` are taken whole from
    whichever sets them. Returns ``config``."""
    for key, value in defaults.items():
        path = (*_path, key)
        if key not in config:
            config[key] = value
        elif (isinstance(value, dict) and isinstance(config[key], dict)
              and path not in NAMED_BLOCKS):
            fill_defaults(config[key], value, path)
    return config


def read_schema(path: str | Path) -> dict:
    """Read a JSON schema written as YAML (the workflow's are in ``workflow/schemas/``)."""
    with open(path) as f:
        return yaml.safe_load(f)


def validate(settings: dict, schema: dict, where: str) -> None:
    """Validate ``settings`` against ``schema``; the error names ``where`` and the key at fault."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(settings), key=lambda e: list(e.path))
    if not errors:
        return
    err = errors[0]
    if err.validator == "additionalProperties":
        known = sorted(schema["properties"])
        extra = sorted(set(settings) - set(known))
        raise InputDataError(where, extra[0], f"unknown setting; known settings are {known}")
    if err.validator == "required":
        key = err.message.split("'")[1]
        raise InputDataError(where, key, "required setting is missing")
    key = ".".join(map(str, err.path)) or "<root>"
    raise InputDataError(where, key, err.message)


def _convert(value: str, spec: dict):
    """Convert a sheet cell (text) to the type the schema gives for its column."""
    kind = spec.get("type")
    if kind is None:  # a choice of words or a number (e.g. heldout: file | none | 0.2)
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "integer":
        number = float(value)
        return int(number) if number.is_integer() else number
    if kind == "number":
        return float(value)
    return value


def load_dataset_sheet(sheet: str | Path, defaults: dict, schema: dict,
                       selecting: bool = False) -> dict[str, dict]:
    """Read the dataset sheet and return ``{dataset: settings}``.

    Each row's non-empty cells override ``defaults`` (and a setting neither gives takes the
    schema's ``default`` where it has one, e.g. ``trials_table``); the merged settings are
    validated against ``schema`` (the workflow's is ``workflow/schemas/datasets.schema.yaml``).
    Errors name the sheet, the dataset and the column. ``test_fraction: auto`` becomes
    :data:`AUTO_TEST_FRACTION` where a sweep or PBT chooses among models on the validation
    trials (``selecting``), else 0 (the validation trials then see only early stopping).
    """
    if not Path(sheet).is_file():
        raise InputDataError(sheet, "datasets", f"dataset sheet not found (in {Path.cwd()}); name "
                             "yours with --config datasets=<sheet.tsv>, or run from a project "
                             "folder with config/config.yaml and its sheet (README: A project "
                             "folder of your own)")
    table = pd.read_csv(sheet, sep="\t", dtype=str, comment="#", keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    for column in ("dataset", "nwb"):
        if column not in table.columns:
            raise InputDataError(sheet, column, "required column is missing")
    unknown = [c for c in table.columns if c not in schema["properties"]]
    if unknown:
        raise InputDataError(sheet, unknown[0],
                             f"unknown column; known columns are {sorted(schema['properties'])}")
    duplicated = table["dataset"][table["dataset"].duplicated()].tolist()
    if duplicated:
        raise InputDataError(sheet, "dataset", f"dataset names must be unique; repeated: {duplicated}")

    datasets = {}
    for _, row in table.iterrows():
        name = row["dataset"].strip()
        where = f"{sheet} (dataset '{name}')"
        settings = dict(defaults)
        for key, spec in schema["properties"].items():  # settings with a default may be left out
            if "default" in spec:
                settings.setdefault(key, spec["default"])
        for column, cell in row.items():
            cell = cell.strip()
            if cell == "":
                continue
            try:
                settings[column] = _convert(cell, schema["properties"][column])
            except ValueError:
                raise InputDataError(where, column, f"'{cell}' is not a valid "
                                     f"{schema['properties'][column].get('type', 'value')}")
        validate(settings, schema, where)
        if settings.get("test_fraction") == "auto":
            settings["test_fraction"] = AUTO_TEST_FRACTION if selecting else 0.0
        datasets[name] = settings
    if not datasets:
        raise InputDataError(sheet, "dataset", "the sheet has no rows")
    return datasets


def lfads_settings_for(lfads: dict, dataset: str, run: str = "default",
                       point: dict | None = None) -> dict:
    """The LFADS settings of one dataset and run: config ``lfads``, then ``overrides[dataset]``,
    then the sweep ``point`` (``{"model": {...}, "training": {...}}``) of ``run``.

    Returns plain dicts (``model``, ``training``, ``device``, ``posterior_batch_size``) after
    checking them with :class:`lfads_core.lfads.config.ModelConfig` / ``TrainConfig``; errors name
    the key.
    """
    from ..lfads.config import ModelConfig, TrainConfig

    override = lfads.get("overrides", {}).get(dataset, {})
    point = point or {}
    merged = {"device": lfads["device"], "posterior_batch_size": lfads["posterior_batch_size"]}
    for section, cls in (("model", ModelConfig), ("training", TrainConfig)):
        values = {**lfads[section], **override.get(section, {}), **point.get(section, {})}
        try:
            cls.from_dict(values)
        except (KeyError, ValueError, TypeError) as exc:
            where = f"dataset '{dataset}'" + (f", sweep run '{run}'" if point else "")
            field = "lfads.sweep.parameters" if point.get(section) else f"lfads.{section}"
            raise InputDataError("config", field, f"{where}: {str(exc).strip(chr(34))}")
        merged[section] = values
    return merged



BASELINES = ("default", "selection", "none")


def baseline_runs(value) -> str:
    """``lfads.stitching.single_session_baseline`` as one of :data:`BASELINES`: what each row of
    a stitched group also trains on its own: one ``default`` run (also ``true``, the default),
    the group's sweep or PBT (``selection``), or nothing (``none``, also ``false``)."""
    if value is None or value is True:
        return "default"
    if value is False:
        return "none"
    if value not in BASELINES:
        raise InputDataError("config", "lfads.stitching.single_session_baseline",
                             f"{value!r} is not allowed: must be one of {list(BASELINES)} (or true/false)")
    return value
