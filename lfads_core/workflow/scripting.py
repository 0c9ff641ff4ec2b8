"""Support for the workflow's scripts: log to the rule's log file and to the console."""

from __future__ import annotations

import contextlib
import logging
import sys

from ..errors import InputDataError
from ..provenance import write_rule_record


@contextlib.contextmanager
def rule_logging(snakemake):
    """Run a rule's ``script:`` body: send log records and warnings to the rule's log file and
    stderr, and on success write the rule's provenance record (output ``provenance``, see
    :mod:`lfads_core.provenance`).

    Bad input (:class:`InputDataError`, whose message names the file and field at fault) is
    logged and ends the script with exit status 1; the console shows the message alone, the
    log file also the traceback. Any other exception is logged and re-raised. Either way the
    rule fails and Snakemake removes its outputs.
    """
    root = logging.getLogger()
    handlers = [logging.FileHandler(snakemake.log[0], mode="w"), logging.StreamHandler(sys.stderr)]
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handlers[0].setFormatter(logging.Formatter(fmt))
    handlers[1].setFormatter(_NoTracebackFormatter(fmt))
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield logging.getLogger("workflow")
        if "provenance" in snakemake.output.keys():
            write_rule_record(snakemake, snakemake.output.provenance)
    except InputDataError as exc:
        logging.getLogger("workflow").error("bad input: %s", exc, exc_info=True)
        raise SystemExit(1)
    except Exception as exc:
        logging.getLogger("workflow").error("%s: %s", type(exc).__name__, exc)
        raise
    finally:
        logging.captureWarnings(False)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


class _NoTracebackFormatter(logging.Formatter):
    """A formatter that leaves out tracebacks (the log file keeps them)."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info, record.exc_text = None, None
        return super().format(record)
