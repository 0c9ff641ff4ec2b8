"""Provenance records: what made a result file, so that any result can be traced to its NWB file.

Every rule of the workflow writes one JSON record next to its outputs
(``results/{dataset}/provenance/{rule}.json``, ``..._{run}.json`` for LFADS runs) holding:

* ``rule`` and ``wildcards``;
* ``inputs`` and ``outputs``: for each named file, its path and sha256;
* ``settings``: the rule's params, i.e. exactly the settings its stage read;
* ``versions`` of lfads_core, torch, numpy, h5py, pynwb and snakemake;
* ``workflow``: the version of the workflow that ran the rule (:func:`workflow_version`);
* ``created``: when the record was written (UTC, ISO 8601).

Following ``inputs`` from one record to the record whose ``outputs`` hold the same file (path
and checksum) leads from any table or figure back to the recording (:func:`trace`).
"""

from __future__ import annotations

import datetime
import functools
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

from .fileio import sha256sum, write_json

PACKAGES = ("lfads-core", "torch", "numpy", "h5py", "pynwb", "snakemake")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on (without importing them)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_records(files: Mapping[str, str | Iterable[str]]) -> dict:
    """``{name: path or [paths]}`` -> ``{name: {"path", "sha256"} or [...]}``."""
    def one(path):
        return {"path": str(path), "sha256": sha256sum(path)}

    return {name: one(paths) if isinstance(paths, (str, Path)) else [one(p) for p in paths]
            for name, paths in files.items()}


@functools.cache
def workflow_version(folder: str | Path) -> str:
    """The version of the workflow checkout holding ``folder``: its git commit (with
    ``+modified`` where tracked files differ from it), or lfads_core's version where the
    folder is not in a git checkout (an installed copy)."""
    from . import __version__

    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=10)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return f"lfads_core {__version__} (not a git checkout)"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"lfads_core {__version__} (git not available)"
    return f"git {commit.stdout.strip()}{'+modified' if dirty else ''} (lfads_core {__version__})"


def rule_record(rule: str, wildcards: Mapping, inputs: Mapping, outputs: Mapping,
                settings: Mapping, workflow: str | None = None) -> dict:
    """The provenance record of one rule run (see the module docstring); ``workflow``: the
    workflow's version (:func:`workflow_version` of the running rule's scripts)."""
    return {
        "rule": rule,
        "wildcards": dict(wildcards),
        "inputs": file_records(inputs),
        "outputs": file_records(outputs),
        "settings": dict(settings),
        "versions": package_versions(),
        "workflow": workflow,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_rule_record(snakemake, path: str | Path) -> None:
    """Write the record of the running Snakemake ``script:`` job to ``path`` (every named
    output but ``path`` itself)."""
    outputs = {name: files for name, files in snakemake.output.items() if files != str(path)}
    record = rule_record(snakemake.rule, dict(snakemake.wildcards.items()),
                         dict(snakemake.input.items()), outputs, dict(snakemake.params.items()),
                         workflow_version(snakemake.scriptdir))
    write_json(record, path)


def load_records(folder: str | Path) -> list[dict]:
    """Every provenance record under ``folder`` (recursively)."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).rglob("provenance/*.json"))]


def trace(path: str | Path, records: list[dict]) -> list[dict]:
    """The chain of records that made ``path``: the record listing it as an output, then,
    depth first, the records that made each of that record's inputs (matched by path and
    checksum; record paths are relative to the workflow's working directory).

    Inputs no record made (the recording) end the chain. Raises ``LookupError`` if no record
    lists ``path`` with its present checksum (it was not made by the workflow, or changed
    since)."""
    made = {(entry["path"], entry["sha256"]): record
            for record in records for entry in _entries(record["outputs"])}
    start = Path(path).as_posix()
    digest = sha256sum(path)
    first = [key for key in made if key[1] == digest and start.endswith(key[0])]
    if not first:
        raise LookupError(f"{path}: no provenance record lists this file (sha256 {digest})")
    chain, todo, seen = [], [first[0]], set()
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        record = made.get(key)
        if record is None:
            continue  # a source: the recording, or a file made outside the workflow
        if any(record is r for r in chain):
            continue  # another of its outputs was an input too (a model and its config)
        chain.append(record)
        todo += [(entry["path"], entry["sha256"]) for entry in _entries(record["inputs"])]
    return chain


def _entries(files: dict) -> list[dict]:
    return [e for value in files.values() for e in (value if isinstance(value, list) else [value])]
