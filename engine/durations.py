"""Durations as policies write them: `500ms`, `30s`, `10m`, `7h`, `2d`, or a number of seconds.

A duration is finite, not negative and at most `MAX_DURATION` (366 days): NaN, infinity
(YAML's `.nan`, `.inf`), a 400-digit number or `1e300` are refused with one line, here and
in the schema (the `x-duration` keyword of schemas/steps/common.json calls this module), so
whatever passes `validate` can be added to a datetime or used as a sleep. Options where 0
makes no sense (an interval, a timeout, a maximum age) pass `positive=True`.
"""
from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# \Z, not $: `$` also matches before a final newline ("30s\n" is not a duration).
_PATTERN = re.compile(r" *([0-9]{1,12}(?:\.[0-9]{1,9})?) *(ms|s|m|h|d)? *\Z")
MAX_DURATION = 366 * 86400.0
_HINT = "(use e.g. 30s, 10m, 7h)"


def parse_duration(value: str | int | float, *, positive: bool = False,
                   maximum: float = MAX_DURATION) -> float:
    """Return the duration in seconds; raise ValueError naming the problem on bad input.

    Refused: booleans, text not in the accepted forms, NaN and infinity, negative values,
    0 when `positive`, and anything above `maximum` (default 366 days).
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{_short(value)} is not a duration {_HINT}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration: it must be a finite number "
                             "of seconds or e.g. 30s, 10m, 7h")
        if value < 0:
            raise ValueError(f"{_short(value)} is negative; a duration is 0 or more")
        seconds = float(value) if abs(value) <= 10 * maximum else math.inf
    else:
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(f"{_short(value)} is not a duration {_HINT}")
        number, unit = match.groups()
        seconds = float(number) * _UNITS[unit or "s"]
    if positive and seconds <= 0:
        raise ValueError(f"{_short(value)}: must be more than 0 here")
    if seconds > maximum:
        raise ValueError(f"{_short(value)} is too long: at most {format_duration(maximum)}")
    return seconds


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_duration(seconds: float) -> str:
    """Render seconds the way an operator reads them: `45s`, `12m30s`, `5h2m`, `3d4h`."""
    seconds = float(seconds)
    if not math.isfinite(seconds):
        return "forever" if seconds > 0 else "0ms"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"
