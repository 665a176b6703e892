"""Elapsed time that a wall-clock jump cannot fake: the monotonic clock plus the boot id.

Times in the state file are wall-clock ISO strings, for people. A wall clock can jump (NTP
after a long suspend, an operator's `date -s`): a backward jump once made `check engine`
say OK with no monitor running (the last cycle looked recent, or in the future) and
stretched a 1-minute hold-down to a day. So next to each such time the engine records
`CLOCK_MONOTONIC` (system-wide, seconds since boot, never jumps) and the boot id
(`/proc/sys/kernel/random/boot_id`): on the same boot, elapsed time is the monotonic
difference; after a reboot, only the wall clock is left, and a time in the future is
reported as clock skew, never as "0ms ago".

The marks live in `EngineState.monotonic`, by field name: ``{"last_cycle": {"mono":
12345.6, "boot": "…"}}``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# Wall-clock differences this far in the future are ordinary jitter between hosts' clocks.
SKEW_TOLERANCE = 5.0


def boot_id() -> str | None:
    """This boot's id, or None where the kernel does not provide one."""
    try:
        return BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def mark(marks: dict[str, Any], name: str, *, offset: float = 0.0) -> None:
    """Record now (+ `offset` seconds) on the monotonic clock under `name`."""
    marks[name] = {"mono": time.monotonic() + offset, "boot": boot_id()}


@dataclass(frozen=True)
class Elapsed:
    """Seconds since a recorded time, how they were measured, and whether the wall clock
    put that time in the future (`skew`: the answer cannot be trusted)."""

    seconds: float | None
    monotonic: bool
    skew: bool = False


def elapsed(marks: Any, name: str, wall: datetime | None, now: datetime) -> Elapsed:
    """Seconds from the time recorded as `name` (wall time `wall`) to now.

    The monotonic mark wins when it was taken on this boot; otherwise the wall clock is
    used, and a wall time more than `SKEW_TOLERANCE` in the future is `skew`.
    """
    entry = marks.get(name) if isinstance(marks, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("mono"), int | float) \
            and not isinstance(entry.get("mono"), bool) and entry.get("boot") is not None \
            and entry.get("boot") == boot_id():
        return Elapsed(max(0.0, time.monotonic() - float(entry["mono"])), monotonic=True)
    if wall is None:
        return Elapsed(None, monotonic=False)
    seconds = (now - wall).total_seconds()
    if seconds < -SKEW_TOLERANCE:
        return Elapsed(seconds, monotonic=False, skew=True)
    return Elapsed(max(0.0, seconds), monotonic=False)


def remaining(marks: Any, name: str, wall: datetime | None, now: datetime) -> float | None:
    """Seconds until the time recorded as `name` (a deadline such as the hold-down's end):
    monotonic on this boot, else by the wall clock; None when there is no such time."""
    entry = marks.get(name) if isinstance(marks, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("mono"), int | float) \
            and not isinstance(entry.get("mono"), bool) and entry.get("boot") is not None \
            and entry.get("boot") == boot_id():
        return float(entry["mono"]) - time.monotonic()
    if wall is None:
        return None
    return (wall - now).total_seconds()
