"""`failover-engine check dump-age`: a Nagios/Icinga plugin for the standby's freshness.

    failover-engine check dump-age [--warning D] [--critical D] [--log FILE]
                                   [--data-age] [--job NAME]

Reads the import job's status log, finds the last `completed ok` (either log style of the
original scripts, times compared timezone-aware) and prints one status line with perfdata:

    DUMP-AGE OK: last import completed ok 1h12m ago at 2026-11-26T06:17:03+0000 (…/import.log)
      | age=4320s;;25200

Exit codes: 0 OK, 1 WARNING (older than --warning), 2 CRITICAL (older than --critical,
default 7h as the original; also when the log is missing or shows no success),
3 UNKNOWN (bad arguments, no policy to find the log in, a log or record this user may not
read — a permission problem says nothing about the import —, anything unexpected).
Durations: `30m`, `7h`, `2d`, or bare seconds.

The log is `--log FILE` (then the policy is not read at all, so the check works on a host
without a valid policy) or the `status_log` of `--job NAME` in the policy (default: the
first job that has one). `--data-age` judges the age of the data itself — the dump's own
completion time, `data_completed` in `<state_dir>/jobs/<job>.json`, recorded by the job
runner — instead of the time of the import.

Icinga 2 example:

    object CheckCommand "failover_dump_age" {
      command = [ "/usr/bin/failover-engine", "check", "dump-age" ]
      arguments = { "--warning" = "$dump_age_warning$", "--critical" = "$dump_age_critical$" }
    }
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.durations import format_duration, parse_duration
from engine.paths import StatePaths

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
DEFAULT_CRITICAL = "7h"


class _Verdict(Exception):
    """Ends the check early with a code and one line (raised only inside this module)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Thresholds:
    """Warning (optional) and critical ages in seconds."""

    warning: float | None
    critical: float

    @classmethod
    def from_args(cls, warning: Any, critical: Any) -> Thresholds:
        def parse(name: str, value: Any) -> float:
            try:
                return parse_duration(value)
            except (TypeError, ValueError) as error:
                raise _Verdict(UNKNOWN, f"--{name} {value!r}: {error}") from None

        crit = parse("critical", DEFAULT_CRITICAL if critical in (None, "") else critical)
        warn = None if warning in (None, "") else parse("warning", warning)
        if warn is not None and warn >= crit:
            raise _Verdict(UNKNOWN, f"--warning {warning} must be shorter than --critical "
                                    f"{format_duration(crit)}")
        return cls(warn, crit)

    def judge(self, age: float) -> int:
        if age > self.critical:
            return CRITICAL
        if self.warning is not None and age > self.warning:
            return WARNING
        return OK

    def perfdata(self, age: float) -> str:
        warn = "" if self.warning is None else f"{self.warning:g}"
        return f"age={age:.0f}s;{warn};{self.critical:g}"


_PERMISSION_HINT = ("; let the checks' user read it: `failover-engine install --check-group "
                    "GROUP` (docs/operations.md, NRPE)")


