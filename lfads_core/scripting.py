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
    logged and ends the script with exit status 1; the console shows the message alone, the
    log file also the traceback. Any other exception is logged and re-raised. Either way the
    rule fails and Snakemake removes its outputs.
    """
    root = logging.getLogger()
    handlers = [logging.FileHandler(log_file, mode="w"), logging.StreamHandler(sys.stderr)]
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handlers[0].setFormatter(logging.Formatter(fmt))
    handlers[1].setFormatter(_NoTracebackFormatter(fmt))
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield logging.getLogger("workflow")
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
