"""`check engine`: a Nagios/Icinga plugin watching the engine itself.

    CRITICAL  the monitor has never completed a cycle, or not within 3 intervals
              (it is dead, hung or cannot run), or the state is `aborted` (needs `reset`)
    WARNING   the failover is engaged (the standby serves users), or maintenance mode is on,
              or an engage/restore is in progress (no cycles run meanwhile), or the
              failover is disarmed (every guard failing, or the target's probe cannot
              run: engine/arming.py), or a probe's client certificate expires within
              --cert-warning (default 14 days)
              or an event has waited in the outbox more than OUTBOX_WARNING (10 minutes)
    CRITICAL  also: an aborted or disarmed event that a channel failed to take
    OK        otherwise
    UNKNOWN   the policy, the state file or the lock cannot be read (permissions: run
              `install --check-group GROUP`), or anything unexpected

One line of text, then `|` and performance data (cycle age, failures, certificate days
left) for graphs:

    ENGINE OK - policy gocdb watching, last cycle 2m ago, failures 0/30 | cycle_age=120s;;1800;0 ...

Once engaged the count has met its threshold: the line says how long production has
been down instead.
"""
from __future__ import annotations

import argparse
import errno
import os
from datetime import datetime
from pathlib import Path

from engine.arming import CERT_WARNING_DAYS, certificate_days_left
from engine.clock import elapsed
from engine.commands import load
from engine.durations import format_duration, parse_duration
from engine.nagios import CRITICAL, OK, UNKNOWN, WARNING, answer
from engine.outbox import Outbox, OutboxStats
from engine.paths import StatePaths
from engine.policy import Policy
from engine.state import EngineState, StateStore, parse_isotime, utcnow
from engine.states import ARMED, RUNNING, State

LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
STALE_INTERVALS = 3
OUTBOX_WARNING = 600.0  # seconds an event may wait for a channel before WARNING


def _outage(policy: Policy, state: EngineState, now: datetime) -> str:
    """`failures N/T` while armed; once the threshold is met, how long production is down."""
    if state.state in ARMED:
        return f"failures {state.failures}/{policy.monitor.failures_to_engage}"
    since = _time(state.down_since)
    if since is None:
        return "production not failing now"
    return f"production down for {format_duration(max(0.0, (now - since).total_seconds()))}"


def _time(text: str | None) -> datetime | None:
    try:
        moment = parse_isotime(text)
    except (TypeError, ValueError):
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def expiring_certificates(state: EngineState, now: datetime,
                          warn_days: float) -> list[tuple[str, float]]:
    """(probe, days left) of every client certificate expiring within `warn_days`."""
    found = []
    for name, probe in sorted(state.last_probes.items()):
        days = certificate_days_left(probe, now) if isinstance(probe, dict) else None
        if days is not None and days < warn_days:
            found.append((name, days))
    return found


