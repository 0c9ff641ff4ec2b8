"""Support for the workflow's scripts: log to the rule's log file and to the console."""

from __future__ import annotations

import contextlib
import logging
import sys


@contextlib.contextmanager
def rule_logging(log_file: str):
    """Send log records and warnings to ``log_file`` and stderr for the duration of a rule.

    An exception is written to the log (its message names the file and field at fault) and
    re-raised, so the rule fails with a non-zero exit and Snakemake removes its outputs.
    """
    root = logging.getLogger()
    handlers = [logging.FileHandler(log_file, mode="w"), logging.StreamHandler(sys.stderr)]
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield logging.getLogger("workflow")
    except Exception as exc:
        logging.getLogger("workflow").error("%s: %s", type(exc).__name__, exc)
        raise
    finally:
        logging.captureWarnings(False)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