def _denied(error: BaseException) -> bool:
    """True when a permission problem is the cause of `error` (anywhere in its chain)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PermissionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _policy_job(args: argparse.Namespace) -> tuple[Any, Any]:
    """(policy, job spec) named by --job, or the first job with a status_log."""
    from engine.commands import load, policy_path

    try:
        policy = load(args)
    except Exception as error:  # PolicyError, a missing file, or a policy module not ready
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _Verdict(UNKNOWN, f"cannot load policy {policy_path(args)}: {first} "
                                "(give --log FILE to check a log without a policy)") from None
    jobs = policy.jobs
    if args_job := getattr(args, "job", None):
        if args_job not in jobs:
            known = ", ".join(sorted(jobs)) or "none"
            raise _Verdict(UNKNOWN, f"{policy.path}: no job {args_job!r} (jobs: {known})")
        return policy, jobs[args_job]
    for job in jobs.values():
        if job.status_log is not None:
            return policy, job
    raise _Verdict(UNKNOWN, f"{policy.path}: no job has a status_log; give --log FILE or --job")


def _import_age(args: argparse.Namespace, now: datetime) -> tuple[float, str]:
    from engine.statuslog import StatusLogError, read_status_log

    if getattr(args, "log", None):
        path = Path(args.log)
    else:
        policy, job = _policy_job(args)
        if job.status_log is None:
            raise _Verdict(UNKNOWN, f"job {job.name!r} has no status_log; give --log FILE")
        path = Path(job.status_log)
        _live_whole(policy.state_dir)
    try:
        log = read_status_log(path)
    except StatusLogError as error:
        # Unreadable for this user is not a stale import: the check cannot know (UNKNOWN).
        raise _Verdict(UNKNOWN if _denied(error) else CRITICAL,
                       str(error) + (_PERMISSION_HINT if _denied(error) else "")) from None
    if log.open_swaps:
        raise _Verdict(CRITICAL, f"{path}: the swap into {', '.join(log.open_swaps)} began and"
                                 " never finished: live may be half-swapped; the next import"
                                 " completes or undoes it")
    if log.last_success is None:
        raise _Verdict(CRITICAL, f"{path}: no `completed ok` in the log: the import has never "
                                 "succeeded (see the ERROR lines in the log)")
    when = log.last_success.time
    if when is None:
        raise _Verdict(CRITICAL, f"{path} line {log.last_success.line_no}: `completed ok` has "
                                 "no timestamp, so its age is unknown")
    age = _not_in_future(now, when, f"{path}: the last `completed ok`")
    detail = f"last import completed ok {format_duration(age)} ago at {_stamp(when)} ({path})"
    if log.last_outcome is not None and not log.last_outcome.ok:
        detail += f"; a later run failed at line {log.last_outcome.line_no}"
    return age, detail


def _live_whole(state_dir: str | Path) -> None:
    """CRITICAL when a swap journal says live is half-swapped or does not match its dump."""
    from engine.standby import half_done_swaps

    damage = half_done_swaps(state_dir)
    if damage:
        raise _Verdict(CRITICAL, "; ".join(damage))


def _data_age(args: argparse.Namespace, now: datetime) -> tuple[float, str]:
    from engine.statuslog import parse_time

    state_dir, job_name = getattr(args, "state_dir", None), getattr(args, "job", None)
    if not (state_dir and job_name):
        policy, job = _policy_job(args)
        state_dir, job_name = state_dir or policy.state_dir, job.name
    _live_whole(state_dir)
    record = StatePaths(Path(state_dir)).job_record(job_name)
    from engine.safefile import FileRefused, read_limited

    try:
        data = json.loads(read_limited(record, "job_record", nofollow=True))
    except FileRefused as error:
        if error.missing:
            raise _Verdict(CRITICAL, f"{record} does not exist: job {job_name!r} has never "
                                     "recorded a run") from None
        raise _Verdict(UNKNOWN if _denied(error) or "Permission" in str(error) else CRITICAL,
                       str(error)) from None
    except PermissionError as error:
        raise _Verdict(UNKNOWN, f"cannot read {record}: {error.strerror or error}"
                                f"{_PERMISSION_HINT}") from None
    except OSError as error:
        raise _Verdict(CRITICAL, f"cannot read {record}: {error.strerror or error}") from None
    except ValueError as error:
        raise _Verdict(UNKNOWN, f"{record} is not valid JSON: {error}") from None
    value = data.get("data_completed") if isinstance(data, dict) else None
    if not value:
        raise _Verdict(CRITICAL, f"{record}: no data_completed recorded: no import of job "
                                 f"{job_name!r} has succeeded with a dated dump")
    when = parse_time(str(value))
    if when is None:
        raise _Verdict(UNKNOWN, f"{record}: data_completed {value!r} is not an ISO 8601 time")
    age = _not_in_future(now, when, f"{record}: data_completed")
    return age, f"data completed {format_duration(age)} ago at {_stamp(when)} ({record})"


def _not_in_future(now: datetime, when: datetime, what: str) -> float:
    """The age of `when`; WARNING (clock skew) when it lies in the future: a success stamped
    ahead of this host's clock would otherwise read as OK "0ms ago" for as long as it lasts."""
    from engine.clock import SKEW_TOLERANCE

    age = (now - when).total_seconds()
    if age < -SKEW_TOLERANCE:
        raise _Verdict(WARNING, f"clock skew: {what} is stamped {_stamp(when)}, "
                                f"{format_duration(-age)} in the future; its age cannot be "
                                "judged (check NTP here and on the importing host)")
    return max(0.0, age)


def run(args: argparse.Namespace, now: datetime | None = None) -> tuple[int, str]:
    """The check's exit code and its one output line."""
    try:
        current = now or datetime.now(UTC)
        limits = Thresholds.from_args(getattr(args, "warning", None),
                                      getattr(args, "critical", None))
        measure: Callable[[argparse.Namespace, datetime], tuple[float, str]] = (
            _data_age if getattr(args, "data_age", False) else _import_age
        )
        age, detail = measure(args, current)
        code = limits.judge(age)
        return code, f"DUMP-AGE {_NAMES[code]}: {detail} | {limits.perfdata(age)}"
    except _Verdict as verdict:
        return verdict.code, f"DUMP-AGE {_NAMES[verdict.code]}: {verdict.message}"
    except Exception as error:  # a plugin must answer UNKNOWN, never with a traceback
        return UNKNOWN, f"DUMP-AGE UNKNOWN: unexpected error: {type(error).__name__}: {error}"


def main(args: argparse.Namespace) -> int:
    """Print the status line and return the Nagios exit code."""
    code, line = run(args)
    print(line.replace("\n", " "), flush=True)
    return code
