"""Jobs (`failover-engine job NAME`, what cron calls): the standby refresh and its bookkeeping.

Around the job's steps (run by the runner, like engage and restore) this module:
- honours the `pause_file` switch: while it exists the job does nothing, logs the file's
  contents and exits 1 (the original's noFetch/noImport);
- refuses to run while the standby serves users or may (engine/standby.py: the state, the
  engage lock file, the parked cron file; an unknown or missing state counts as engaged) —
  an import would overwrite their data — unless `--force` or the job says
  `allow_when_engaged: true`; and hands its steps a swap guard (`Context.swap_guard`) that
  checks again under the standby lock right before an import's swap, so an engage that
  starts while the import loads makes the import stop before its swap;
- holds `<state_dir>/jobs/<name>.lock` so two runs never overlap;
- appends `<UTC time> INFO: completed ok` or `<UTC time> ERROR: <reason>` to `status_log`;
  a refusal is a `WARNING:` line, and a step failing after the data was swapped in (archive)
  writes `completed ok` (the data's outcome) and a `WARNING:` line, so neither makes the
  engage gate (check_dump_age) see a failed import; `NOTICE: swap into DB started/finished`
  lines bracket each swap, so a log whose swap never finished reads as CRITICAL;
- records last run, last success, duration and the data's age in `<state_dir>/jobs/<name>.json`;
- mails the admins on failure when `notify_on_failure` is set.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import FailoverError, UsageError
from engine.fsutil import atomic_write, ensure_private_dir
from engine.paths import StatePaths
from engine.policy import JobSpec, Policy
from engine.runner import Runner, RunReport
from engine.standby import serving_evidence, swap_permit
from engine.state import StateStore, isotime
from engine.states import STANDBY_BUSY

log = logging.getLogger("failover_engine.job")

BUSY_STATES = STANDBY_BUSY


@dataclass
class JobResult:
    """How a job run ended: ok, and the one-line reason when not."""

    ok: bool
    reason: str = ""
    report: RunReport | None = None
    refused: bool = False  # the standby may serve: nothing was changed
    data_ok: bool = False  # new data reached live, although a later step failed


class SwapGuard:
    """`Context.swap_guard` for one job run: the standby lock and the evidence (force
    honoured), the status log's swap markers, and what happened, for the job's outcome."""

    def __init__(self, policy: Policy, job: JobSpec, force: bool) -> None:
        self.policy, self.job, self.force = policy, job, force
        self.refused: str | None = None
        self.swapped: list[str] = []

    def _refuse(self, reason: str) -> None:
        self.refused = reason

    def _mark(self, database: str, finished: bool) -> None:
        from engine.statuslog import write_swap_mark

        if self.job.status_log is None:
            return
        try:
            write_swap_mark(self.job.status_log, database, finished)
        except FailoverError as exc:
            log.warning("job %s: %s", self.job.name, exc)

    @contextlib.contextmanager
    def __call__(self, database: str) -> Iterator[None]:
        with swap_permit(self.policy.state_dir, self.policy, role=f"job {self.job.name}",
                         force=self.force, on_refused=self._refuse):
            self._mark(database, finished=False)
            try:
                yield
                self.swapped.append(database)
            finally:
                # The journal is gone once live is whole again (or was never touched).
                if not StatePaths(self.policy.state_dir).swap_journal(database).exists():
                    self._mark(database, finished=True)


def job_record_path(state_dir: Path, name: str) -> Path:
    """`<state_dir>/jobs/<name>.json` (StatePaths.job_record)."""
    return StatePaths(state_dir).job_record(name)


def read_record(state_dir: Path, name: str) -> dict[str, Any]:
    """The job's record, or {} when it never ran."""
    from engine.safefile import read_limited

    try:
        data = json.loads(read_limited(job_record_path(state_dir, name), "job_record",
                                       nofollow=True))
    except (FailoverError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}  # valid JSON of the wrong shape