def evaluate(policy: Policy, state: EngineState, paused: bool, now: datetime,
             holder: str | None = None,
             cert_warning_days: float = CERT_WARNING_DAYS,
             outbox: OutboxStats | None = None) -> tuple[int, str]:
    """(Nagios code, one line with perfdata) for the engine's state at `now`.

    `holder` is who holds the engine lock. An engage or restore runs inside the monitor's
    loop, so no cycle completes while it does (a restore's wait_dns takes hours): while
    the state is engaging/restoring and the lock is held, a stale cycle is WARNING, not
    CRITICAL. Without a holder the run was cut short and nothing resumes it: CRITICAL.
    """
    interval = policy.monitor.interval
    limit = STALE_INTERVALS * interval
    try:
        last = parse_isotime(state.last_cycle)
    except ValueError:
        last = None
    # The age on the monotonic clock when the cycle ran on this boot (engine/clock.py): a
    # wall clock set back cannot make a dead monitor look alive.
    measured = elapsed(state.monotonic, "last_cycle", last if last and last.tzinfo else None,
                       now)
    age = measured.seconds
    failures = _outage(policy, state, now)

    if state.state == State.ABORTED:
        code = CRITICAL
        text = f"aborted: {state.aborted_reason or 'no reason recorded'}; fix it, then `reset`"
    elif state.state in RUNNING and holder and (age is None or age > limit):
        run = state.run if isinstance(state.run, dict) else {}
        done = len(run.get("steps") or {})
        code = WARNING
        phase = {State.ENGAGING: "engage", State.RESTORING: "restore"}[state.state]
        text = (f"{phase} in progress since {run.get('started') or state.since} "
                f"({done} steps done; {holder})")
    elif age is None:
        code, text = CRITICAL, "the monitor has never completed a probe cycle (is it running?)"
    elif measured.skew:
        code = WARNING
        text = (f"clock skew: the last cycle is stamped {state.last_cycle}, "
                f"{format_duration(-age)} in the future; the monitor's liveness cannot be "
                "judged (check NTP)")
        age = None
    elif age > limit:
        code = CRITICAL
        text = (f"no probe cycle for {format_duration(age)} (more than {STALE_INTERVALS} "
                f"intervals of {format_duration(interval)}); is the monitor running?")
    elif state.state == State.ENGAGED:
        code = WARNING
        text = f"failover engaged since {state.since}; restore when production is back"
    elif paused or state.state == State.PAUSED:
        code, text = WARNING, "maintenance mode (paused): nothing will engage"
    elif state.disarmed:
        code = WARNING
        text = (f"the failover is disarmed: {state.disarmed} (since "
                f"{state.disarmed_since or 'unknown'}); {state.state}")
    else:
        code, text = OK, state.state
    expiring = expiring_certificates(state, now, cert_warning_days)
    for name, days in expiring:
        if code == OK:
            code = WARNING
        text += (f"; client certificate of probe {name} expired {format_duration(-days * 86400)}"
                 " ago" if days <= 0 else
                 f"; client certificate of probe {name} expires in "
                 f"{format_duration(days * 86400)}")
    if outbox is not None:
        code, text = _judge_outbox(outbox, code, text)
    if age is not None and code != CRITICAL:
        text += f", last cycle {format_duration(age)} ago"
    # `|` starts the perfdata and a newline the long output: keep them out of the text.
    text = " ".join(text.replace("|", "/").split())
    perf = [f"failures={state.failures};;{policy.monitor.failures_to_engage};0"]
    if age is not None:
        perf.insert(0, f"cycle_age={age:.0f}s;;{limit:.0f};0")
    lefts = [d for d in (certificate_days_left(p, now) for p in state.last_probes.values()
                         if isinstance(p, dict)) if d is not None]
    if lefts:
        perf.append(f"cert_days_left={min(lefts):.1f};{cert_warning_days:g};0")
    if outbox is not None:
        perf.append(f"outbox_depth={outbox.depth};;;0")
        perf.append(f"outbox_oldest_age={outbox.oldest_age_seconds or 0:.0f}s;"
                    f"{OUTBOX_WARNING:.0f};;0")
    return code, (f"ENGINE {LABELS[code]} - policy {policy.name} {text}, {failures} | "
                  + " ".join(perf))


def _judge_outbox(outbox: OutboxStats, code: int, text: str) -> tuple[int, str]:
    """Escalate for events that do not get out: CRITICAL for an aborted or disarmed event a
    channel failed to take, WARNING when one has waited more than OUTBOX_WARNING."""
    for item in outbox.waiting_critical:
        code = CRITICAL if code != UNKNOWN else code
        text += (f"; the {item['kind']} event cannot be delivered by {item['channel']}: "
                 f"{item['error']}")
    age = outbox.oldest_age_seconds
    if age is not None and age > OUTBOX_WARNING:
        if code == OK:
            code = WARNING
        text += (f"; {outbox.depth} event(s) wait in the outbox, the oldest for "
                 f"{format_duration(age)}")
    return code, text


def _unreadable(policy: Policy) -> Path | None:
    """The first of the files this check reads that this user may not read, or None."""
    paths = StatePaths(policy.state_dir)
    if paths.state_dir.exists() and not os.access(paths.state_dir, os.R_OK | os.X_OK):
        return paths.state_dir
    for path in (paths.state_file, paths.engine_lock):
        if path.exists() and not os.access(path, os.R_OK):
            return path
    return None


def main(args: argparse.Namespace) -> int:
    """Print the plugin line and return its Nagios code (UNKNOWN on anything unexpected)."""
    try:
        warn = parse_duration(getattr(args, "cert_warning", None) or f"{CERT_WARNING_DAYS:g}d")
    except ValueError as exc:
        print(f"ENGINE UNKNOWN - --cert-warning: {exc}")
        return UNKNOWN
    def judge() -> tuple[int, str]:
        policy = load(args)
        unreadable = _unreadable(policy)
        if unreadable is not None:
            raise PermissionError(errno.EACCES, "permission denied", str(unreadable))
        state = StateStore(policy.state_dir).load()
        paused = StatePaths(policy.state_dir).paused.exists()
        holder = StateStore(policy.state_dir).holder()
        now = utcnow()
        return evaluate(policy, state, paused, now, holder, warn / 86400,
                        Outbox(policy.state_dir).stats(now))

    return answer("ENGINE", judge)
