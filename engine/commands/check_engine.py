"""`check engine`: a Nagios/Icinga plugin watching the engine itself.

    CRITICAL  the monitor has never completed a cycle, or not within 3 intervals
              (it is dead, hung or cannot run), or the state is `aborted` (needs `reset`)
    WARNING   the failover is engaged (the standby serves users), or maintenance mode is on,
              or an engage/restore is in progress (no cycles run meanwhile)
    OK        otherwise
    UNKNOWN   the policy or the state file cannot be read, or anything unexpected

One line of text, then `|` and performance data (cycle age, failures) for graphs:

    ENGINE OK - policy gocdb watching, last cycle 2m ago, failures 0/30 | cycle_age=120s;;1800;0 ...
"""
from __future__ import annotations

import argparse
from datetime import datetime

from engine.commands import load
from engine.durations import format_duration
from engine.errors import FailoverError
from engine.paths import StatePaths
from engine.policy import Policy
from engine.state import EngineState, StateStore, parse_isotime, utcnow
from engine.states import RUNNING, State

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
STALE_INTERVALS = 3


def evaluate(policy: Policy, state: EngineState, paused: bool, now: datetime,
             holder: str | None = None) -> tuple[int, str]:
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
    age = (now - last).total_seconds() if last is not None and last.tzinfo else None
    failures = f"failures {state.failures}/{policy.monitor.failures_to_engage}"

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
    elif age > limit:
        code = CRITICAL
        text = (f"no probe cycle for {format_duration(age)} (more than {STALE_INTERVALS} "
                f"intervals of {format_duration(interval)}); is the monitor running?")
    elif state.state == State.ENGAGED:
        code = WARNING
        text = f"failover engaged since {state.since}; restore when production is back"
    elif paused or state.state == State.PAUSED:
        code, text = WARNING, "maintenance mode (paused): nothing will engage"
    else:
        code, text = OK, state.state
    if age is not None and code != CRITICAL:
        text += f", last cycle {format_duration(age)} ago"
    # `|` starts the perfdata and a newline the long output: keep them out of the text.
    text = " ".join(text.replace("|", "/").split())
    perf = [f"failures={state.failures};;{policy.monitor.failures_to_engage};0"]
    if age is not None:
        perf.insert(0, f"cycle_age={age:.0f}s;;{limit:.0f};0")
    return code, (f"ENGINE {LABELS[code]} - policy {policy.name} {text}, {failures} | "
                  + " ".join(perf))


def main(args: argparse.Namespace) -> int:
    """Print the plugin line and return its Nagios code (UNKNOWN on anything unexpected)."""
    try:
        policy = load(args)
        state = StateStore(policy.state_dir).load()
        paused = StatePaths(policy.state_dir).paused.exists()
        holder = StateStore(policy.state_dir).holder()
        code, line = evaluate(policy, state, paused, utcnow(), holder)
    except FailoverError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"ENGINE UNKNOWN - {first}")
        return UNKNOWN
    except Exception as exc:  # noqa: BLE001 - a plugin must answer 0-3, never a traceback
        print(f"ENGINE UNKNOWN - internal error ({type(exc).__name__}: {exc})")
        return UNKNOWN
    print(line)
    return code
