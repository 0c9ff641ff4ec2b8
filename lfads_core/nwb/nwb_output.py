"""What every LFADS output NWB file shares, trials or a continuous recording: the processing
module and the names' prefix, and a new file with the identity of the recording it comes from
(:func:`new_nwb_file`)."""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path

import numpy as np

from .. import __version__

# The processing module of the output. nwbinspector (check_processing_module_name) asks for
# one of NWB's schema names: ecephys, icephys, behavior, ophys, misc, ogen, retinotopy. The
# output is a model's latent variables (factors, inferred inputs) and inferred rates, derived
# from the recording but no extracellular signal itself, and the same model runs on other
# modalities (the gamma and zero-inflated gamma likelihoods are for calcium imaging), so
# ``misc``, NWB's module for processed data of no one modality, fits it; ``ecephys`` would
# claim an electrophysiological signal.
MODULE = "misc"
PREFIX = "lfads_"
_SUBJECT_FIELDS = ("age", "age__reference", "description", "genotype", "sex", "species",
                   "subject_id", "weight", "strain", "date_of_birth")
_FILE_FIELDS = ("session_id", "experimenter", "institution", "lab", "experiment_description",
                "protocol", "related_publications")
_SETTINGS_PREFIX = "LFADS export settings and provenance (JSON): "


def new_nwb_file(src, settings: dict, source_nwb=None):
    """``(nwbfile, source_name)``: a new in-memory ``NWBFile`` with the identity of the open
    recording ``src`` (start time, subject, session and lab fields; an identifier derived from
    the source's identifier and ``settings['posterior_sha256']``; ``settings``, with the
    source's identifier added, as JSON in ``data_collection``)."""
    from pynwb import NWBFile

    sha = settings["source_sha256"]
    source_name = Path(settings["source"] or source_nwb or "").name
    extra = {k: getattr(src, k) for k in _FILE_FIELDS if getattr(src, k, None) is not None}
    extra = {k: (list(v) if isinstance(v, (tuple, np.ndarray)) else v)
             for k, v in extra.items()}
    keywords = [k.decode() if isinstance(k, bytes) else str(k)
                for k in (src.keywords[:] if src.keywords is not None else [])]
    settings["source_identifier"] = src.identifier
    nwb = NWBFile(
        session_description=(
            f"LFADS output (latent factors, inferred firing rates and inferred inputs) "
            f"of the recording {source_name} (sha256 {sha}, identifier {src.identifier}). "
            f"The recording's description: {src.session_description}"),
        # the same inputs keep the same identifier across versions
        identifier=str(uuid.uuid5(uuid.NAMESPACE_URL, f"lfads_core.nwb_export:"
                                  f"{src.identifier}:{settings['posterior_sha256']}")),
        session_start_time=src.session_start_time,
        timestamps_reference_time=src.timestamps_reference_time,
        file_create_date=datetime.datetime.now(datetime.timezone.utc),
        keywords=list(dict.fromkeys(keywords + ["LFADS", "latent dynamics"])),
        subject=_copy_subject(src),
        was_generated_by=[["lfads_core", __version__]],
        source_script=f"lfads_core.nwb.export.write_factors_nwb (lfads_core {__version__})",
        source_script_file_name="lfads_core/nwb/export.py",
        data_collection=_SETTINGS_PREFIX + json.dumps(settings),
        **extra,
    )
    return nwb, source_name


def _copy_subject(src):
    from pynwb.file import Subject

    if src.subject is None:
        return None
    fields = {k: getattr(src.subject, k, None) for k in _SUBJECT_FIELDS}
    return Subject(**{k: v for k, v in fields.items() if v is not None})
