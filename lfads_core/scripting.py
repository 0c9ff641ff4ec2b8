"""Support for the workflow's scripts: log to the rule's log file and to the console."""

from __future__ import annotations

import contextlib
import logging
import sys

from .errors import InputDataError


@contextlib.contextmanager
def rule_logging(log_file: str):
    """Send log records and warnings to ``log_file`` and stderr for the duration of a rule.

    Bad input (:class:`InputDataError`, whose message names the file and field at fault) is
    logged and ends the script with exit status 1, without a traceback; any other exception is
    logged and re-raised. Either way the rule fails and Snakemake removes its outputs.
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
    except InputDataError as exc:
        logging.getLogger("workflow").error("bad input: %s", exc)
        raise SystemExit(1)
    except Exception as exc:
        logging.getLogger("workflow").error("%s: %s", type(exc).__name__, exc)
        raise
    finally:
        logging.captureWarnings(False)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
