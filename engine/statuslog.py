"""Job status logs: one outcome line per run, read back by `check dump-age` and `check_dump_age`.

Writing: `write_outcome(path, ok, reason)` appends exactly one line in UTC,

    2026-11-26T07:17:03+0000 INFO: completed ok
    2026-11-26T08:17:41+0000 ERROR: import_oracle: ORA-39002: invalid operation

the format the original `check_db_dump_recent.py` and other tools read.

Reading: `read_status_log(path)` understands both styles of the original scripts:

* Oracle style (`1_runDbUpdate.sh`): a bare timestamp line opens a run, error lines carry
  no timestamp, success is `<time> INFO: completed ok` or a bare `completed ok` line (which
  takes the time of its run's opening line, or the file's mtime when it is the last line).
* MariaDB style (`failover_import.py`): every line is `<time> LEVEL: message`.

Timestamps may end in `+0000`, `Z` or any other offset (`+0100`, `-05:00`) and are compared
timezone-aware; a timestamp without an offset is taken as UTC, because every writer of
these logs writes UTC (the original's defect was judging them in local naive time).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import FailoverError
from engine.fsutil import append_line

OK_TEXT = "completed ok"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S+0000"
_MAX_REASON = 2000

_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?$"
)
_LEVEL = re.compile(r"^(DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL)\b:?\s*(.*)$", re.I)
_FAILURE_LEVELS = {"ERROR", "CRITICAL", "FATAL"}
_SWAP_MARK = re.compile(r"^NOTICE:\s+swap into (\S+) (started|finished)\b")
# The Oracle script's run header: "==============Updating Log <date(1) output> =========".
_HEADER = re.compile(r"^=+\s*Updating Log\s+(.*?)\s*=*$", re.I)
_DATE1_FORMATS = ("%a %b %d %H:%M:%S %Z %Y", "%a %d %b %Y %H:%M:%S %Z")


class StatusLogError(FailoverError):
    """The status log cannot be read; the message names the file and what to do."""


@dataclass(frozen=True)
class LogOutcome:
    """One run's outcome line: success or failure, when (None if undated), where, and its text."""

    ok: bool
    time: datetime | None
    line_no: int
    text: str


@dataclass(frozen=True)
class StatusLog:
    """What a status log says: the last success and the last outcome (success or failure)."""

    path: Path | None
    line_count: int
    last_success: LogOutcome | None
    last_outcome: LogOutcome | None
    run_open: bool  # a run started after the last outcome and has not reported yet
    # Databases whose swap began (`NOTICE: swap into DB started`) with no `finished` line
    # after it: the importer died mid-swap and live may be half-swapped (import_mariadb).
    open_swaps: tuple[str, ...] = ()

    @property
    def last_success_time(self) -> datetime | None:
        """When the last `completed ok` was written (None if never, or undated)."""
        return self.last_success.time if self.last_success else None

    def success_age(self, now: datetime | None = None) -> float | None:
        """Seconds since the last dated success (never negative); None when there is none."""
        when = self.last_success_time
        if when is None:
            return None
        return max(0.0, (_aware(now) - when).total_seconds())

    def success_ahead(self, now: datetime | None = None) -> float:
        """Seconds the last dated success lies in the future (clock skew); 0 when it does not."""
        when = self.last_success_time
        if when is None:
            return 0.0
        return max(0.0, (when - _aware(now)).total_seconds())


