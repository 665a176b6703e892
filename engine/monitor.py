"""The monitor (`failover-engine run`): probe production on a fixed schedule and engage.

Cycles start at `start + k × interval` on the monotonic clock, so the period never
drifts: a cycle that overruns a little is caught up by starting the next one at once, and
only after a long stall (more than CATCH_UP intervals behind, e.g. a long engage run) are
the missed slots skipped, so there is never a burst of cycles. Each
cycle runs the target and the guards concurrently, classifies the result (engine/tally.py)
and logs one readable line, e.g.

    probe production failed (3/30): HTTP 503; guard internet ok

Between cycles it wakes every few hundred milliseconds to notice SIGTERM, SIGHUP
(reload the policy if it validates), the `paused` switch file and requests left by
`engage --now`, `restore` and `reset` while it runs (engine/monitor_requests.py: each is a
JSON record, and the monitor answers each with a JSON reply saying whether it accepted).
After `engaged` it keeps probing and reports when production is back, but it never fails
back on its own.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from actions import registry
from actions.base import ProbeResult
from engine.arming import disarm_reason, guard_streak
from engine.durations import format_duration, parse_duration
from engine.errors import FailoverError
from engine.failover import Engine
from engine.logs import event
from engine.machine import Trigger
from engine.monitor_requests import (
    BadRequest,
    Reply,
    Request,
    has_pending,
    prune_replies,
    take_pending,
    write_reply,
)
from engine.paths import StatePaths
from engine.policy import Policy
from engine.readiness import ReadinessRunner, notifier_emit
from engine.state import isotime, parse_isotime, utcnow
from engine.states import ARMED, STANDBY_BUSY, State
from engine.tally import Cycle, Tally, classify

log = logging.getLogger("failover_engine.monitor")

# How often an idle monitor looks for requests and the pause switch: a second is what
# the CLI promises, and a shorter tick cost 5 s of CPU per hour (BENCHMARKS.md).
TICK = 1.0
# How many intervals behind the schedule the monitor still catches up rather than skips.
CATCH_UP = 3


def next_slot(slot: int, start: float, interval: float, now: float) -> int:
    """The schedule slot of the next cycle: the following one, even if it is already due
    (catching up keeps cycle N at N × interval), unless the monitor fell more than CATCH_UP
    intervals behind, when it skips to the slot after now instead of firing a burst."""
    following = slot + 1
    if now - (start + following * interval) > CATCH_UP * interval:
        return int((now - start) / interval) + 1
    return following


class Monitor:
    """Runs cycles for one policy until stopped; see the module docstring."""

    def __init__(self, engine: Engine, *, reload: Callable[[], Policy] | None = None) -> None:
        self.engine = engine
        self.reload_requested = threading.Event()
        self._reload = reload
        self._probes: dict[str, object] = {}
        self._build_probes()
        # Several observers deciding together through etcd (engine/quorum.py): only with
        # a `quorum:` block; without one nothing changes.
        from engine.quorum import build_quorum

        self.quorum = build_quorum(engine.policy, engine.stop)
        # A quorum block changed by a reload while this engine holds the leader key in a
        # busy state: applied once it is armed again (see _apply_quorum_change).
        self._quorum_deferred = False
        # The last transition, for the shared state's reason (engine/quorum_shared.py).
        self._last_transition: str | None = None
        self._deferral_logged = False
        # Every transition is mirrored into the store while we hold the leader key.
        engine.transition_listeners.append(self._mirror_transition)
        # Standby readiness (engine/readiness.py): its own schedule, in the background.
        self.readiness = ReadinessRunner(lambda: self.policy,
                                         lambda: str(self.engine.record.state),
                                         notifier_emit(engine))

    @property
    def policy(self) -> Policy:
        """The policy in force (replaced on a successful reload)."""
        return self.engine.policy

    @property
    def paths(self) -> StatePaths:
        """The state directory's files (the policy's state_dir)."""
        return StatePaths(self.policy.state_dir)

    def _build_probes(self) -> None:
        # Guards are reachability checks (actions/probes.py): any answer will do.
        guards = set(self.policy.monitor.guards)
        self._probes = {
            name: registry.probe_class(spec.kind)(spec.params, guard=name in guards)
            for name, spec in self.policy.probes.items()
        }

    # -- one cycle ------------------------------------------------------------------------
    def cycle(self) -> str:
        """Run one probe cycle, update the state, engage if due; return the outcome line."""
        monitor = self.policy.monitor
        names = [monitor.target, *monitor.guards]
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="probe") as pool:
            results: dict[str, ProbeResult] = dict(
                zip(names, pool.map(self._check, names), strict=True))
        record = self.engine.record
        now = isotime()
        for name, result in results.items():
            record.last_probes[name] = {"ok": result.ok, "detail": result.detail,
                                        "latency": round(result.latency, 4), "at": now,
                                        **self._certificate(name)}
        target = results[monitor.target]
        problem = self._target_problem()
        verdict = classify(target.ok, [results[g].ok for g in monitor.guards])
        if problem and not target.ok:
            # Our own client certificate or key failed, not production: the cycle says
            # nothing about production, so it must not count towards an engage.
            verdict = Cycle.INCONCLUSIVE
        tally = Tally(monitor.failures_to_engage,
                      monitor.window[0] if monitor.window else None,
                      monitor.window[1] if monitor.window else None,
                      monitor.rise, record.failures, record.successes, list(record.window))
        tally.record(verdict)
        record.failures, record.successes, record.window = (
            tally.failures, tally.successes, tally.window)
        quorum_note = self._publish_verdict(verdict, tally)
        self._arming(results, problem, quorum_note)
        if record.state not in ARMED:
            # Engaged (or busy, or paused) the threshold has been met or does not apply:
            # the count stops there and "down for" tells the rest.
            record.failures = min(record.failures, monitor.failures_to_engage)
        if verdict is Cycle.OK:
            record.down_since = None
        elif verdict is Cycle.FAILED and record.down_since is None:
            record.down_since = now
        record.cycles += 1
        line = self._outcome_line(verdict, target, results, problem)
        if quorum_note:
            line = f"{line}; {quorum_note}"
        record.last_outcome = line
        record.last_cycle = now
        from engine.clock import mark

        mark(record.monotonic, "last_cycle")  # `check engine` measures the age on this
        self._advance(verdict, tally, line)
        self._apply_quorum_change()
        self.engine.save(durable=False)  # transitions and runs already saved durably
        self._write_quorum_snapshot()
        self._write_metrics()
        return line

    def _certificate(self, name: str) -> dict[str, str]:
        """`cert_not_after` of the probe's client certificate, for status, metrics and the
        expiry warning of `check engine` (nothing without one or when it cannot be read)."""
        probe = self._probes[name]
        try:
            not_after = probe.certificate_not_after()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - cannot_run() reports an unreadable certificate
            return {}
        return {"cert_not_after": isotime(not_after)} if not_after is not None else {}

    def _target_problem(self) -> str | None:
        """Why the target's probe cannot run at all (its TLS files), or None."""
        try:
            return self._probes[self.policy.monitor.target].cannot_run()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a probe bug must not stop the cycle
            return f"probe error: {type(exc).__name__}: {exc}"

    def _arming(self, results: dict[str, ProbeResult], problem: str | None,
                quorum_note: str | None = None) -> None:
        """Can the failover still engage? Record why not, warn and mail when that changes."""
        monitor, record = self.policy.monitor, self.engine.record
        record.guards_failed = guard_streak(record.guards_failed,
                                            [results[g].ok for g in monitor.guards])
        reason = disarm_reason(monitor.target, problem, monitor.guards, record.guards_failed)
        if reason is None and quorum_note is not None:
            from engine.quorum import disarm_reason as quorum_disarm

            reason = quorum_disarm(quorum_note)
        if reason == record.disarmed:
            return
        before = record.disarmed
        record.disarmed = reason
        if reason is None:
            since, record.disarmed_since = record.disarmed_since, None
            event(log, "engine.rearmed", f"the failover is armed again (was disarmed: {before})")
            self.engine.notifier.rearmed(record, before, since)
            return
        if before is None:
            record.disarmed_since = isotime()
            event(log, "engine.disarmed", f"the failover is disarmed: {reason}",
                  level=logging.WARNING, reason=reason)
            self.engine.notifier.disarmed(record, reason)
        else:  # still disarmed, for another reason: log it, but one mail is enough
            event(log, "engine.disarmed", f"the failover is still disarmed: {reason}",
                  level=logging.WARNING, reason=reason)
        self.engine.save()

    def _check(self, name: str) -> ProbeResult:
        try:
            return self._probes[name].check()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a probe bug is a failed probe, not a dead engine
            return ProbeResult(False, f"probe error: {type(exc).__name__}: {exc}", 0.0)

    def _outcome_line(self, verdict: Cycle, target: ProbeResult,
                      results: dict[str, ProbeResult], problem: str | None = None) -> str:
        monitor = self.policy.monitor
        record = self.engine.record
        if verdict is Cycle.OK:
            head = f"probe {monitor.target} ok ({target.latency * 1000:.0f}ms)"
        elif verdict is Cycle.FAILED and record.state not in ARMED:
            head = f"probe {monitor.target} failed ({self._down_for()}): {target.detail}"
        elif verdict is Cycle.FAILED:
            head = (f"probe {monitor.target} failed ({record.failures}/"
                    f"{monitor.failures_to_engage}): {target.detail}")
        elif problem:
            head = (f"probe {monitor.target} cannot run: {problem}; inconclusive, says "
                    f"nothing about production (count holds at {record.failures}/"
                    f"{monitor.failures_to_engage})")
        else:
            head = (f"probe {monitor.target} failed: {target.detail}; inconclusive, every guard "
                    f"failed too (count holds at {record.failures}/{monitor.failures_to_engage})")
        guards = [f"guard {g} {'ok' if results[g].ok else 'failed: ' + results[g].detail}"
                  for g in monitor.guards]
        return "; ".join([head, *guards])

    def _down_for(self) -> str:
        since = parse_isotime(self.engine.record.down_since)
        if since is None:
            return "down"
        return f"down for {format_duration(max(0.0, (utcnow() - since).total_seconds()))}"

    def _advance(self, verdict: Cycle, tally: Tally, line: str) -> None:
        engine, record = self.engine, self.engine.record
        state = record.state
        if state in ARMED:
            if verdict is Cycle.FAILED and state == State.WATCHING:  # suspect stays suspect
                engine.lifecycle.fire(Trigger.PROBE_FAILED)
            elif verdict is Cycle.OK and state == State.SUSPECT:
                engine.lifecycle.fire(Trigger.PROBE_OK)
            if tally.prolonged:
                self._engage_if_allowed(line)
        elif state == State.ENGAGING and self.quorum is not None and self.quorum.spec.is_actor:
            self._resume_with_quorum()
        elif state == State.ENGAGED:
            if tally.back and not record.production_back:
                record.production_back = True
                log.info("production is back (%d good cycles in a row); run "
                         "`failover-engine restore` when ready", tally.successes)
                # Not after a planned `engage --now` while production was fine: only an
                # outage seen before or during the engagement comes "back".
                if engine.outage_seen:
                    engine.notifier.production_back(record, tally.successes)
            elif verdict is Cycle.FAILED:
                record.production_back = False
                engine.outage_seen = True
        self._notify_outage(verdict, state)
        self._remind()

    def _notify_outage(self, verdict: Cycle, before: State) -> None:
        """The outage warning (once, at `warn_at` failures) and its all-clear; never per probe."""
        record, notifier = self.engine.record, self.engine.notifier
        if record.state in ARMED and verdict is Cycle.FAILED:
            warn_at = notifier.warn_at
            if warn_at is not None and record.failures >= warn_at and \
                    notifier.open_warning() is None:
                notifier.outage_warning(record)
        elif record.state in ARMED and verdict is Cycle.OK and before in ARMED and \
                record.successes >= self.policy.monitor.rise:  # back as `rise` defines it
            warning = notifier.open_warning()
            if warning is not None:
                notifier.outage_cleared(record, warning)

    def _engage_if_allowed(self, line: str) -> None:
        engine = self.engine
        if not self.policy.monitor.auto_engage:
            log.warning("the outage is prolonged, but auto_engage is false: not engaging")
            engine.notifier.manual_decision(engine.record)  # once per outage (its id)
            return
        if engine.held_down():
            log.warning("the outage is prolonged, but the hold-down after the last restore "
                        "blocks automatic engage until %s", engine.record.hold_down_until)
            return
        quorum = self.quorum
        if quorum is not None:
            decision = quorum.may_engage()
            if not decision.allowed:
                log.warning("the outage is prolonged, but %s: not engaging", decision.reason)
                engine.record.last_outcome = f"{line}; {decision.reason}"
                return
            log.warning("%s", decision.reason)
        log.warning("the outage is prolonged (%s); engaging the failover", line)
        self._fenced(lambda: engine.engage(manual=False))

    def _fenced(self, run: Callable[[], object]) -> None:
        """Run an engage; with a quorum, the runner stops before its next step once we may
        no longer act (our own deadline passed, the leader lease is gone, or the engine is
        stopping): `quorum.halt` is its stop event meanwhile."""
        engine, quorum = self.engine, self.quorum
        with contextlib.ExitStack() as fence:
            if quorum is not None:
                from engine.quorum import fenced

                fence.enter_context(fenced(quorum, engine, self._mirror))
            try:
                run()
            except FailoverError as exc:  # standby lock not had in time, a full disk: say so
                log.error("automatic engage did not run to its end: %s", exc)
                engine.record.last_outcome = f"engage failed: {exc}"

    def _resume_with_quorum(self) -> None:
        """An engage stopped part-way (the leader key lost, or a restart): resume it at its
        first unfinished step, but only while we hold the leader key again."""
        quorum = self.quorum
        if quorum is None or self.engine.stop.is_set():
            return
        token = quorum.holds()
        if token is None:
            log.warning("quorum: an engage was interrupted; it resumes once this engine holds "
                        "the leader key again")
            return
        log.warning("quorum: leader key held (token %d); resuming the interrupted engage", token)
        self._fenced(self.engine.resume_interrupted)

    def _publish_verdict(self, verdict: Cycle, tally: Tally) -> str | None:
        """With a quorum block: publish this cycle's verdict, keep or give back the leader
        key by the state; the problem to add to the cycle line, if any."""
        quorum = self.quorum
        if quorum is None:
            return None
        state = self.engine.record.state
        if quorum.holding is not None and state in ARMED:
            # Restored or reset: armed again, another actor may lead; the store first
            # learns our final state, so no observer goes on seeing us busy.
            self._mirror()
            quorum.release()
        elif quorum.holding is None and quorum.spec.is_actor and state in STANDBY_BUSY:
            # We engaged (or restarted mid-engage): hold the key, so no other actor engages.
            quorum.take_leader()
        prolonged = tally.prolonged and state in ARMED
        note = quorum.publish(str(verdict), tally.failures, prolonged, state=str(state))
        if quorum.holding is not None and note is None:
            self._mirror()  # every cycle while we hold the key
        quorum.observe()  # every observer mirrors the shared state (status, metrics)
        return note

    def _mirror(self) -> None:
        """Write our engine's state, journal position and hold-down into the store's
        shared state (fenced by our token; a refusal means we were deposed: `halt`)."""
        if self.quorum is not None and self.quorum.holding is not None:
            from engine.quorum import mirror_engine

            mirror_engine(self.quorum, self.engine, self._last_transition)

    def _mirror_transition(self, source: State, dest: State, trigger: str) -> None:
        if source == dest:
            return
        self._last_transition = f"{source} → {dest} ({trigger})"
        self._mirror()

    def _write_quorum_snapshot(self) -> None:
        """Leave this cycle's view of the store for `status` and the metrics."""
        if self.quorum is None:
            return
        from engine.clock import mark
        from engine.quorum_shared import SNAPSHOT_FORMAT, write_snapshot

        data = self.quorum.snapshot()
        marks: dict[str, object] = {}
        mark(marks, "written")
        data.update(format=SNAPSHOT_FORMAT, written=isotime(), monotonic=marks)
        try:
            write_snapshot(self.paths.quorum_snapshot, data, self.engine.store.file_mode())
        except OSError as exc:
            log.warning("quorum snapshot not written: %s", exc)

    def _remind(self) -> None:
        record = self.engine.record
        notify = self.policy.notify or {}
        every = notify.get("remind_every")
        if not every or record.state not in (State.ENGAGED, State.ABORTED):
            return
        last = parse_isotime(record.last_reminder) or parse_isotime(record.since)
        if last is None or utcnow() - last >= timedelta(seconds=parse_duration(every)):
            record.last_reminder = isotime()
            self.engine.notifier.reminder(record)

    def _write_metrics(self) -> None:
        from engine.metrics import refresh_metrics

        try:
            refresh_metrics(self.policy, self.engine.record)
        except (OSError, FailoverError) as exc:
            log.warning("metrics file not written: %s", exc)

    # -- between cycles ---------------------------------------------------------------
    def handle_requests(self) -> None:
        """Apply the pause switch and answer every request the command line left."""
        engine = self.engine
        paths = self.paths
        flag = paths.paused
        if flag.exists() and engine.record.state in ARMED:
            engine.pause()
        elif not flag.exists() and engine.record.state == State.PAUSED:
            engine.resume()
        for request in take_pending(paths):
            try:
                reply = self._answer(request)
            except BaseException as exc:
                # A bug (or SIGKILL-free shutdown) must not leave the command waiting for
                # a reply that never comes: it is told, then the error goes on as before.
                write_reply(paths, Reply(request.request_id, getattr(request, "kind", "unknown"),
                                         False, f"the monitor failed while acting on it "
                                         f"({type(exc).__name__}: {exc}); see its log",
                                         State(engine.record.state), isotime()))
                raise
            write_reply(paths, reply)
        prune_replies(paths)
        if self.quorum is not None:  # requests left in the quorum's store (actors only)
            from engine.quorum_requests import pump

            pump(self)

    def _answer(self, request: Request | BadRequest) -> Reply:
        """Act on one request; the reply says whether the machine accepted it, and why not."""
        engine = self.engine
        if isinstance(request, BadRequest):
            log.error("request %s ignored: %s", request.request_id, request)
            return Reply(request.request_id, "unknown", False, f"bad request: {request}",
                         State(engine.record.state), isotime())
        name = request.kind
        log.info("request from the command line: %s (by %s)", name, request.requested_by)
        try:
            # With a quorum block engage, restore and reset hold the leader key.
            from engine.quorum_requests import execute

            execute(self.quorum, engine, name, who=request.requested_by, force=request.force,
                    without_quorum=request.without_quorum)
        except FailoverError as exc:
            log.error("request %s refused: %s", name, exc)
            engine.record.last_outcome = f"request {name} refused: {exc}"
            engine.save()
            return Reply(request.request_id, name, False, str(exc),
                         State(engine.record.state), isotime())
        state = State(engine.record.state)
        reason = engine.record.aborted_reason if state == State.ABORTED else None
        return Reply(request.request_id, name, True, reason, state, isotime())

    def _maybe_reload(self) -> None:
        if not self.reload_requested.is_set() or self._reload is None:
            return
        self.reload_requested.clear()
        try:
            policy = self._reload()
        except FailoverError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("SIGHUP: the new policy does not validate; keeping the old one: %s", first)
            return
        self.engine.policy = policy
        self.engine.runner.policy = policy
        self._build_probes()
        log.info("SIGHUP: policy %s reloaded from %s", policy.name, policy.path)
        from engine.quorum import quorum_spec

        current = self.quorum.spec if self.quorum is not None else None
        self._quorum_deferred = quorum_spec(policy) != current
        self._apply_quorum_change()

    def _apply_quorum_change(self) -> None:
        """A reloaded `quorum:` block: close the old Quorum, build the new one — but not
        while this engine holds the leader key in a busy state (the key, its fencing and
        the shared state must outlive the run): then it waits until we are armed again."""
        if not self._quorum_deferred:
            return
        old = self.quorum
        if old is not None and old.holding is not None \
                and self.engine.record.state not in ARMED:
            if not self._deferral_logged:
                log.warning("SIGHUP: quorum settings change deferred until armed (this "
                            "engine holds the leader key while %s)", self.engine.record.state)
                self._deferral_logged = True
            return
        from engine.quorum import build_quorum

        try:
            new = build_quorum(self.policy, self.engine.stop)
        except (OSError, FailoverError) as exc:
            log.error("SIGHUP: the new quorum settings cannot be used (%s); keeping the old "
                      "ones", exc)
            self._quorum_deferred = False
            return
        if old is not None:
            if old.holding is not None:  # armed again: the final state, then let go
                self._mirror()
                old.release()
            old.close()
        self.quorum = new
        self._quorum_deferred = self._deferral_logged = False
        if new is None:
            self.paths.quorum_snapshot.unlink(missing_ok=True)
        log.info("SIGHUP: quorum settings applied (%s)",
                 "no quorum block: this observer decides alone" if new is None
                 else f"observer {new.spec.name}, {len(new.spec.observers)} observers")

    def run_forever(self, *, max_cycles: int | None = None) -> None:
        """Cycle every interval until the stop event is set (or `max_cycles` have run)."""
        stop = self.engine.stop
        # The outbox is retried on its own schedule, in the background (engine/notifier.py).
        self.engine.notifier.start(stop)
        self.engine.announce_missed()  # an engaged/aborted event a crash kept from the outbox
        if self.quorum is None or not self.quorum.spec.is_actor or \
                self.engine.record.state != State.ENGAGING:
            self.engine.resume_interrupted()
        # With a quorum an interrupted engage resumes in a cycle, once we hold the key.
        start = time.monotonic()
        slot = 0
        done = 0
        log.info("monitoring %s every %gs; engage after %d failures; pid %d",
                 self.policy.monitor.target, self.policy.monitor.interval,
                 self.policy.monitor.failures_to_engage, os.getpid())
        while not stop.is_set():
            self.handle_requests()
            self._maybe_reload()
            if stop.is_set():
                break
            line = self.cycle()
            self.readiness.tick()
            record = self.engine.record
            event(log, "probe.cycle", line, state=record.state, failures=record.failures,
                  probes={n: p["ok"] for n, p in record.last_probes.items()})
            done += 1
            if max_cycles is not None and done >= max_cycles:
                break
            interval = self.policy.monitor.interval
            slot = next_slot(slot, start, interval, time.monotonic())
            next_start = start + slot * interval
            while not stop.is_set():
                remaining = next_start - time.monotonic()
                if remaining <= 0:
                    break
                stop.wait(min(TICK, remaining))
                if self._pending():
                    self.handle_requests()
                    self._maybe_reload()
        if self.quorum is not None:
            self.quorum.close()
        log.info("monitor stopped")

    def _pending(self) -> bool:
        paths = self.paths
        paused = self.engine.record.state == State.PAUSED
        return (self.reload_requested.is_set() or paths.paused.exists() != paused
                or has_pending(paths))
