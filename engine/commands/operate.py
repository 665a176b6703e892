"""`engage --now`, `restore`, `reset`, `pause`, `resume`: an operator acting on the engine.

When no monitor is running, the command takes the policy's lock and acts itself. When a
monitor holds the lock, the command leaves a request in `<state_dir>/requests/`, which
the monitor picks up within a second, and follows the state until it settles.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from engine.commands import load, preflight
from engine.errors import FailoverError, LockHeld
from engine.failover import Engine
from engine.fsutil import atomic_write, ensure_private_dir
from engine.monitor import requests_dir
from engine.paths import paused_flag
from engine.policy import Policy
from engine.runner import RunReport
from engine.state import StateStore, isotime

PICKUP_TIMEOUT = 15.0
FOLLOW_TIMEOUT = 120.0
_SYMBOLS = {"done": "✔", "already": "=", "continued": "!", "failed": "✘", "skipped": "·",
            "planned": "→"}


def print_report(report: RunReport) -> None:
    """One line per step: what it did, or why it failed."""
    for r in report.steps:
        print(f"  {_SYMBOLS.get(r.status, '?')} {report.phase} step {r.index + 1} "
              f"{r.step.name}: {r.summary}")


def _act(args: argparse.Namespace, request: str,
         act: Callable[[Engine], int], settled: tuple[str, ...]) -> int:
    policy = load(args)
    preflight(policy)
    store = StateStore(policy.state_dir)
    try:
        with store.hold(request):
            return act(Engine(policy, store))
    except LockHeld:
        holder = store.holder() or ""
        if ", run," not in holder:
            raise
    return _ask_monitor(policy, store, request, holder, settled)


def _ask_monitor(policy: Policy, store: StateStore, request: str, holder: str,
                 settled: tuple[str, ...]) -> int:
    folder = ensure_private_dir(requests_dir(policy.state_dir))
    path = folder / request
    atomic_write(path, f"{isotime()}\n")
    print(f"the monitor ({holder}) is running; asked it to {request}")
    deadline = time.monotonic() + PICKUP_TIMEOUT
    while path.exists():
        if time.monotonic() > deadline:
            path.unlink(missing_ok=True)
            raise FailoverError(
                f"the monitor ({holder}) did not pick up the request within "
                f"{PICKUP_TIMEOUT:.0f}s; check `failover-engine status` and its log")
        time.sleep(0.1)
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    record = store.load()
    while record.state not in settled and time.monotonic() < deadline:
        time.sleep(0.2)
        record = store.load()
    print(f"state: {record.state} since {record.since}")
    if record.state not in settled:
        print("still in progress; follow it with `failover-engine status`")
        return 0
    if record.state == "aborted":
        print(f"aborted: {record.aborted_reason}")
        return 1
    if record.last_outcome and record.last_outcome.startswith(f"request {request} refused"):
        print(record.last_outcome)
        return 1
    return 0


def _finish(engine: Engine, report: RunReport) -> int:
    print_report(report)
    if report.interrupted:
        print(f"interrupted; state {engine.record.state}: start again to resume")
        return 1
    if not report.ok:
        print(f"state: aborted — {engine.record.aborted_reason}")
        print("fix the cause, then `failover-engine reset` (or `restore` to roll back)")
        return 1
    print(f"state: {engine.record.state}")
    return 0


def engage_main(args: argparse.Namespace) -> int:
    """Engage the failover immediately (planned outage)."""
    return _act(args, "engage", lambda e: _finish(e, e.engage(manual=True)),
                ("engaged", "aborted", "watching", "suspect", "paused"))


def restore_main(args: argparse.Namespace) -> int:
    """Run the restore steps."""
    return _act(args, "restore", lambda e: _finish(e, e.restore()),
                ("watching", "aborted", "engaged"))


def reset_main(args: argparse.Namespace) -> int:
    """Leave `aborted` once the cause is fixed."""
    def act(engine: Engine) -> int:
        print(f"state: {engine.reset()}")
        return 0
    return _act(args, "reset", act, ("watching", "engaged", "aborted"))


def pause_main(args: argparse.Namespace) -> int:
    """Enter maintenance mode: the switch file holds it across restarts."""
    policy = load(args)
    ensure_private_dir(policy.state_dir)
    atomic_write(paused_flag(policy.state_dir),
                 f"paused at {isotime()}{': ' + args.reason if args.reason else ''}\n", 0o644)
    store = StateStore(policy.state_dir)
    try:
        with store.hold("pause"):
            engine = Engine(policy, store)
            if engine.record.state in ("watching", "suspect"):
                engine.pause()
            print(f"paused (state {engine.record.state}); `failover-engine resume` ends it")
    except LockHeld:
        print("paused: the running monitor applies it within a second")
    return 0


def resume_main(args: argparse.Namespace) -> int:
    """Leave maintenance mode."""
    policy = load(args)
    paused_flag(policy.state_dir).unlink(missing_ok=True)
    store = StateStore(policy.state_dir)
    try:
        with store.hold("resume"):
            engine = Engine(policy, store)
            engine.resume()
            print(f"resumed (state {engine.record.state})")
    except LockHeld:
        print("resumed: the running monitor applies it within a second")
    return 0
