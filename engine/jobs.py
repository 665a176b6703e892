"""Jobs (`failover-engine job NAME`, what cron calls): the standby refresh and its bookkeeping.

Around the job's steps (run by the runner, like engage and restore) this module:
- honours the `pause_file` switch: while it exists the job does nothing, logs the file's
  contents and exits 1 (the original's noFetch/noImport);
- refuses to run while the failover is engaged, engaging or restoring — the standby serves
  users then and an import would overwrite their data — unless `--force` or the job says
  `allow_when_engaged: true`;
- holds `<state_dir>/jobs/<name>.lock` so two runs never overlap;
- appends `<UTC time> INFO: completed ok` or `<UTC time> ERROR: <reason>` to `status_log`;
- records last run, last success, duration and the data's age in `<state_dir>/jobs/<name>.json`;
- mails the admins on failure when `notify_on_failure` is set.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import FailoverError, UsageError
from engine.fsutil import atomic_write, ensure_private_dir
from engine.paths import StatePaths
from engine.policy import JobSpec, Policy
from engine.runner import Runner, RunReport
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
    state = StateStore(policy.state_dir).load().state
    if state in BUSY_STATES and not (force or job.allow_when_engaged):
        return _end(policy, job, JobResult(
            False, f"refused: the failover is {state} and the standby serves users; "
            "restore first, or use --force if you really mean to overwrite its data"), 0.0)
    started = time.monotonic()
    with JobLock(StatePaths(policy.state_dir).job_lock(name)):
        ensure_private_dir(job.work_dir)
        old_umask = os.umask(0o077)  # the dump holds personal data in clear text
        try:
            runner = Runner(policy, StateStore(policy.state_dir), None)
            report = runner.run(f"job:{name}", job.steps, work_dir=job.work_dir)
        finally:
            os.umask(old_umask)
    if report.ok:
        result = JobResult(True, report=report)
    else:
        failed = report.failed
        reason = (f"step {failed.index + 1} ({failed.step.name}) failed: {failed.summary}"
                  if failed else "interrupted")
        result = JobResult(False, reason, report)
    return _end(policy, job, result, time.monotonic() - started)


def _end(policy: Policy, job: JobSpec, result: JobResult, duration: float) -> JobResult:
    from engine.statuslog import write_outcome

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
    path = job_record_path(policy.state_dir, job.name)
    ensure_private_dir(path.parent)
    atomic_write(path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o644)
    if job.status_log is not None:
        write_outcome(job.status_log, result.ok, result.reason)
    _refresh_metrics(policy)
    if result.ok:
        log.info("job %s: completed ok (%.1fs)", job.name, duration)
    else:
        log.error("job %s: %s", job.name, result.reason)
        if job.notify_on_failure:
            _mail_failure(policy, job, result)
    return result


def _refresh_metrics(policy: Policy) -> None:
    from engine.metrics import refresh_metrics

    try:
        refresh_metrics(policy)
    except (OSError, FailoverError) as exc:
        log.warning("metrics file not written: %s", exc)


def _mail_failure(policy: Policy, job: JobSpec, result: JobResult) -> None:
    if not policy.notify:
        return
    from engine.mail import send_mail
    from engine.secrets import SecretStore

    try:
        send_mail(policy.notify, f"[{policy.name}] job {job.name} failed",
                  f"Policy: {policy.name}\nJob: {job.name}\nTime: {isotime()}\n\n{result.reason}\n",
                  spool_dir=StatePaths(policy.state_dir).spool_dir, secret=SecretStore(policy).path)
    except Exception as exc:  # noqa: BLE001 - a mail failure must not hide the job's failure
        log.warning("job %s: failure mail not sent: %s", job.name, exc)
