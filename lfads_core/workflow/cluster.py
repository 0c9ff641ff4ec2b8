"""Cluster profiles: a rule that asks for a GPU must not fall back to the CPU partition.

A SLURM profile (workflow/profiles/slurm/config.yaml) names the CPU partition once, in
``default-resources``, and gives each GPU rule the GPU partition under ``set-resources``. A
GPU rule missing there would be submitted to the CPU partition with a GPU request, and fail
only when it runs (after hours of training, for the posterior of a stitched group). The
Snakefile calls :func:`gpu_partitions_or_exit` once every rule is defined, so such a profile
stops the run, dry runs included, before any job."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def gpu_rules_on_the_default_partition(gpu_rules: Iterable[str], default_resources: Mapping,
                                       set_resources: Mapping[str, Mapping]) -> list[str]:
    """The rules among ``gpu_rules`` (those that ask for a GPU) that have no ``slurm_partition``
    of their own in ``set_resources`` (rule -> resources) while ``default_resources`` names a
    partition for every job, in name order. Empty when no default partition is set (runs on
    one machine)."""
    if "slurm_partition" not in default_resources:
        return []
    return sorted(rule for rule in gpu_rules
                  if "slurm_partition" not in set_resources.get(rule, {}))


def gpu_partitions_or_exit(gpu_rules: Iterable[str], default_resources: Mapping,
                           set_resources: Mapping[str, Mapping]) -> None:
    """:func:`gpu_rules_on_the_default_partition` for the Snakefile: any such rule ends the run
    with a message naming the rules, the partition and the fix (no traceback) and a non-zero
    exit."""
    missing = gpu_rules_on_the_default_partition(gpu_rules, default_resources, set_resources)
    if missing:
        raise SystemExit(
            f"Error: these rules ask for a GPU but have no slurm_partition of their own under "
            f"the profile's set-resources, so they would go to the partition every job gets "
            f"from default-resources ({default_resources['slurm_partition']}): "
            f"{', '.join(missing)}. Give each one the GPU partition there, as "
            f"workflow/profiles/slurm/config.yaml does (e.g. `{missing[0]}: *gpu_job`).")
