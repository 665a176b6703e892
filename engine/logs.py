"""Logging for the engine: one readable line per event on stderr, or one JSON object per line.

`setup_logging("text", verbose)` writes lines such as::

    warning probe.failed: production failed (3/30) latency=0.41s

with no timestamp, because journald (or cron's log file via `ts`, if wanted) adds the
time. When stderr is connected to the journal (systemd sets `$JOURNAL_STREAM` to its
device and inode), each line starts with a `<N>` syslog priority prefix so
`journalctl -p warning` works. `setup_logging("json", verbose)` writes one object per
line with `time`, `level`, `event`, `message`, `logger` and every extra field.

Log through `event(logger, "probe.failed", "production failed (3/30)", probe=...)` so every
line carries a stable event name machines can match on. Fields whose names say they hold
a secret (password, passwd, secret, token) are replaced by `***`: the engine never logs
secret values on purpose; this is the net under that rule.

Libraries' chatter (paramiko's "Connected (version 2.0, …)" and "Authentication …
successful!" on every SFTP connection, of which a fetch makes more than one) is not an
event of ours: below WARNING it is shown only with `-v`, at debug level, and each
distinct line once per process.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
_SECRET_WORDS = ("password", "passwd", "secret", "token")
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# syslog priorities for sd-daemon(3) prefixes: journald strips them and sets PRIORITY.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: `event()`'s fields plus any other `extra` keys."""
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD_ATTRS or key in ("event", "fields") or key.startswith("_"):
            continue
        fields[key] = value
    fields.update(getattr(record, "fields", None) or {})
    return {k: ("***" if _is_secret_name(k) else v) for k, v in fields.items()}


def event_name(record: logging.LogRecord) -> str:
    """The record's event name, or `log` for a plain logger call."""
    return str(getattr(record, "event", None) or "log")


def _format_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    # Quote values with spaces so `key=value` pairs stay splittable.
    return json.dumps(text) if (" " in text or not text) else text


class TextFormatter(logging.Formatter):
    """`level event: message key=value …`, one line (newlines in messages are escaped)."""

    def __init__(self, *, verbose: bool = False, syslog_prefix: bool = False) -> None:
        super().__init__()
        self.verbose = verbose
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        named = getattr(record, "event", None)  # plain logger calls have no event name
        parts = [record.levelname.lower(), f"{named}:" if named else "", message]
        fields = record_fields(record)
        if self.verbose:
            parts += [f"{k}={_format_value(v)}" for k, v in fields.items()]
        line = " ".join(p for p in parts if p)
        if record.exc_info and self.verbose:
            line += " | " + self.formatException(record.exc_info)
        line = line.replace("\n", "\\n")
        if self.syslog_prefix:
            line = f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, event, message, logger, fields."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": event_name(record),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, value in record_fields(record).items():
            data.setdefault(key, value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, sort_keys=False)


# Loggers of libraries whose INFO lines are connection chatter, not events.
CHATTY_LIBRARIES = ("paramiko",)


class LibraryChatter(logging.Filter):
    """Demotes the chatty libraries' lines below WARNING to DEBUG, drops them unless
    `verbose`, and lets each distinct one through once."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name.split(".")[0]
        if name not in CHATTY_LIBRARIES or record.levelno >= logging.WARNING:
            return True
        if not self.verbose:
            return False
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def stderr_is_journal(stream: TextIO | None = None) -> bool:
    """True when `stream` (stderr) is the journald stream systemd connected us to."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in wanted:
        return False
    stream = stream or sys.stderr
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return wanted == f"{info.st_dev}:{info.st_ino}"


def setup_logging(fmt: str = "text", verbose: bool = False,
                  stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records to stderr in `fmt`; return the handler installed.

    Calling it again replaces the handler it installed before (the CLI calls it once;
    tests may call it several times).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use one of: {', '.join(FORMATS)})")
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(verbose=verbose,
                                           syslog_prefix=stderr_is_journal(stream)))
    handler.addFilter(LibraryChatter(verbose))
    handler._failover_engine = True  # type: ignore[attr-defined]  # marks ours for replacement
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_failover_engine", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


def event(logger: logging.Logger, name: str, message: str, *, level: int = logging.INFO,
          **fields: Any) -> None:
    """Log one event: a stable dotted `name`, a readable `message` and structured fields."""
    logger.log(level, message, extra={"event": name, "fields": fields})
