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
Both report the facts `last_success` (ISO time of the last `completed ok`) and
`last_success_age_seconds` when the log has them; the step hands on no output.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.durations import format_duration, parse_duration
from engine.errors import StepError
from engine.statuslog import StatusLog, StatusLogError, read_status_log


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
        limit = format_duration(self.max_age)
        try:
            log = read_status_log(self.status_log)
        except StatusLogError as error:
            return f"status log {self.status_log} unreadable", str(error), None
        now: datetime | None = self._now()
        if log.last_success is None:
            return (f"no `completed ok` in {self.status_log}",
                    f"{self.status_log} has no successful import: the standby's data is of "
                    "unknown age; run the import job and check its errors", log)
        age = log.success_age(now)
        if age is None:
            return (f"last `completed ok` in {self.status_log} has no time",
                    f"{self.status_log} line {log.last_success.line_no}: `completed ok` has no "
                    "timestamp, so the data's age is unknown; run the import job again", log)
        summary = f"last import completed ok {format_duration(age)} ago (max {limit})"
        if age > self.max_age:
            return summary, (f"{self.status_log}: last successful import was "
                             f"{format_duration(age)} ago, older than max_age {limit}; "
                             "the standby's data is stale (fix and rerun the import job)"), log
        last = log.last_outcome
        if last is not None and not last.ok:
            summary += f"; a later run failed (line {last.line_no})"
            if self.require_last_ok:
                return summary, (f"{self.status_log} line {last.line_no}: the last run failed "
                                 f"({last.text[:200]}); require_last_ok forbids engaging — fix "
                                 "the import or set require_last_ok: false"), log
        return summary, None, log

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
