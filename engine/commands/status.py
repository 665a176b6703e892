"""`status [--json]`: what the engine is doing, read from the state dir without taking the lock.

The human text is for operators; `--json` prints one object whose keys are documented in
docs/operations.md ("status --json") and only ever grow (`format` changes if a key changes
meaning). Status must answer fast and while the monitor is busy, so it reads files only:
it never imports the actions (dnspython, paramiko, pymysql) or the state machine.
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine.arming import CERT_WARNING_DAYS, certificate_days_left
from engine.commands import load
from engine.display import printable
from engine.durations import format_duration
from engine.jobrecords import data_age, read_job_records
from engine.metrics import probe_result
from engine.paths import StatePaths
from engine.policy import Policy
from engine.readiness import status_data as readiness_status
from engine.readiness import status_lines as readiness_lines
from engine.standby import half_done_swaps
from engine.state import EngineState, StateStore, isotime, parse_isotime, utcnow
from engine.states import ARMED, State

STATUS_FORMAT = 1


def _time(text: Any) -> datetime | None:
    try:
        moment = parse_isotime(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _ago(text: str | None, now: datetime) -> str:
    moment = _time(text)
    if moment is None:
        return "never"
    delta = (now - moment).total_seconds()
    return f"{text} ({format_duration(abs(delta))} {'ago' if delta >= 0 else 'from now'})"


def run_summary(run: dict[str, Any] | None, *, current: bool) -> dict[str, Any] | None:
    """The journal of an engage/restore run reduced to what an operator needs."""
    if not isinstance(run, dict):
        return None
    steps = run.get("steps") or {}
    summary: dict[str, Any] = {"phase": run.get("phase"), "started": run.get("started")}
    if current:
        failed = run.get("failed") if isinstance(run.get("failed"), dict) else None
        summary.update(steps_done=len(steps), failed=failed)
        return summary
    listed = steps if isinstance(steps, list) else []
    summary.update(
        finished=run.get("finished"), ok=run.get("ok"),
        steps=[{"step": s.get("step"), "status": s.get("status"), "summary": s.get("summary")}
               for s in listed if isinstance(s, dict)],
    )
    return summary


def collect(policy: Policy, store: StateStore, state: EngineState,
            now: datetime, *, never_run: bool = False) -> dict[str, Any]:
    """The status object (`status --json`), from the state file and the files beside it.
    `never_run`: there is no state file yet (no monitor or command has run the engine)."""
    state_dir = Path(policy.state_dir)
    paths = StatePaths(state_dir)
    paused_file = paths.paused
    from engine.safefile import FileRefused, read_limited

    try:  # a regular file of at most 64 KiB: never a FIFO that blocks `status`
        paused_text: str | None = read_limited(paused_file, "pause_reason", nofollow=True) \
            .decode("utf-8", errors="replace").strip()
    except FileRefused as exc:
        paused_text = None if exc.missing else f"(unreadable: {exc})"
    try:
        spooled = len(list(paths.spool_dir.glob("*.eml")))
    except OSError:
        spooled = 0
    interval = policy.monitor.interval
    last_cycle = _time(state.last_cycle)
    next_probe = isotime(last_cycle + timedelta(seconds=interval)) if last_cycle else None
    hold = _time(state.hold_down_until)

    probes = {}
    for name in sorted(set(policy.probes) | set(state.last_probes)):
        raw = state.last_probes.get(name) or {}
        ok, latency = probe_result(raw)
        role = ("target" if name == policy.monitor.target
                else "guard" if name in policy.monitor.guards else "other")
        days = certificate_days_left(raw, now)
        probes[name] = {"role": role, "ok": ok, "latency_seconds": latency,
                        "at": raw.get("at"), "detail": raw.get("detail"),
                        "cert_not_after": raw.get("cert_not_after"),
                        "cert_days_left": round(days, 2) if days is not None else None}

    records = read_job_records(state_dir)
    jobs = {}
    for name in sorted(set(policy.jobs) | set(records)):
        record = records.get(name, {})
        spec = policy.jobs.get(name)
        age = data_age(record, now)
        jobs[name] = {
            "schedule": spec.schedule if spec else None,
            "next_run": _next_run(spec.schedule if spec else None, now),
            "ok": record.get("ok"),
            "last_run": record.get("last_run"),
            "last_success": record.get("last_success"),
            "last_error": record.get("last_error") or record.get("unreadable"),
            "duration_seconds": record.get("duration"),
            "data_completed": record.get("data_completed"),
            "data_age_seconds": round(age, 3) if age is not None else None,
        }

    return {
        "format": STATUS_FORMAT,
        "policy": policy.name,
        "policy_file": str(Path(policy.path).absolute()),
        "state_dir": str(state_dir),
        "now": isotime(now),
        "state": state.state,
        "since": None if never_run else state.since,
        "never_run": never_run,
        "paused": paused_text is not None or state.state == State.PAUSED,
        "paused_reason": paused_text,
        "failures": state.failures,
        "failures_to_engage": policy.monitor.failures_to_engage,
        "down_since": state.down_since,
        "disarmed": state.disarmed,
        "disarmed_since": state.disarmed_since,
        "guards_failed_cycles": state.guards_failed,
        "cycles": state.cycles,
        "interval_seconds": interval,
        "last_cycle": state.last_cycle,
        "last_outcome": state.last_outcome,
        "next_probe": next_probe,
        "probes": probes,
        "jobs": jobs,
        "lock": store.holder(),
        "spooled_mail": spooled,
        "outbox": _outbox(state_dir, now),
        "readiness": readiness_status(policy),
        "hold_down_until": state.hold_down_until,
        "hold_down_active": bool(hold and hold > now),
        "aborted_reason": state.aborted_reason,
        "run": run_summary(state.run, current=True),
        "last_run": run_summary(state.last_run, current=False),
        "counts": {"engages": state.counts.get("engages", 0),
                   "restores": state.counts.get("restores", 0)},
        # CRITICAL lines: a MariaDB swap left half-done or live not matching its dump.
        "live_data_problems": half_done_swaps(state_dir),
        # With a quorum block: the monitor's last view of etcd, the shared state included
        # (engine/quorum_shared.py); None without one.
        "quorum": _quorum(policy, paths, now),
    }


def _quorum(policy: Policy, paths: StatePaths, now: datetime) -> dict[str, Any] | None:
    """The quorum as the monitor last saw it; `status` never waits for etcd itself."""
    if not isinstance(policy.raw.get("quorum"), dict):
        return None  # not even the module: status stays as fast as before without one
    from engine.quorum_shared import current_view

    return current_view(policy, paths.quorum_snapshot, now)


def render_text(data: dict[str, Any], now: datetime) -> str:
    """The operator's view of `collect()`'s object."""
    lines = [f"policy {data['policy']} ({data['policy_file']})"]
    if data.get("never_run"):
        lines.append(f"state: never run (no state file in {data['state_dir']} yet; start the "
                     "monitor: `failover-engine run`, or its systemd unit)")
    else:
        lines.append(f"state: {data['state']} since {_ago(data['since'], now)}")
    if data.get("disarmed"):
        lines.append(f"DISARMED since {data['disarmed_since']}: {data['disarmed']}")
    if data["paused"]:
        lines.append(f"paused: yes ({data['paused_reason'] or 'no reason given'})")
    if data.get("quorum") is not None:
        from engine.quorum_shared import status_lines

        lines.extend(status_lines(data["quorum"]))
    for problem in data.get("live_data_problems") or []:
        lines.append(f"live data: CRITICAL: {problem}")
    if data["aborted_reason"]:
        lines.append(f"aborted: {data['aborted_reason']} (fix it, then `failover-engine reset`)")
    if data["state"] in ARMED:
        lines.append(f"failures: {data['failures']}/{data['failures_to_engage']}")
    elif (down := _time(data.get("down_since"))) is not None:
        # The threshold has been met (or does not apply now): the duration says more.
        lasted = format_duration(max(0.0, (now - down).total_seconds()))
        lines.append(f"production down for {lasted} (since {data['down_since']})")
    else:
        lines.append("production: not failing now")
    lines.append(f"last cycle: {_ago(data['last_cycle'], now)}"
                 + (f": {data['last_outcome']}" if data["last_outcome"] else ""))
    every = format_duration(data["interval_seconds"])
    lines.append(f"next probe: {data['next_probe'] or 'when the monitor starts'} (every {every})")
    if data["hold_down_until"]:
        active = "active" if data["hold_down_active"] else "expired"
        lines.append(f"hold-down: until {data['hold_down_until']} ({active})")
    lines.append(f"lock: {data['lock'] or 'free (no monitor running)'}")
    lines.append(f"spooled mail: {data['spooled_mail']}")
    lines.append(_outbox_line(data["outbox"]))
    lines.extend(readiness_lines(data["readiness"]))
    lines.append("probes:")
    for name, probe in data["probes"].items():
        result = {True: "ok", False: "FAILED", None: "not run yet"}[probe["ok"]]
        latency = (f" in {format_duration(probe['latency_seconds'])}"
                   if probe["latency_seconds"] is not None else "")
        detail = f" ({probe['detail']})" if probe["detail"] else ""
        lines.append(f"  {name} [{probe['role']}]: {result}{latency}{detail}")
        days = probe.get("cert_days_left")
        if days is not None:
            soon = " — renew it" if days < CERT_WARNING_DAYS else ""
            state = f"expired {-days:.0f} days ago" if days <= 0 else f"{days:.0f} days left"
            lines.append(f"    client certificate: {state} (until {probe['cert_not_after']})"
                         f"{soon}")
    if data["jobs"]:
        lines.append("jobs:")
    for name, job in data["jobs"].items():
        age = job["data_age_seconds"]
        age_text = f", data age {format_duration(age)}" if age is not None else ""
        lines.append(f"  {name}: last success {_ago(job['last_success'], now)}{age_text}")
        if job.get("next_run"):
            lines.append(f"    next run {_ago(job['next_run'], now)} ({job['schedule']})")
        if job["ok"] is False and job["last_error"]:
            lines.append(f"    last run {job['last_run']} failed: {job['last_error']}")
        elif job["ok"] is None and job["last_error"]:  # an unreadable record
            lines.append(f"    {job['last_error']}")
    run, last = data["run"], data["last_run"]
    if run:
        failed = f"; stopped: {run['failed'].get('error')}" if run.get("failed") else ""
        lines.append(f"current run: {run['phase']} started {run['started']}, "
                     f"{run['steps_done']} steps done{failed}")
    if last:
        verdict = "ok" if last["ok"] else "FAILED"
        lines.append(f"last run: {last['phase']} {verdict}, finished {last['finished']}")
        for step in last["steps"]:
            lines.append(f"  {step['step']}: {step['status']}: {step['summary']}")
    counts = data["counts"]
    lines.append(f"engages completed: {counts['engages']}, restores completed: "
                 f"{counts['restores']}")
    # Text from files (a pause reason, a job's error) is shown escaped: no control character
    # reaches the terminal (engine/display.py).
    return "\n".join(printable(line) for line in lines) + "\n"


def _outbox(state_dir: Path, now: datetime) -> dict[str, Any]:
    """The event outbox's depth, oldest age and undeliverable must-deliver events."""
    from engine.outbox import Outbox

    try:
        return Outbox(state_dir).stats(now).as_dict()
    except OSError as exc:  # e.g. a user who may not read the state dir: say so, not 0
        return {"depth": None, "error": f"{exc.filename or state_dir}: {exc.strerror or exc}"}


