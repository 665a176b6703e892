"""The failover engine for one policy: the state machine, the runner and the events, tied together.

`Engine` is what `run`, `engage`, `restore`, `reset`, `pause` and `resume` drive. It owns
the EngineState record, fires the machine's transitions, runs the engage and restore
steps through the runner, resumes a run interrupted by a crash, applies the hold-down
after a restore, and raises an event (engine/events.py, sent by engine/notifier.py) on every
transition: engage started, engaged (with every change), aborted, restoring, restored,
reset, paused, resumed. Which of them reach a human is the policy's routing (by default:
engaged, aborted, restored).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from engine.errors import FailoverError
from engine.events import Event, Kind
from engine.logs import event
from engine.machine import Lifecycle, Trigger
from engine.policy import Policy
from engine.runner import Runner, RunReport
from engine.state import EngineState, StateStore, isotime, parse_isotime, utcnow
from engine.states import State

log = logging.getLogger("failover_engine.engine")


class Engine:
    """One policy's engine; see the module docstring. Not thread-safe: one caller at a time."""

    def __init__(self, policy: Policy, store: StateStore | None = None, *,
                 stop: threading.Event | None = None, send_mail: bool = True) -> None:
        self.policy = policy
        self.store = store or StateStore(policy.state_dir)
        self.stop = stop or threading.Event()
        self.record: EngineState = self.store.load()
        self.send_mail = send_mail
        self._manual = False
        # Whether production was down when the failover engaged or since: only then does
        # the monitor say "production back" (not after a planned `engage --now`).
        self.outage_seen = self.record.down_since is not None
        from engine.notifier import Notifier

        # Events go through the outbox (engine/notifier.py); send_mail=False: none at all.
        self.notifier = Notifier(policy, self._secret, enabled=send_mail)
        self.lifecycle = Lifecycle(policy.name, self.record, self._on_change)
        # Called after each transition is saved and announced (source, dest, trigger): the
        # monitor mirrors it into the quorum's store (engine/monitor.py).
        self.transition_listeners: list[Callable[[State, State, str], None]] = []
        self.runner = Runner(policy, self.store, self.record, stop=self.stop)

    def _secret(self, name: str) -> Path:
        return self.runner.secret(name)

    # -- persistence and notifications ----------------------------------------------
    def save(self, *, durable: bool = True) -> None:
        """Write the record to the state file (atomically; see StateStore.save)."""
        self.store.save(self.record, durable=durable)

    def _on_change(self, source: State, dest: State, trigger: str) -> None:
        event(log, "state.changed", f"state {source} → {dest} ({trigger})",
              source=source, dest=dest, trigger=trigger)
        self.save()
        built = self._transition_event(source, dest)
        if built is not None:
            # Queued in the outbox and delivered in the background: never in the run's way.
            self.notifier.emit(built)
        for listener in self.transition_listeners:
            listener(source, dest, trigger)

    def _transition_event(self, source: State, dest: State) -> Event | None:
        """The event a transition raises (None for the monitor's watching ⇄ suspect: the
        outage warning comes from the count, engine/monitor.py)."""
        record, n = self.record, self.notifier
        # The transition's time names it: the same id when `announce_missed` builds it again.
        target, key = n.target, f"{dest}@{record.since}"
        run = record.run or record.last_run or {}
        phase, started = str(run.get("phase") or ""), run.get("started")
        status, restore = "status", "restore"
        if dest == State.ENGAGING:
            who = "by an operator (engage --now)" if self._manual else "automatically"
            if self.runner.force:
                who = ("by an operator with --force (engage --now --force: a failing probe "
                       "step does not stop it)")
            return n.engine_event(
                Kind.ENGAGE_STARTED, record, key=key, headline=f"{target} → standby (starting)",
                summary=f"The failover is being engaged {who}: {len(self.policy.engage)} "
                        "engage steps run now.",
                next_steps=["Watch it finish: an ENGAGED or ABORTED message follows."],
                commands=[status])
        if dest == State.ENGAGED and source == State.ENGAGING:
            changes = n.changes("engage", started)
            return n.engine_event(
                Kind.ENGAGED, record, key=key, headline=f"{target} → standby", changes=changes,
                summary=f"The failover is engaged: the standby now serves users "
                        f"({len(changes)} changes, listed below).",
                next_steps=["Check that the standby serves users.",
                            "When production is healthy again, restore it (the engine never "
                            "fails back on its own)."],
                commands=[status, restore])
        if dest == State.ABORTED:
            reason = record.aborted_reason or "a step failed"
            return n.engine_event(
                Kind.ABORTED, record, key=key, headline=_clip(reason, 100),
                changes=n.changes(phase, started) if phase else [],
                summary=f"The {phase or 'run'} stopped and the engine is ABORTED: {reason}. "
                        "It does nothing more until an operator acts.",
                next_steps=["Fix the cause named above.",
                            "Then `reset` (back to where the run started) or `restore` (roll "
                            "back what was changed)."],
                commands=[status, "reset", restore])
        if dest == State.RESTORING:
            return n.engine_event(
                Kind.RESTORING, record, key=key, headline=f"{target} → production (starting)",
                summary=f"Restoring production: {len(self.policy.restore)} restore steps run "
                        "now.",
                next_steps=["Watch it finish: a RESTORED or ABORTED message follows."],
                commands=[status])
        if dest == State.WATCHING and source == State.RESTORING:
            changes = n.changes("restore", started)
            hold = record.hold_down_until
            return n.engine_event(
                Kind.RESTORED, record, key=key, headline=f"{target} → production",
                changes=changes,
                summary="Production is restored and the failover is armed again"
                        + (f"; automatic engage is held down until {hold}." if hold else "."),
                next_steps=["Nothing to do."], commands=[status])
        if source == State.ABORTED:
            return n.engine_event(
                Kind.RESET, record, key=key, headline=f"aborted state cleared, now {dest}",
                summary=f"An operator reset the engine: it is {dest} again.",
                next_steps=["Nothing to do."], commands=[status])
        if dest == State.PAUSED:
            return n.engine_event(
                Kind.PAUSED, record, key=key, headline="maintenance mode",
                summary="Maintenance mode: probes run, nothing engages.",
                next_steps=["`resume` when the maintenance is over."], commands=["resume"])
        if source == State.PAUSED:
            return n.engine_event(
                Kind.RESUMED, record, key=key, headline="maintenance mode ended",
                summary="Maintenance mode ended; the failover is armed again.",
                next_steps=["Nothing to do."], commands=[status])
        return None

    def announce_missed(self) -> None:
        """At monitor start: the event of the state the engine is in (engaged, aborted), if
        a crash came between the state file and the outbox. Emitted once: it has the id it
        would have had (its key is the transition's time), so one already sent is skipped."""
        if self.record.state in (State.ENGAGED, State.ABORTED):
            built = self._transition_event(State.ENGAGING, State(self.record.state))
            if built is not None and not any(e.get("id") == built.id
                                             for e in self.notifier.history()):
                log.warning("the %s event was not sent before a restart; sending it now",
                            self.record.state)
                self.notifier.emit(built)

    # -- the operations ---------------------------------------------------------------
    def resume_interrupted(self) -> RunReport | None:
        """After a crash: continue an engage or restore where its journal stopped."""
        if self.record.state == State.ENGAGING:
            log.warning("an engage was interrupted; resuming it at its first unfinished step")
            with self._standby_lock():
                return self._run_engage()
        if self.record.state == State.RESTORING:
            log.warning("a restore was interrupted; resuming it at its first unfinished step")
            return self._run_restore()
        return None

    def engage(self, *, manual: bool, force: bool = False) -> RunReport:
        """Engage the failover now (`manual`: by an operator, so the hold-down does not apply;
        `force`: `engage --now --force`, a failing probe step is recorded as overridden)."""
        if self.record.state != State.ENGAGING and not manual and self.held_down():
            raise FailoverError(
                f"policy {self.policy.name}: automatic engage blocked by the hold-down until "
                f"{self.record.hold_down_until}; use `engage --now` to override")
        # Before its first step, engage holds the standby lock (engine/standby.py): a swap
        # in progress finishes first (seconds), and an import still loading is refused at
        # its swap, because from here on the state says engaging.
        self._manual = manual
        self.runner.force = force
        if self.record.state != State.ENGAGING:
            self.outage_seen = self.record.down_since is not None
        with self._standby_lock():
            if self.record.state != State.ENGAGING:
                try:
                    self.lifecycle.fire(Trigger.ENGAGE)
                except OSError as exc:  # the state file could not say `engaging`
                    raise FailoverError(
                        f"engage not started: cannot write {exc.filename or self.store.path}:"
                        f" {exc.strerror or exc}; nothing was changed; free space, then run"
                        " `failover-engine engage --now` again") from None
            return self._run_engage()

    def _standby_lock(self) -> contextlib.AbstractContextManager[None]:
        from engine.standby import ENGAGE_WAIT, hold_standby_lock

        return hold_standby_lock(self.policy.state_dir, "engage", wait=ENGAGE_WAIT,
                                 stop=self.stop.is_set)

    def _run_engage(self) -> RunReport:
        try:
            report = self.runner.run("engage", self.policy.engage)
            return self._finish(report, Trigger.ENGAGED)
        except OSError as exc:
            self._stopped_by_disk(exc)
            raise  # not reached: _stopped_by_disk raises

    def _stopped_by_disk(self, exc: OSError) -> None:
        """A write failed mid-run (a full disk): abort with one line, keep the journal so
        the run resumes where it stopped once there is room."""
        what = exc.filename or "a file in the state directory"
        reason = (f"engage stopped: cannot write {what}: {exc.strerror or exc}; free space,"
                  " then `failover-engine reset` and `engage --now` (or restart the monitor)"
                  " resume it at its first unfinished step")
        self.record.aborted_reason = reason
        try:
            if self.record.state == State.ENGAGING:
                self.lifecycle.fire(Trigger.ABORT)
        except OSError:
            reason = (f"engage stopped: cannot write {what}: {exc.strerror or exc}; the state"
                      " file still says engaging, so once there is room `engage --now` or a"
                      " monitor start resumes it at its first unfinished step")
        raise FailoverError(reason) from None  # the caller says it once (CLI or monitor)

    def restore(self) -> RunReport:
        """Run the restore steps (from engaged, or to roll back an aborted run)."""
        if self.record.state != State.RESTORING:
            self.lifecycle.fire(Trigger.RESTORE)
        return self._run_restore()

    def _run_restore(self) -> RunReport:
        self.runner.force = False  # --force is engage's only (an earlier forced engage's)
        report = self.runner.run("restore", self.policy.restore)
        return self._finish(report, Trigger.RESTORED)

    def _finish(self, report: RunReport, success_trigger: Trigger) -> RunReport:
        if report.interrupted:
            self.save()
            return report
        run = self.record.run or {}
        self.record.last_run = {
            "phase": report.phase, "started": run.get("started"), "finished": isotime(),
            "ok": report.ok,
            "steps": [{"step": r.step.name, "status": r.status, "summary": r.summary}
                      for r in report.steps],
        }
        self.record.run = None
        if report.failed is None and success_trigger is Trigger.ENGAGED:
            # The outage goes on: the count stays where it stopped (at most the threshold)
            # so the mails, status and the log agree. Restore, abort and reset clear it.
            self._reset_counts(keep_failures=True)
        else:
            self._reset_counts()
        if report.failed is not None:
            failed = report.failed
            self.record.aborted_reason = (
                f"{report.phase} step {failed.index + 1} ({failed.step.name}) failed: "
                f"{failed.summary}")
            self.lifecycle.fire(Trigger.ABORT)
            return report
        self.record.aborted_reason = None
        if success_trigger is Trigger.ENGAGED:
            self.record.counts["engages"] = self.record.counts.get("engages", 0) + 1
        else:
            self.record.counts["restores"] = self.record.counts.get("restores", 0) + 1
            until = utcnow() + timedelta(seconds=self.policy.monitor.hold_down)
            self.record.hold_down_until = isotime(until)
            # The hold-down ends by the monotonic clock on this boot (engine/clock.py):
            # a wall clock set back a day cannot stretch it.
            from engine.clock import mark

            mark(self.record.monotonic, "hold_down_until", offset=self.policy.monitor.hold_down)
        self.lifecycle.fire(success_trigger)
        return report

    def reset(self) -> State:
        """Leave `aborted` once the cause is fixed, with the failure count cleared (a reset
        while production is still down starts counting again from the next failed probe,
        rather than engaging at once); returns the new state."""
        record = self.record
        before = (record.failures, record.successes, list(record.window),
                  record.production_back)
        self._reset_counts()  # first, so the transition's mail shows the cleared count
        try:
            self.lifecycle.fire(Trigger.RESET)
        except Exception:
            (record.failures, record.successes, record.window,
             record.production_back) = before  # refused: nothing changes
            raise
        self.record.aborted_reason = None
        self.save()
        return self.record.state

    def pause(self) -> None:
        """Enter maintenance mode (probes run, nothing engages)."""
        if self.record.state != State.PAUSED:
            self.lifecycle.fire(Trigger.PAUSE)

    def resume(self) -> None:
        """Leave maintenance mode."""
        if self.record.state == State.PAUSED:
            self._reset_counts()
            self.lifecycle.fire(Trigger.RESUME)

    def held_down(self) -> bool:
        """True while the hold-down after a restore blocks automatic engage."""
        from engine.clock import remaining

        until = parse_isotime(self.record.hold_down_until)
        left = remaining(self.record.monotonic, "hold_down_until", until, utcnow())
        return left is not None and left > 0

    def _reset_counts(self, *, keep_failures: bool = False) -> None:
        threshold = self.policy.monitor.failures_to_engage
        self.record.failures = min(self.record.failures, threshold) if keep_failures else 0
        self.record.successes = 0
        self.record.window = []
        self.record.production_back = False


def _clip(text: str, width: int) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[:width - 3].rstrip() + "..."
