"""`engage --now`, `restore`, `reset`, `pause`, `resume`: an operator acting on the engine.

When no monitor is running, the command takes the policy's lock and acts itself. When the
monitor (`failover-engine run`) holds the lock, the command leaves a request record for it
(engine/monitor_requests.py), which the monitor picks up within a second, and waits for
its reply: a refusal is exit 1 with the monitor's reason on stderr, an accepted request
prints the resulting state (exit 1 if the run aborted or was cut short). It says what it
waits for and for how long; if the monitor dies meanwhile (it no longer holds the lock)
it stops waiting and exits 1, naming the monitor and the state the engine reached.

With a `quorum:` block (engine/quorum_requests.py): on an observer that is not one of
`quorum.actors` every one of these commands leaves a request in the quorum's store and
waits for an actor's reply (exit 1 with the reason on a refusal, or when no actor picks it
up within `--wait`); so do `pause` and `resume` on an actor whose monitor runs (the pause
is shared through the store). On an actor, `restore`, `reset`, `pause` and `resume` hold
or take the quorum's leader key first, and are refused (exit 1, nothing done) when
another engine holds it or the store cannot be reached.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from engine.commands import load, preflight
from engine.durations import format_duration, parse_duration
from engine.errors import FailoverError, LockHeld, UsageError
from engine.failover import Engine
from engine.fsutil import atomic_write
from engine.monitor_requests import caller, collect_reply, picked_up, submit, withdraw
from engine.paths import StatePaths
from engine.policy import Policy
from engine.runner import RunReport
from engine.state import LockHolder, StateStore, isotime
from engine.states import ARMED, RUNNING, State

PICKUP_TIMEOUT = 15.0
FOLLOW_TIMEOUT = 120.0
_SYMBOLS = {"done": "✔", "already": "=", "continued": "!", "failed": "✘", "skipped": "·",
            "planned": "→"}


def print_report(report: RunReport) -> None:
    """One line per step: what it did, or why it failed."""
    for r in report.steps:
        print(f"  {_SYMBOLS.get(r.status, '?')} {report.phase} step {r.index + 1} "
              f"{r.step.name}: {r.summary}")


def _wait(args: argparse.Namespace, default: float = PICKUP_TIMEOUT) -> float:
    """`--wait`: how long to wait for the monitor (or an actor) to pick a request up."""
    value = getattr(args, "wait", None)
    if value is None:
        return default
    try:
        return parse_duration(value, positive=True, maximum=3600)
    except ValueError as exc:
        raise UsageError(f"--wait {value}: {exc}") from None


def _only_votes(policy: Policy) -> bool:
    """With a quorum: block, whether this observer is not an actor (it never acts itself)."""
    from engine.quorum import quorum_spec

    spec = quorum_spec(policy)
    return spec is not None and not spec.is_actor


def _ask_quorum(args: argparse.Namespace, policy: Policy, kind: str, *, force: bool = False,
                without_quorum: bool = False, reason: str = "") -> int:
    """Ask the quorum's actors through the store and report their reply (exit 0 only when
    accepted and finished)."""
    from engine.quorum import build_quorum
    from engine.quorum_requests import ask

    quorum = build_quorum(policy)
    if quorum is None:  # not reached: callers check the block first
        raise FailoverError(f"policy {policy.name} has no quorum: block")
    if without_quorum:
        raise FailoverError(
            f"--without-quorum acts without the store, on an actor only; observer "
            f"{quorum.spec.name} only votes (quorum.actors: {', '.join(quorum.spec.actors)}): "
            "run it on an actor's host; nothing was done")
    # An actor's monitor looks at the store once a cycle: wait for two of them at least.
    default = max(PICKUP_TIMEOUT, 2 * policy.monitor.interval + 2 * quorum.spec.timeout)
    reply = ask(quorum, kind, force=force, reason=reason, pickup=_wait(args, default))
    if not reply.accepted:
        raise FailoverError(f"{reply.actor} refused the {kind}: {reply.reason}")
    print(f"done by {reply.actor}: its state is {reply.state}"
          + ("; failure count cleared" if kind == "reset" else ""))
    if reply.state == State.ABORTED:
        print(f"aborted: {reply.reason}")
        print("fix the cause, then `failover-engine reset` (or `restore` to roll back)")
        return 1
    if reply.state in RUNNING:
        print(f"{reply.actor} stopped before the run finished; it resumes once it holds the "
              "leader key again (see `failover-engine status` there)")
        return 1
    return 0


def _with_key(engine: Engine, kind: str, **options: object) -> RunReport | None:
    """restore, reset, pause, resume on this engine: with a quorum: block, holding the
    leader key (engine/quorum_requests.py); a key taken for it is given back after."""
    from engine.quorum import build_quorum
    from engine.quorum_requests import execute, release_if_idle

    quorum = build_quorum(engine.policy, engine.stop)
    try:
        result: RunReport | None = execute(quorum, engine, kind,
                                           who=f"{caller()} on the command line",
                                           **options)  # type: ignore[arg-type]
    finally:
        release_if_idle(quorum, engine)
    return result


def _act(args: argparse.Namespace, request: str, act: Callable[[Engine], int], *,
         force: bool = False, without_quorum: bool = False) -> int:
    policy = load(args)
    if _only_votes(policy):
        return _ask_quorum(args, policy, request, force=force, without_quorum=without_quorum)
    preflight(policy)
    store = StateStore(policy.state_dir)
    try:
        with store.hold(request):
            return act(Engine(policy, store))
    except LockHeld:
        holder = store.lock_holder()
        if holder is None or not holder.is_monitor:
            raise
    return _ask_monitor(store, request, holder, force=force, without_quorum=without_quorum,
                        pickup=_wait(args))


def _monitor_gone(store: StateStore, holder: LockHolder) -> bool:
    """True when the monitor we asked no longer holds the lock (it died or was stopped)."""
    now = store.lock_holder()
    return now is None or now.pid != holder.pid


def _died(store: StateStore, kind: str, holder: LockHolder) -> FailoverError:
    """The error for a monitor that died before answering: who, and the state reached."""
    record = store.load()
    run = record.run if isinstance(record.run, dict) else None
    done = f", {len(run.get('steps') or {})} steps done" if run else ""
    now = store.lock_holder()
    after = (f"; {now} holds the lock now" if now is not None else
             "; start the monitor again (it resumes an interrupted run from its journal)")
    return FailoverError(
        f"the monitor ({holder}) stopped before it answered the {kind} request; the engine "
        f"reached state {record.state} (since {record.since}{done}){after}")


def _ask_monitor(store: StateStore, kind: str, holder: LockHolder, *,
                 force: bool = False, without_quorum: bool = False,
                 pickup: float = PICKUP_TIMEOUT) -> int:
    paths = StatePaths(store.state_dir)
    request = submit(paths, kind, force=force, without_quorum=without_quorum)
    print(f"the monitor ({holder}) is running; asked it to {kind}; waiting up to "
          f"{format_duration(pickup)} for it to pick the request up", flush=True)
    deadline = time.monotonic() + pickup
    while not picked_up(paths, request.request_id):
        if _monitor_gone(store, holder) and withdraw(paths, request.request_id):
            raise FailoverError(f"the monitor ({holder}) stopped before it picked up the "
                                f"{kind} request; nothing was done")
        if time.monotonic() > deadline and withdraw(paths, request.request_id):
            raise FailoverError(
                f"the monitor ({holder}) did not pick up the request within "
                f"{format_duration(pickup)}; nothing was done; check `failover-engine status` "
                "and its log")
        time.sleep(0.1)
    print(f"waiting up to {format_duration(FOLLOW_TIMEOUT)} for the monitor to finish the "
          f"{kind}", flush=True)
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    reply = collect_reply(paths, request.request_id)
    while reply is None and time.monotonic() < deadline:
        if _monitor_gone(store, holder):
            reply = collect_reply(paths, request.request_id)  # it may have answered, then exited
            if reply is None:
                raise _died(store, kind, holder)
            break
        time.sleep(0.2)
        reply = collect_reply(paths, request.request_id)
    if reply is None:
        record = store.load()
        print(f"the monitor is still working on it; state: {record.state} since {record.since}")
        print("follow it with `failover-engine status`")
        return 0
    if not reply.accepted:
        raise FailoverError(f"the monitor refused: {reply.reason}")
    print(f"state: {reply.state}" + ("; failure count cleared" if kind == "reset" else ""))
    if reply.state == State.ABORTED:
        print(f"aborted: {reply.reason}")
        print("fix the cause, then `failover-engine reset` (or `restore` to roll back)")
        return 1
    if reply.state in RUNNING:
        print("the monitor stopped before the run finished; start it again to resume")
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
    """Engage the failover immediately (planned outage); `--force` overrides a failing
    probe step (recorded as overridden in the audit log and the ENGAGED message)."""
    force = bool(getattr(args, "force", False))
    without_quorum = bool(getattr(args, "without_quorum", False))

    def act(engine: Engine) -> int:
        # With a quorum: block, the leader key first (engine/quorum.py).
        from engine.quorum import build_quorum, engage_by_operator

        quorum = build_quorum(engine.policy, engine.stop)
        if quorum is not None and without_quorum:
            print("engaging without the quorum's leader key (--without-quorum); recorded in "
                  "the audit log")
        return _finish(engine, engage_by_operator(
            quorum, engine, lambda: engine.engage(manual=True, force=force),
            without_quorum=without_quorum, who="the command line"))
    return _act(args, "engage", act, force=force, without_quorum=without_quorum)


def restore_main(args: argparse.Namespace) -> int:
    """Run the restore steps (with a quorum: block, holding the leader key)."""
    def act(engine: Engine) -> int:
        report = _with_key(engine, "restore")
        assert report is not None  # restore always runs its steps
        return _finish(engine, report)
    return _act(args, "restore", act)


def reset_main(args: argparse.Namespace) -> int:
    """Leave `aborted` once the cause is fixed (with a quorum: block, holding the key)."""
    def act(engine: Engine) -> int:
        before = f"{engine.record.failures}/{engine.policy.monitor.failures_to_engage}"
        _with_key(engine, "reset")
        print(f"state: {engine.record.state}; failure count cleared (was {before})")
        return 0
    return _act(args, "reset", act)


def _pause_with_quorum(args: argparse.Namespace, policy: Policy, kind: str) -> int | None:
    """pause/resume with a quorum: block: through the store on an observer that only
    votes or whose monitor runs; on an actor without one, here, holding the leader key.
    None without a quorum: block (the switch file alone, as before)."""
    from engine.quorum import quorum_spec

    spec = quorum_spec(policy)
    reason = str(getattr(args, "reason", "") or "")
    if spec is None:
        return None
    if not spec.is_actor:
        return _ask_quorum(args, policy, kind, reason=reason)
    store = StateStore(policy.state_dir)
    store.ensure_dir()
    try:
        with store.hold(kind):
            engine = Engine(policy, store)
            _with_key(engine, kind, reason=reason)
            print(f"{kind}d, shared through the quorum's store (state {engine.record.state})")
            return 0
    except LockHeld:
        holder = store.lock_holder()
        if holder is None or not holder.is_monitor:
            raise
    return _ask_quorum(args, policy, kind, reason=reason)


def pause_main(args: argparse.Namespace) -> int:
    """Enter maintenance mode: the switch file holds it across restarts (with a quorum:
    block the pause is also shared through the store)."""
    policy = load(args)
    shared = _pause_with_quorum(args, policy, "pause")
    if shared is not None:
        return shared
    store = StateStore(policy.state_dir)
    store.ensure_dir()  # one clear line when the state dir cannot be made or is unsafe
    switch = StatePaths(policy.state_dir).paused
    try:
        atomic_write(switch, f"paused at {isotime()}{': ' + args.reason if args.reason else ''}"
                     "\n", 0o644)
    except OSError as exc:
        raise FailoverError(f"{switch}: cannot write the pause switch ({exc.strerror}); "
                            "check the state directory's owner, mode and free space") from None
    try:
        with store.hold("pause"):
            engine = Engine(policy, store)
            if engine.record.state in ARMED:
                engine.pause()
            print(f"paused (state {engine.record.state}); `failover-engine resume` ends it")
    except LockHeld:
        print("paused: the running monitor applies it within a second")
    return 0


def resume_main(args: argparse.Namespace) -> int:
    """Leave maintenance mode (with a quorum: block, also the shared pause)."""
    policy = load(args)
    shared = _pause_with_quorum(args, policy, "resume")
    if shared is not None:
        return shared
    switch = StatePaths(policy.state_dir).paused
    try:
        switch.unlink(missing_ok=True)
    except OSError as exc:
        raise FailoverError(f"{switch}: cannot remove the pause switch ({exc.strerror}); "
                            "check the state directory's owner and mode") from None
    store = StateStore(policy.state_dir)
    try:
        with store.hold("resume"):
            engine = Engine(policy, store)
            engine.resume()
            print(f"resumed (state {engine.record.state})")
    except LockHeld:
        print("resumed: the running monitor applies it within a second")
    return 0