def _outbox_line(outbox: dict[str, Any]) -> str:
    if outbox["depth"] is None:
        return f"outbox: unknown ({outbox['error']})"
    if not outbox["depth"]:
        return "outbox: empty (every event delivered)"
    channels = ", ".join(f"{name} {count}" for name, count in sorted(outbox["by_channel"].items()))
    text = (f"outbox: {outbox['depth']} event(s) waiting ({channels}), oldest queued "
            f"{outbox['oldest_queued']} ({format_duration(outbox['oldest_age_seconds'] or 0)} ago)")
    for item in outbox["waiting_critical"]:
        text += (f"; CRITICAL: the {item['kind']} event has not reached {item['channel']}: "
                 f"{item['error']}")
    return text


def _next_run(schedule: str | None, now: datetime) -> str | None:
    """When cron next starts a job with this schedule (UTC ISO), or None."""
    from engine.schedule import next_run

    moment = next_run(schedule, now) if schedule else None
    return isotime(moment) if moment else None


def main(args: argparse.Namespace) -> int:
    """Print the status as text, or as the documented JSON object with --json."""
    policy = load(args)
    store = StateStore(policy.state_dir)
    now = utcnow()
    never_run = not store.path.exists()
    data = collect(policy, store, store.load(), now, never_run=never_run)
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render_text(data, now), end="")
    return 0
