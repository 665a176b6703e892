"""check_dump_age: refuse to go on unless the standby's data is fresh enough.

The engage precondition: before the alias is pointed at the standby, its last import
must have succeeded recently. The step reads the import job's status log (either style
the original scripts wrote, see engine/statuslog.py), finds the last `completed ok` and
fails when it is older than `max_age` or missing. With `require_last_ok: true` it also
fails when the last run after that success failed — which is what the original engage
script did (it insisted that the last line of the log be `completed ok`).

    engage:
      - check_dump_age:
          status_log: /var/log/failover-engine/import.log
          max_age: 7h
          require_last_ok: false   # true: a failed run since the last success also stops engage

Options:
  status_log       the job's status log (path)
  max_age          duration: how old the last success may be (e.g. 7h)
  require_last_ok  bool, default false: the last outcome in the log must be a success

The step changes nothing: `plan()` reports the age found (and the problem, if any) and
`apply()` checks again and fails with one line naming the log when the check does not pass.
`readiness()` (engine/readiness.py) asks for a margin: the age plus one import interval
(the gap between the next two runs of the job writing the log, else 1h) under `max_age`.
Both report the facts `last_success` (ISO time of the last `completed ok`) and
`last_success_age_seconds` when the log has them; the step hands on no output.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan, Readiness
from engine.clock import SKEW_TOLERANCE
from engine.durations import format_duration, parse_duration
from engine.errors import StepError
from engine.schedule import next_run
from engine.statuslog import StatusLog, StatusLogError, read_status_log

# The import interval the readiness margin assumes when no job's schedule writes the log.
DEFAULT_IMPORT_INTERVAL = 3600.0


class CheckDumpAge:
    """Pass only when the status log's last success is newer than `max_age`."""

    kind: ClassVar[str] = "check_dump_age"

    def __init__(self, params: Mapping[str, Any], *, now: Any = None) -> None:
        self.status_log = Path(params["status_log"])
        self.max_age = parse_duration(params["max_age"])
        self.require_last_ok = bool(params.get("require_last_ok", False))
        # `now` returns the current aware datetime; tests pass a fixed clock.
        self._now = now or (lambda: None)

    def _verdict(self) -> tuple[str, str | None, StatusLog | None]:
        """(summary, problem or None, parsed log) — read-only."""
        summary, problem, log, _reason = self._judge()
        return summary, problem, log

    def _judge(self) -> tuple[str, str | None, StatusLog | None, str]:
        """(summary, problem or None, parsed log, reason code for readiness) — read-only."""
        limit = format_duration(self.max_age)
        try:
            log = read_status_log(self.status_log)
        except StatusLogError as error:
            return f"status log {self.status_log} unreadable", str(error), None, "unreadable"
        now: datetime | None = self._now()
        if log.last_success is None:
            return (f"no `completed ok` in {self.status_log}",
                    f"{self.status_log} has no successful import: the standby's data is of "
                    "unknown age; run the import job and check its errors", log, "no_success")
        age = log.success_age(now)
        if age is None:
            return (f"last `completed ok` in {self.status_log} has no time",
                    f"{self.status_log} line {log.last_success.line_no}: `completed ok` has no "
                    "timestamp, so the data's age is unknown; run the import job again", log,
                    "no_time")
        ahead = log.success_ahead(now)
        if ahead > SKEW_TOLERANCE:
            # A success stamped in the future says nothing about the data's age: the clock
            # of the host that wrote it, or ours, is wrong. Never read that as fresh data.
            return (f"last `completed ok` in {self.status_log} is stamped in the future",
                    f"{self.status_log} line {log.last_success.line_no}: `completed ok` is "
                    f"stamped {format_duration(ahead)} in the future (clock skew), so the "
                    "data's age is unknown; fix the clock, then rerun the import job", log,
                    "clock_skew")
        summary = f"last import completed ok {format_duration(age)} ago (max {limit})"
        if age > self.max_age:
            return summary, (f"{self.status_log}: last successful import was "
                             f"{format_duration(age)} ago, older than max_age {limit}; "
                             "the standby's data is stale (fix and rerun the import job)"), log, \
                "stale"
        last = log.last_outcome
        if last is not None and not last.ok:
            summary += f"; a later run failed (line {last.line_no})"
            if self.require_last_ok:
                return summary, (f"{self.status_log} line {last.line_no}: the last run failed "
                                 f"({last.text[:200]}); require_last_ok forbids engaging — fix "
                                 "the import or set require_last_ok: false"), log, "last_failed"
        return summary, None, log, "ok"

    def import_interval(self, ctx: Context) -> float:
        """How long until the import after next: the gap between the next two runs of the
        job that writes this status log (by its cron schedule), else one hour."""
        jobs = getattr(ctx.policy, "jobs", None) or {}
        for job in jobs.values():
            log, schedule = getattr(job, "status_log", None), getattr(job, "schedule", None)
            if not schedule or log is None or ctx.path(log) != ctx.path(self.status_log):
                continue
            first = next_run(schedule, datetime.now(UTC))
            second = next_run(schedule, first) if first is not None else None
            if first is not None and second is not None:
                return (second - first).total_seconds()
        return DEFAULT_IMPORT_INTERVAL

    def readiness(self, ctx: Context, *, interval: float | None = None) -> Readiness:
        """Pass with a margin (engine/readiness.py): the check passes now, and the age
        plus one import interval is still under `max_age`, so one more failed import
        does not yet make engage refuse. Reads the status log only."""
        summary, problem, log, reason = self._judge()
        if problem is not None:
            return Readiness(False, problem, reason)
        assert log is not None
        age = log.success_age(self._now()) or 0.0
        gap = self.import_interval(ctx) if interval is None else interval
        left = self.max_age - age - gap
        if left <= 0:
            return Readiness(False, f"{summary}: one more import interval "
                             f"({format_duration(gap)}) without a success and engage refuses; "
                             "check the import job now", "margin", warning=True)
        return Readiness(True, f"{summary}; margin {format_duration(left)} after the next "
                         f"import interval ({format_duration(gap)})")

    def _facts(self, log: StatusLog | None) -> dict[str, Any]:
        """`last_success` and its age in seconds, as far as the log tells them."""
        if log is None or log.last_success_time is None:
            return {}
        facts: dict[str, Any] = {"last_success": log.last_success_time.isoformat()}
        age = log.success_age(self._now())
        if age is not None:
            facts["last_success_age_seconds"] = round(age)
        return facts

    def plan(self, ctx: Context) -> Plan:
        summary, problem, log = self._verdict()
        when = log.last_success_time.isoformat() if log and log.last_success_time else None
        return Plan(summary=summary, before=when, after=when, done=False, problem=problem,
                    facts=self._facts(log))

    def apply(self, ctx: Context) -> Outcome:
        summary, problem, log = self._verdict()
        if problem is not None:
            raise StepError(problem, retryable=False)
        ctx.log(f"check_dump_age: {summary}")
        when = log.last_success_time.isoformat() if log and log.last_success_time else None
        return Outcome(summary=summary, before=when, after=when, changed=False,
                       facts=self._facts(log))
