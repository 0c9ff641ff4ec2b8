"""lfads_core: NWB recordings to LFADS latent dynamics.

The package holds the plain functions the workflow's stages call (simulation, NWB ingestion,
spike binning, trial alignment) and the LFADS model. It is importable without Snakemake.
"""

__version__ = "0.1.0"
