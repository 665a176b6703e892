"""Cron schedules of jobs: checked as Debian's cron reads them, and their next run.

`schedule_problem(text)` returns one line saying why cron would refuse `text` (or why it
would never run), or None. Accepted: five fields of numbers, `*`, ranges, steps and lists
(`0-59/15`, `1,2`), a single three-letter name in the month and day-of-week fields, or
one of cron's `@` nicknames. The value ranges and dates that never come (`0 0 30 2 *`)
are checked with croniter, which also gives `next_run()` for `status`.
"""
from __future__ import annotations

import datetime as dt
import re

NICKNAMES = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily",
             "@midnight", "@hourly")
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_ITEM = r"(\*|[0-9]{1,2}(-[0-9]{1,2})?)(/[0-9]{1,2})?"
_NUMERIC = re.compile(rf"{_ITEM}(,{_ITEM})*\Z")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MAX_LENGTH = 200


def _field_problem(index: int, field: str) -> str | None:
    if _NUMERIC.match(field):
        return None
    names = _MONTHS if index == 3 else _DAYS if index == 4 else ()
    if field.lower() in names:
        return None
    allowed = "numbers, *, ranges a-b, steps /n and lists a,b"
    if names:
        allowed += f", or one name ({names[0]}, {names[1]}, …)"
    return f"field {index + 1} ({_FIELD_NAMES[index]}) {field!r} is not valid ({allowed})"


def schedule_problem(text: object) -> str | None:
    """Why cron would refuse the schedule `text`, or why it never runs; None when it is fine."""
    if not isinstance(text, str):
        return "a cron schedule is a string such as '17 3 * * *'"
    if len(text) > MAX_LENGTH or any(ord(c) < 32 and c != " " for c in text):
        return (f"{_short(text)} is not a cron schedule (one line of at most {MAX_LENGTH} "
                "characters)")
    fields = text.split(" ")
    fields = [f for f in fields if f]
    if len(fields) == 1 and fields[0].startswith("@"):
        if fields[0] in NICKNAMES:
            return None
        return f"{_short(text)} is not a cron nickname (use one of {', '.join(NICKNAMES)})"
    if len(fields) != 5:
        return (f"{_short(text)} has {len(fields)} fields; a cron schedule has 5 "
                "(minute hour day-of-month month day-of-week), e.g. '17 3 * * *'")
    for index, field in enumerate(fields):
        problem = _field_problem(index, field)
        if problem:
            return f"{_short(text)}: {problem}"
    from croniter import croniter

    if not croniter.is_valid(" ".join(fields)):
        return (f"{_short(text)} is not a valid cron schedule (a value out of range? minute "
                "0-59, hour 0-23, day 1-31, month 1-12, day of week 0-7)")
    if next_run(text, dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) is None:
        return f"{_short(text)} never runs (no such date)"
    return None


def next_run(text: str, after: dt.datetime) -> dt.datetime | None:
    """The next time the schedule fires after `after` (UTC), or None (never, @reboot, invalid).

    Cron reads the schedule in the machine's local time; the result is in UTC.
    """
    from croniter import croniter

    fields = " ".join(f for f in text.split(" ") if f)
    if fields == "@reboot":
        return None
    local = after.astimezone()
    try:
        found = croniter(fields, local).get_next(dt.datetime)
    except Exception:  # noqa: BLE001 - croniter raises several types for "no such date"
        return None
    if not isinstance(found, dt.datetime):
        return None
    return found.astimezone(dt.UTC)


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