class JobLock:
    """A non-blocking flock on the job's lock file: a second run refuses instead of waiting."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> JobLock:
        ensure_private_dir(self.path.parent)
        from engine.fsutil import state_dir_problem

        problem = state_dir_problem(self.path.parent.parent)  # <state_dir>/jobs/<name>.lock
        if problem:
            raise FailoverError(problem)
        # O_NOFOLLOW: a link planted as the lock would make ftruncate empty its target.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise FailoverError(f"{self.path}: this job is already running ({holder}); "
                                    "runs never overlap") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {isotime()}".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)


def run_job(policy: Policy, name: str, *, force: bool = False) -> JobResult:
    """Run one job with the semantics of the module docstring."""
    if name not in policy.jobs:
        known = ", ".join(sorted(policy.jobs)) or "none"
        raise UsageError(f"{policy.path}: no job named {name!r} (jobs: {known})")
    job = policy.jobs[name]
    if job.pause_file is not None and job.pause_file.exists():
        try:
            from engine.safefile import read_limited

            why = read_limited(job.pause_file, "pause_reason").decode(
                "utf-8", errors="replace").strip() or "(empty)"
        except FailoverError as exc:  # a FIFO, a device, a huge file: say so, do not read it
            why = f"(unreadable: {exc})"
        return _end(policy, job, JobResult(False, f"paused by {job.pause_file}: {why}"), 0.0)
    forced = force or job.allow_when_engaged
    evidence = serving_evidence(policy)
    if evidence and not forced:
        return _end(policy, job, JobResult(
            False, f"refused: {'; '.join(evidence)}; the standby may serve users, so its data"
            " stays as it is; restore first, or use --force if you really mean to overwrite"
            " its data", refused=True), 0.0)
    started = time.monotonic()
    guard = SwapGuard(policy, job, forced)
    try:
        with JobLock(StatePaths(policy.state_dir).job_lock(name)):
            ensure_private_dir(job.work_dir)
            old_umask = os.umask(0o077)  # the dump holds personal data in clear text
            try:
                runner = Runner(policy, StateStore(policy.state_dir), None, swap_guard=guard)
                report = runner.run(f"job:{name}", job.steps, work_dir=job.work_dir)
            finally:
                os.umask(old_umask)
    except OSError as exc:  # a full disk, a read-only state dir: the run could not go on
        where = f" ({exc.filename})" if exc.filename else ""
        return _end(policy, job, JobResult(
            False, f"stopped: {exc.strerror or exc}{where}; free space or fix the directory,"
            " then run the job again", data_ok=bool(guard.swapped)),
            time.monotonic() - started)
    if report.ok:
        result = JobResult(True, report=report)
    elif guard.refused is not None:
        result = JobResult(False, guard.refused, report, refused=True)
    else:
        failed = report.failed
        reason = (f"step {failed.index + 1} ({failed.step.name}) failed: {failed.summary}"
                  if failed else "interrupted")
        result = JobResult(False, reason, report, data_ok=bool(guard.swapped))
    return _end(policy, job, result, time.monotonic() - started)


def _end(policy: Policy, job: JobSpec, result: JobResult, duration: float) -> JobResult:
    now = isotime()
    record = read_record(policy.state_dir, job.name)
    record.update({"last_run": now, "ok": result.ok, "duration": round(duration, 3)})
    if result.ok:
        record["last_success"] = now
        record["last_error"] = None
        # One channel: the fact an import (or dump) step reported, collected by the runner.
        completed = result.report.facts.get("data_completed") if result.report else None
        if completed:
            record["data_completed"] = completed
    else:
        record["last_error"] = result.reason
        completed = result.report.facts.get("data_completed") if result.report else None
        if result.data_ok and completed:  # the new data is live although a later step failed
            record["data_completed"] = completed
    record["refused"] = result.refused
    path = job_record_path(policy.state_dir, job.name)
    try:
        ensure_private_dir(path.parent)
        atomic_write(path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o644)
    except OSError as exc:
        log.error("job %s: its record %s was not written: %s", job.name, path,
                  exc.strerror or exc)
    _log_outcome(job, result)
    _refresh_metrics(policy)
    if result.ok:
        log.info("job %s: completed ok (%.1fs)", job.name, duration)
    else:
        # The reason is printed once: by the runner for a failed step, else by the `job`
        # command's verdict (engine/commands/job.py); the log only marks the end.
        log.info("job %s: ended with an error after %.1fs", job.name, duration)
        if job.notify_on_failure:
            _mail_failure(policy, job, result)
    return result


def _log_outcome(job: JobSpec, result: JobResult) -> None:
    """The status log's line(s): see the module docstring for which level says what."""
    from engine.statuslog import write_note, write_outcome

    if job.status_log is None:
        return
    try:
        if result.ok:
            write_outcome(job.status_log, True)
        elif result.refused:
            write_note(job.status_log, "WARNING", result.reason)
        elif result.data_ok:
            write_outcome(job.status_log, True)
            write_note(job.status_log, "WARNING", f"the new data is live, but {result.reason}")
        else:
            write_outcome(job.status_log, False, result.reason)
    except FailoverError as exc:  # e.g. a full disk: the outcome still reaches the log/stdout
        log.error("job %s: %s", job.name, exc)


def _refresh_metrics(policy: Policy) -> None:
    from engine.metrics import refresh_metrics

    try:
        refresh_metrics(policy)
    except (OSError, FailoverError) as exc:
        log.warning("metrics file not written: %s", exc)


def _mail_failure(policy: Policy, job: JobSpec, result: JobResult) -> None:
    if not policy.notify:
        return
    from engine.notifier import Notifier

    try:
        # A `job_failed` event: queued in the outbox; the command delivers it at its end.
        Notifier(policy).job_failed(job.name, result.reason or "failed", isotime())
    except Exception as exc:  # noqa: BLE001 - a mail failure must not hide the job's failure
        log.warning("job %s: failure event not queued: %s", job.name, exc)
