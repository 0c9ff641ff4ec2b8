"""Small file helpers shared by the stages: atomic writes, checksums, HDF5 tables."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import h5py
import numpy as np

if TYPE_CHECKING:  # pandas only where tables are read or written (not needed to train)
    import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds.

    A failure (or a kill) never leaves a partial file at ``path``. The file gets the mode any
    program's new file gets (0o666 less the umask). ``fsync``: flush the file to disk before
    the rename, so that a crash of the machine cannot leave an empty file (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # hidden, and keeping the suffix (pynwb warns about NWB files not ending in .nwb)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates files readable by their owner only
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(obj: dict, path: str | Path) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def sha256sum(path: str | Path, chunk_bytes: int = 1 << 24) -> str:
    """SHA-256 of a file, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def write_table(group: h5py.Group, table: pd.DataFrame) -> None:
    """Store a DataFrame as one dataset per column (strings as UTF-8) in ``group``."""
    import pandas as pd

    group.attrs["columns"] = list(map(str, table.columns))
    for name in table.columns:
        values = table[name].to_numpy()
        if values.dtype.kind in "OUS" or isinstance(table[name].dtype, pd.StringDtype):
            group.create_dataset(
                name, data=np.asarray(values, dtype=object).astype(str).astype(object),
                dtype=h5py.string_dtype(),
            )
        else:
            group.create_dataset(name, data=values)


def read_table(group: h5py.Group) -> pd.DataFrame:
    """Inverse of :func:`write_table`."""
    import pandas as pd

    columns = {}
    for name in group.attrs["columns"]:
        data = group[name]
        if h5py.check_string_dtype(data.dtype) is not None:
            columns[name] = data.asstr()[()]
        else:
            columns[name] = data[()]
    return pd.DataFrame(columns)
