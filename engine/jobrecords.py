"""Read the per-job records `job NAME` writes to `<state_dir>/jobs/<name>.json`.

Each record is `{"last_run", "last_success", "last_error", "duration", "data_completed",
"ok"}` with ISO UTC times (HACKING.md, "Files in state_dir"). Readers (status, metrics,
check) must keep working while a job is half-way through writing its record or when the
directory does not exist yet, so a record that cannot be read is reported, not fatal.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.paths import StatePaths
from engine.safefile import FileRefused, read_limited
from engine.state import parse_isotime, strict_constant


def read_job_records(state_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Job name → its record; a missing directory gives {}.

    A record that is unreadable or not a JSON object comes back as
    `{"unreadable": "<why>"}` so status can say so instead of failing.
    """
    directory = StatePaths(Path(state_dir)).jobs_dir
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return {}
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            data = json.loads(read_limited(path, "job_record", nofollow=True),
                              parse_constant=strict_constant)
        except FileRefused as exc:
            if not exc.missing:  # else: removed between glob and read
                records[path.stem] = {"unreadable": str(exc)}
            continue
        except ValueError as exc:
            records[path.stem] = {"unreadable": f"{path}: {exc}"}
            continue
        if not isinstance(data, dict):
            records[path.stem] = {"unreadable": f"{path}: not a JSON object"}
            continue
        records[path.stem] = data
    return records


def record_time(record: dict[str, Any], key: str) -> datetime | None:
    """A time field of a record as an aware datetime, or None if absent or malformed."""
    value = record.get(key)
    if not isinstance(value, str):
        return None
    try:
        return parse_isotime(value)
    except ValueError:
        return None


def data_age(record: dict[str, Any], now: datetime) -> float | None:
    """Seconds since the job's data was complete (`data_completed`, else `last_success`)."""
    moment = record_time(record, "data_completed") or record_time(record, "last_success")
    if moment is None or moment.tzinfo is None:
        return None
    return max(0.0, (now - moment).total_seconds())