def parse_time(token: str) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime, or None when `token` is not one."""
    token = token.strip()
    if not _TIMESTAMP.match(token):
        return None
    try:
        value = datetime.fromisoformat(token.replace(",", "."))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_date1(text: str) -> datetime | None:
    # Only UTC/GMT date(1) output is unambiguous; any other zone leaves the run undated.
    if not re.search(r"\b(UTC|GMT)\b", text):
        return None
    for fmt in _DATE1_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def parse_lines(lines: Iterable[str], *, path: Path | None = None,
                fallback_time: datetime | None = None) -> StatusLog:
    """Scan a status log's lines (either style) for the last success and the last outcome.

    `fallback_time` (the file's mtime) dates a bare `completed ok` that is the last line of
    the file and has no dated run header before it.
    """
    run_time: datetime | None = None
    last_success: LogOutcome | None = None
    last_outcome: LogOutcome | None = None
    run_open = False
    count = 0
    undated_tail: LogOutcome | None = None
    swaps: dict[str, int] = {}
    for count, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        undated_tail = None
        outcome: LogOutcome | None = None
        first, _, rest = line.partition(" ")
        stamp = parse_time(first)
        if stamp is not None:
            run_time = stamp
            rest = rest.strip()
            if marker := _SWAP_MARK.match(rest):
                if marker.group(2) == "started":
                    swaps[marker.group(1)] = count
                else:
                    swaps.pop(marker.group(1), None)
                continue
            level = _LEVEL.match(rest)
            if not rest:
                run_open = True  # Oracle style: a bare timestamp opens a run
            elif level:
                name, message = level.group(1).upper(), level.group(2).strip()
                if name in _FAILURE_LEVELS:
                    outcome = LogOutcome(False, stamp, count, line)
                elif message.lower() == OK_TEXT:
                    outcome = LogOutcome(True, stamp, count, line)
            elif rest.lower().endswith(OK_TEXT):
                outcome = LogOutcome(True, stamp, count, line)
        elif line.lower() == OK_TEXT:
            outcome = LogOutcome(True, run_time, count, line)
            if run_time is None:
                undated_tail = outcome
        elif header := _HEADER.match(line):
            run_time = _parse_date1(header.group(1))
            run_open = True
        else:
            # Oracle style: an untimestamped line is an error message of the current run.
            outcome = LogOutcome(False, run_time, count, line)
        if outcome is not None:
            last_outcome = outcome
            run_open = False
            if outcome.ok:
                last_success = outcome
    if undated_tail is not None and fallback_time is not None and last_success is undated_tail:
        last_success = LogOutcome(True, fallback_time, undated_tail.line_no, undated_tail.text)
        last_outcome = last_success
    return StatusLog(path, count, last_success, last_outcome, run_open, tuple(sorted(swaps)))


def read_status_log(path: str | Path) -> StatusLog:
    """Read and parse a status log; raise StatusLogError naming the file when it is unreadable.

    Only a regular file is read, and only its last 4 MiB (engine/safefile.py): `/dev/zero`,
    a FIFO or a huge log cannot exhaust memory or block."""
    from engine.safefile import FileRefused, read_limited

    path = Path(path)
    try:
        data = read_limited(path, "status_log", from_end=True)
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileRefused as error:
        if error.missing:
            raise StatusLogError(
                f"status log {path} does not exist: has the job ever run? "
                "(check the job's status_log)") from None
        raise StatusLogError(str(error)) from None
    except OSError as error:
        raise StatusLogError(
            f"cannot read status log {path}: {error.strerror or error} (check its owner and mode)"
        ) from None
    text = data.decode("utf-8", errors="replace")
    return parse_lines(text.splitlines(), path=path, fallback_time=mtime)


def format_outcome(ok: bool, reason: str = "", now: datetime | None = None) -> str:
    """The one line a run appends: `<UTC time> INFO: completed ok` or `<UTC time> ERROR: reason`."""
    stamp = _aware(now).astimezone(UTC).strftime(TIME_FORMAT)
    if ok:
        return f"{stamp} INFO: {OK_TEXT}"
    # One line per run, and never the success words: the original check matches any line
    # containing "completed ok", so a failure reason quoting them would read as a success.
    text = " | ".join(part.strip() for part in reason.splitlines() if part.strip()) or "failed"
    text = re.sub(re.escape(OK_TEXT), "completed-ok", text, flags=re.I)
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 1] + "…"
    return f"{stamp} ERROR: {text}"


def write_outcome(path: str | Path, ok: bool, reason: str = "",
                  now: datetime | None = None) -> str:
    """Append one outcome line durably (O_APPEND + fsync) and return it."""
    line = format_outcome(ok, reason, now)
    try:
        append_line(path, line)
    except OSError as error:
        raise StatusLogError(
            f"cannot append to status log {path}: {error.strerror or error} "
            "(check that its directory exists and is writable by the engine's user)"
        ) from None
    return line


def write_note(path: str | Path, level: str, text: str, now: datetime | None = None) -> str:
    """Append a line that is no run outcome (`WARNING: …`, `NOTICE: …`): readers of the log
    (`check dump-age`, the engage gate) skip it, so a refused run or a failed archive after
    a good import never reads as a failed import. Returns the line."""
    stamp = _aware(now).astimezone(UTC).strftime(TIME_FORMAT)
    body = " | ".join(part.strip() for part in text.splitlines() if part.strip()) or "-"
    body = re.sub(re.escape(OK_TEXT), "completed-ok", body, flags=re.I)[:_MAX_REASON]
    line = f"{stamp} {level}: {body}"
    try:
        append_line(path, line)
    except OSError as error:
        raise StatusLogError(f"cannot append to status log {path}: {error.strerror or error}"
                             ) from None
    return line


def write_swap_mark(path: str | Path, database: str, finished: bool) -> str:
    """`NOTICE: swap into DB started` before a swap, `… finished` once live is whole again."""
    word = "finished (live checked against the dump)" if finished else "started"
    return write_note(path, "NOTICE", f"swap into {database} {word}")
