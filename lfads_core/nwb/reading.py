"""Reading NWB files with h5py alone, checking every dataset before its values are read.

NWB files come from many labs and tools; this module trusts nothing a file declares. Before
a dataset is read it must hold numbers (or text where text is expected), its declared size
must be what the file really stores (a chunked dataset whose chunks were never written reads
as fill values), and a ragged column's index must fit its data. So memory is bounded by what
the file stores, and a corrupt or hostile file ends in an :class:`InputDataError` naming the
file and the field, never a ``MemoryError`` or ``IndexError``.

Layout read (NWB 2.x): ``/units`` and a trials table under ``/intervals/`` (``trials`` unless
the setting ``trials_table`` names another), DynamicTables: a ``colnames`` attribute (a
column's dataset it leaves out is read too, with a warning), an ``id`` dataset, one dataset
per column, ragged columns as ``{name}`` plus ``{name}_index``; TimeSeries in
``/processing/{module}`` and ``/acquisition`` (``data``; ``timestamps`` or ``starting_time``
with a ``rate`` attribute; ``conversion`` and ``offset``).
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..errors import InputDataError

NUMBERS = "iuf"
BEHAVIOR_MODULE = "behavior"
TRUTH_MODULE = "ground_truth"


def open_nwb_h5(path: str | Path) -> h5py.File:
    """Open an NWB file read-only with h5py; errors name the file and the field ``file``."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(path, "file", "file not found")
    if not h5py.is_hdf5(path):
        raise InputDataError(path, "file", "not an HDF5 file, so not an NWB file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputDataError(path, "file", f"not a readable NWB file (HDF5 error: {exc})")
    if "nwb_version" not in f.attrs and f.attrs.get("neurodata_type") != "NWBFile":
        f.close()
        raise InputDataError(path, "file", "not a readable NWB file (an HDF5 file without the "
                             "root attribute 'nwb_version')")
    return f


def check_stored(ds: h5py.Dataset, path, field: str) -> None:
    """Refuse a dataset whose declared size is more than the file stores."""
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL or plist.get_external_count() > 0:
        raise InputDataError(path, field, "stored in other files (external or virtual "
                             "dataset), which is not supported")
    if ds.size == 0 or layout == h5py.h5d.COMPACT:
        return
    if layout == h5py.h5d.CHUNKED:
        needed = math.prod(math.ceil(n / c) for n, c in zip(ds.shape, ds.chunks))
        stored = ds.id.get_num_chunks()
        if stored < needed:
            raise InputDataError(path, field, f"declares {ds.size:,} values but the file stores "
                                 f"only {stored:,} of its {needed:,} chunks (the rest would "
                                 "read as fill values); the file is truncated or corrupt")
        return
    declared = ds.size * ds.id.get_type().get_size()
    stored = ds.id.get_storage_size()
    if stored < declared:
        raise InputDataError(path, field, f"declares {ds.size:,} values ({declared:,} bytes) "
                             f"but the file stores {stored:,} bytes; the file is truncated or "
                             "corrupt")


def check_numeric(ds: h5py.Dataset, path, field: str, kinds: str = NUMBERS) -> None:
    """Refuse a dataset that does not hold numbers (of the given numpy kinds)."""
    if ds.dtype.kind not in kinds or ds.dtype.names is not None:
        what = "text" if h5py.check_string_dtype(ds.dtype) is not None else f"'{ds.dtype}'"
        raise InputDataError(path, field, f"holds {what} values, not numbers")


def read(ds: h5py.Dataset, path, field: str, selection=()) -> np.ndarray:
    """Read (part of) a checked dataset; an HDF5 read error (e.g. a corrupt compressed
    chunk) becomes an error naming the file and the field."""
    try:
        return ds[selection]
    except (OSError, ValueError) as exc:
        raise InputDataError(path, field, f"cannot be read ({exc})")


def dataset(group: h5py.Group, name: str, path, field: str) -> h5py.Dataset | None:
    """``group[name]`` if it is a dataset, None if absent; anything else is refused."""
    obj = group.get(name)
    if obj is None:
        return None
    if not isinstance(obj, h5py.Dataset):
        raise InputDataError(path, field, "is a group, not a dataset")
    return obj


def table_group(f: h5py.File, location: str, path, field: str) -> h5py.Group | None:
    """The DynamicTable at ``location`` (e.g. ``units``), None if absent; checks its ids."""
    group = f.get(location)
    if group is None:
        return None
    if not isinstance(group, h5py.Group) or "id" not in group:
        raise InputDataError(path, field, "is not a table (no 'id' dataset)")
    check_stored(group["id"], path, f"{field}.id")
    check_numeric(group["id"], path, f"{field}.id", "iu")
    return group


def ragged(group: h5py.Group, name: str, path, field: str, n_rows: int
           ) -> tuple[h5py.Dataset, np.ndarray] | None:
    """``(data, ends)`` of a ragged column ``name`` (``name`` + ``name_index``), None if the
    table has no such column. Row ``k`` owns ``data[ends[k-1]:ends[k]]``. The index must be
    integers, one per row, non-decreasing and within the data; the data numbers and stored."""
    data = dataset(group, name, path, f"{field}.{name}")
    index = dataset(group, f"{name}_index", path, f"{field}.{name}_index")
    if data is None:
        return None
    if index is None:
        raise InputDataError(path, f"{field}.{name}_index", f"'{name}' has no index dataset, "
                             "so it cannot be split into rows")
    for ds, part in ((index, f"{name}_index"), (data, name)):
        check_numeric(ds, path, f"{field}.{part}", "iu" if ds is index else NUMBERS)
        check_stored(ds, path, f"{field}.{part}")
    if index.ndim != 1 or len(index) != n_rows:
        raise InputDataError(path, f"{field}.{name}_index",
                             f"has shape {index.shape} but the table has {n_rows} rows")
    ends = read(index, path, f"{field}.{name}_index").astype(np.int64)
    n_data = data.shape[0] if data.ndim else 0
    if n_rows and (ends[0] < 0 or np.any(np.diff(ends) < 0)):
        raise InputDataError(path, f"{field}.{name}_index", "is not a non-decreasing list of "
                             "non-negative offsets")
    if n_rows and ends[-1] > n_data:
        raise InputDataError(path, f"{field}.{name}_index",
                             f"points past the data: it ends at {ends[-1]:,} but "
                             f"'{field}.{name}' holds {n_data:,} values")
    return data, ends


def interval_tables(f: h5py.File) -> list[str]:
    """The names of the tables (``TimeIntervals``, or any group with an ``id`` dataset) under
    ``intervals/``: ``trials``, ``epochs``, ``invalid_times`` and any a lab adds."""
    group = f.get("intervals")
    if not isinstance(group, h5py.Group):
        return []
    return sorted(name for name, obj in group.items()
                  if isinstance(obj, h5py.Group) and (
                      obj.attrs.get("neurodata_type") in ("TimeIntervals", b"TimeIntervals")
                      or isinstance(obj.get("id"), h5py.Dataset)))


def hidden_columns(group: h5py.Group, names: list[str]) -> list[str]:
    """Datasets of a table's group that its ``colnames`` attribute does not list (``names``):
    columns a tool wrote but left out of ``colnames`` (pynwb then does not show them). The
    ``id`` and the ``*_index`` datasets of ragged columns are not columns."""
    datasets = [name for name, obj in group.items() if isinstance(obj, h5py.Dataset)]
    index_of = {f"{name}_index" for name in datasets}
    return [name for name in datasets
            if name != "id" and name not in names and name not in index_of]


def scalar_table(group: h5py.Group, path, field: str
                 ) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """The columns holding one number or text per row, ``{column: why}`` of the others
    (ragged, several values per row, references or compound values), and the columns read
    although the table's ``colnames`` does not list them (:func:`hidden_columns`; read like the
    others, so that no column stored in the file is lost)."""
    ids = read(group["id"], path, f"{field}.id")
    n = len(ids)
    names = [str(c.decode() if isinstance(c, bytes) else c)
             for c in np.atleast_1d(group.attrs.get("colnames", []))]
    hidden = hidden_columns(group, names)
    index_targets = {name[:-len("_index")] for name in group if name.endswith("_index")}
    columns, skipped = {"id": ids}, {}
    for name in names + hidden:
        ds = dataset(group, name, path, f"{field}.{name}")
        if ds is None:
            raise InputDataError(path, f"{field}.{name}", "listed in 'colnames' but absent")
        if name in index_targets:
            skipped[name] = "ragged (several values per row)"
            continue
        if ds.ndim != 1:
            skipped[name] = f"{ds.ndim}-D (one value per row expected)"
            continue
        text = h5py.check_string_dtype(ds.dtype) is not None
        if not text and (ds.dtype.kind not in NUMBERS + "b" or ds.dtype.names is not None):
            skipped[name] = f"values of type {ds.dtype} (not numbers or text)"
            continue
        if len(ds) != n:
            if name in hidden:
                skipped[name] = f"{len(ds)} values for {n} rows (not listed in 'colnames')"
                continue
            raise InputDataError(path, f"{field}.{name}",
                                 f"has {len(ds)} values but the table has {n} rows")
        check_stored(ds, path, f"{field}.{name}")
        values = read(ds.asstr() if text else ds, path, f"{field}.{name}")
        columns[name] = np.asarray(values, dtype=object) if text else values
    for name in hidden:
        if name in skipped and "colnames" not in skipped[name]:
            skipped[name] += " (not listed in 'colnames')"
    return pd.DataFrame(columns), skipped, hidden


# --- TimeSeries ----------------------------------------------------------------------------

def _is_series(obj) -> bool:
    return isinstance(obj, h5py.Group) and isinstance(obj.get("data"), h5py.Dataset)


def _places(f: h5py.File, module: str) -> list[h5py.Group]:
    places = []
    for location in (f"processing/{module}", "acquisition"):
        group = f.get(location)
        if isinstance(group, h5py.Group):
            places.extend(obj for obj in group.values() if isinstance(obj, h5py.Group))
    return places


def series_names(f: h5py.File, module: str = BEHAVIOR_MODULE) -> list[str]:
    """Every TimeSeries in ``processing/{module}`` and ``acquisition``; one inside a container
    (e.g. ``Position``) is listed as ``container/series``."""
    names = []
    for obj in _places(f, module):
        base = obj.name.rsplit("/", 1)[1]
        if _is_series(obj):
            names.append(base)
        else:
            names.extend(f"{base}/{k}" for k, child in obj.items() if _is_series(child))
    return names


def find_series(f: h5py.File, name: str, path, module: str = BEHAVIOR_MODULE) -> h5py.Group:
    """The TimeSeries ``name`` in ``processing/{module}`` or ``acquisition``: a series of that
    name, a series of that name inside a container, ``container/series``, or a container of
    that name holding exactly one series. Errors list the series the file has."""
    field = f"processing/{module}/{name}"
    found = []
    for obj in _places(f, module):
        base = obj.name.rsplit("/", 1)[1]
        children = {k: c for k, c in obj.items() if _is_series(c)} if not _is_series(obj) else {}
        if _is_series(obj) and base == name:
            found.append(obj)
        elif name in children:
            found.append(children[name])
        elif "/" in name and name.split("/", 1)[0] == base and name.split("/", 1)[1] in children:
            found.append(children[name.split("/", 1)[1]])
        elif base == name and children:
            if len(children) > 1:
                raise InputDataError(path, field, f"'{name}' is a container of several series "
                                     f"({sorted(children)}); name one of them")
            found.extend(children.values())
    if not found:
        available = series_names(f, module)
        raise InputDataError(path, field, "behaviour series named in the settings is not in "
                             f"the file; the series there are {available or 'none'}")
    if len({obj.name for obj in found}) > 1:
        raise InputDataError(path, field, f"several series match: {[o.name for o in found]}; "
                             "name one as container/series")
    return found[0]


def check_series(group: h5py.Group, path, field: str) -> None:
    """Check a TimeSeries' datasets without reading its samples: numbers, stored sizes,
    timestamps matching the data, or a starting time with a positive rate."""
    data_ds = group["data"]
    check_numeric(data_ds, path, f"{field}.data")
    check_stored(data_ds, path, f"{field}.data")
    if data_ds.ndim not in (1, 2):
        raise InputDataError(path, f"{field}.data", f"has {data_ds.ndim} dimensions; "
                             "1 (samples) or 2 (samples x dims) expected")
    timestamps = dataset(group, "timestamps", path, f"{field}.timestamps")
    if timestamps is not None:
        check_numeric(timestamps, path, f"{field}.timestamps")
        check_stored(timestamps, path, f"{field}.timestamps")
        if timestamps.shape != data_ds.shape[:1]:
            raise InputDataError(path, f"{field}.timestamps", f"has shape {timestamps.shape}"
                                 f" but the data has {data_ds.shape[0]} samples")
        return
    start = dataset(group, "starting_time", path, f"{field}.starting_time")
    rate = start.attrs.get("rate") if start is not None else None
    if start is None or start.shape != () or start.dtype.kind not in NUMBERS or \
            rate is None or not (np.isfinite(rate) and rate > 0):
        raise InputDataError(path, f"{field}.starting_time", "neither timestamps nor a "
                             "numeric starting_time with a rate > 0")


def series_arrays(group: h5py.Group, path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps (samples,), data (samples x dims))`` of a TimeSeries, in seconds and in
    its ``unit`` (``conversion`` and ``offset`` applied), after :func:`check_series`."""
    check_series(group, path, field)
    data_ds = group["data"]
    if "timestamps" in group:
        times = read(group["timestamps"], path, f"{field}.timestamps").astype(np.float64)
    else:
        start = group["starting_time"]
        times = float(start[()]) + np.arange(data_ds.shape[0]) / float(start.attrs["rate"])
    data = read(data_ds, path, f"{field}.data")
    conversion = float(data_ds.attrs.get("conversion", 1.0))
    offset = float(data_ds.attrs.get("offset", 0.0))
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    if conversion != 1.0 or offset != 0.0:
        data = data * conversion + offset
    if data.ndim == 1:
        data = data[:, None]
    return times, data


def series_unit(group: h5py.Group) -> str:
    unit = group["data"].attrs.get("unit", "")
    return unit.decode() if isinstance(unit, bytes) else str(unit)
