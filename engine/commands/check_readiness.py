"""`check readiness`: a Nagios/Icinga plugin — would a failover work now?

Reads `readiness.json`, which the monitor writes after each run of the readiness checks
(engine/readiness.py: hourly by default, and at its start). It runs no check itself: the
checks need the engine's secrets, and a plugin runs as the monitoring user.

    CRITICAL  a check fails (named with its reason: `engage.4.nsupdate=refused_grant`)
    WARNING   only margins run out (`engage.1.check_dump_age=margin`, a disk whose dump
              size is unknown), or the checks are overdue (the last run is older than
              twice their interval plus 5 minutes: is the monitor running?)
    OK        every check passed at the last run, which is recent
    UNKNOWN   the policy has no `readiness:` block, the checks never ran, the record is
              damaged or unreadable (permissions: `install --check-group GROUP`)

    READINESS CRITICAL - 2 of 14 checks fail: engage.4.nsupdate=refused_grant (REFUSED: key
      …), restore.1.nsupdate=refused_grant | checks=14;;;0 failing=2;;0;0 warnings=0;;;0
      age=35s;;7500;0
"""
from __future__ import annotations

import argparse

from engine.commands import load
from engine.durations import format_duration
from engine.errors import FailoverError
from engine.nagios import CRITICAL, OK, UNKNOWN, WARNING, answer
from engine.readiness import ReadinessRecord, age_seconds, load_record, readiness_config

LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
DETAIL_WIDTH = 160  # of the first failing check's detail in the line


def evaluate(record: ReadinessRecord, now_age: float | None = None) -> tuple[int, str]:
    """(Nagios code, one line with perfdata) for a readiness record."""
    age = age_seconds(record) if now_age is None else now_age
    limit = 2 * record.interval + 300
    critical, failing = record.critical, record.failing
    warnings = [n for n in failing if n not in critical]
    total = len(record.checks)
    named = ", ".join(f"{n}={record.checks[n].reason}" for n in failing)
    if critical:
        code = CRITICAL
        first = record.checks[critical[0]].detail
        text = (f"{len(failing)} of {total} checks fail: {named} ({critical[0]}: "
                f"{_clip(first)})")
    elif warnings:
        code = WARNING
        text = f"{len(warnings)} of {total} checks near their limit: {named}"
    else:
        code = OK
        text = f"all {total} checks pass"
    if age is None:
        code = max(code, WARNING)
        text += f"; the record's time {record.checked_at!r} is unreadable"
    elif age < -300:
        code = max(code, WARNING)
        text += f"; clock skew: the checks are stamped {format_duration(-age)} in the future"
    elif age > limit:
        code = max(code, WARNING)
        text += (f"; the checks are overdue: last run {format_duration(age)} ago (every "
                 f"{format_duration(record.interval)}; is the monitor running?)")
    else:
        text += f"; checked {format_duration(max(0.0, age))} ago"
    perf = (f"checks={total};;;0 failing={len(failing)};;0;0 warnings={len(warnings)};;;0"
            + (f" age={max(0, round(age))}s;{round(limit)};;0" if age is not None else ""))
    return code, f"READINESS {LABELS[code]} - {text} | {perf}"


def _clip(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= DETAIL_WIDTH else line[:DETAIL_WIDTH - 3] + "..."


def main(args: argparse.Namespace) -> int:
    """Print the plugin line and return its Nagios code (UNKNOWN on anything unexpected)."""
    def judge() -> tuple[int, str]:
        policy = load(args)
        if readiness_config(policy) is None:
            return UNKNOWN, (f"READINESS UNKNOWN - policy {policy.name} has no `readiness:` "
                             "block, so nothing proves the standby ready; add one "
                             "(docs/operations.md)")
        record = load_record(policy.state_dir)
        if record is None:
            return UNKNOWN, ("READINESS UNKNOWN - the readiness checks never ran (the monitor "
                             "runs them at its start, then every interval): is "
                             "`failover-engine run` running?")
        return evaluate(record)

    return answer("READINESS", judge, (FailoverError, ValueError))
