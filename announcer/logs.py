"""How the daemon's log lines look: text for humans and journald, or one JSON object a line.

A record's `extra` keys are its stable fields. The text format appends them as `key=value`
(`event=transition old=down new=rising reason=ok`, values with spaces quoted), so a line reads
well and greps well; the JSON format puts them next to `message`. Under journald
(`$JOURNAL_STREAM` set) text lines carry no timestamp (the journal adds one) but a `<N>`
syslog priority prefix, which journald turns into the entry's priority.

Must not: decide what is logged or at which level; the modules that log do.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import string
import sys
import time
from collections.abc import Mapping
from typing import Final, TextIO

from announcer.config.model import LogFormat

__all__ = ["LogFormat", "configure", "fields_of"]

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)
_SYSLOG_PRIORITY: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_PLAIN: Final = frozenset(string.ascii_letters + string.digits + ".:/_-+@,[]")


def fields_of(record: logging.LogRecord) -> dict[str, object]:
    """The record's `extra` fields, in the order they were given."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _value(value: object) -> str:
    text = value.value if isinstance(value, enum.Enum) else value
    text = str(text)
    if text and all(char in _PLAIN for char in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL logger: message key=value...`; under journald `<N>logger: message ...`."""

    def __init__(self, *, journald: bool) -> None:
        super().__init__()
        self._journald = journald

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields = " ".join(f"{key}={_value(value)}" for key, value in fields_of(record).items())
        line = f"{record.name}: {message}" + (f" {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if self._journald:
            priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
            # journald reads the prefix on the first line only; keep tracebacks in one entry.
            return f"<{priority}>" + line.replace("\n", "\n  ")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        return f"{stamp}.{int(record.msecs):03d} {record.levelname} {line}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (epoch seconds), level, logger, message, the fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            entry.setdefault(key, value.value if isinstance(value, enum.Enum) else value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(
    log_format: LogFormat,
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send every record of the `announcer` loggers at `level` or above to `stream` (stderr);
    returns the handler (to remove it again in tests)."""
    env = os.environ if environ is None else environ
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(journald=bool(env.get("JOURNAL_STREAM"))))
    root = logging.getLogger("announcer")
    root.addHandler(handler)
    root.setLevel(level)
    return handler
