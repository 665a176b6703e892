"""The failover engine for one policy: the state machine, the runner and the mail, tied together.

`Engine` is what `run`, `engage`, `restore`, `reset`, `pause` and `resume` drive. It owns
the EngineState record, fires the machine's transitions, runs the engage and restore
steps through the runner, resumes a run interrupted by a crash, applies the hold-down
after a restore, and mails the admins on every transition that needs a human.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta

from engine.durations import format_duration
from engine.errors import FailoverError
from engine.logs import event
from engine.machine import Lifecycle, Trigger
from engine.paths import StatePaths
from engine.policy import Policy
from engine.runner import Runner, RunReport
from engine.state import EngineState, StateStore, isotime, parse_isotime, utcnow
from engine.states import ARMED, State

log = logging.getLogger("failover_engine.engine")

# Transitions worth a mail, and what the mail says.
# The key is (source, dest); a source of None matches any source.
_MAILS: dict[tuple[State | None, State], str] = {
    (State.WATCHING, State.SUSPECT): "production failed a probe; counting towards the failover",
    (None, State.ENGAGING): "engaging the failover",
    (State.ENGAGING, State.ENGAGED): "the failover is engaged: the standby now serves users",
    (None, State.ABORTED): "a step failed; the engine is ABORTED and needs an operator",
    (None, State.RESTORING): "restoring production",
    (State.RESTORING, State.WATCHING): "production restored; the failover is armed again",
    (None, State.PAUSED): "maintenance mode: probes run, nothing engages",
    (State.PAUSED, State.WATCHING): "maintenance mode ended; the failover is armed again",
}


class Engine:
    """One policy's engine; see the module docstring. Not thread-safe: one caller at a time."""

    def __init__(self, policy: Policy, store: StateStore | None = None, *,
                 stop: threading.Event | None = None, send_mail: bool = True) -> None:
        self.policy = policy
        self.store = store or StateStore(policy.state_dir)
        self.stop = stop or threading.Event()
        self.record: EngineState = self.store.load()
        self.send_mail = send_mail
        self.lifecycle = Lifecycle(policy.name, self.record, self._on_change)
        self.runner = Runner(policy, self.store, self.record, stop=self.stop)

    # -- persistence and notifications ----------------------------------------------
    def save(self, *, durable: bool = True) -> None:
        """Write the record to the state file (atomically; see StateStore.save)."""
        self.store.save(self.record, durable=durable)

    def _on_change(self, source: State, dest: State, trigger: str) -> None:
        event(log, "state.changed", f"state {source} → {dest} ({trigger})",
              source=source, dest=dest, trigger=trigger)
        self.save()
        text = _MAILS.get((source, dest)) or _MAILS.get((None, dest))
        if text and not self._run_announces_itself(dest):
            self.mail(f"{dest}", text)

    def _run_announces_itself(self, dest: State) -> bool:
        """An engage or restore whose first step is a notify mails the admins itself; a
        transition mail saying the same a moment earlier would only double their inbox
        (and delay the first step: BENCHMARKS.md)."""
        steps = {State.ENGAGING: self.policy.engage,
                 State.RESTORING: self.policy.restore}.get(dest)
        return steps is not None and bool(steps) and steps[0].kind == "notify"

    def _count_line(self) -> str:
        """The failure count as status shows it: `N/T` while armed, once engaged (the count
        stopped at the threshold) how long production has been down."""
        threshold = self.policy.monitor.failures_to_engage
        since = parse_isotime(self.record.down_since)
        if self.record.state in ARMED or since is None:
            return f"Failures in a row: {self.record.failures}/{threshold}"
        lasted = format_duration(max(0.0, (utcnow() - since).total_seconds()))
        return f"Production down for: {lasted} (since {self.record.down_since})"

    def mail(self, subject_state: str, text: str) -> None:
        """Mail the admins (if the policy has a notify block); failures are spooled, not raised."""
        if not self.send_mail or not self.policy.notify:
            return
        from engine.mail import send_mail

        subject = f"[{self.policy.name}] {subject_state}: {text}"
        body = "\n".join([
            f"Policy: {self.policy.name}",
            f"State: {self.record.state} (since {self.record.since})",
            self._count_line(),
            f"Time: {isotime()}",
            "",
            text,
            "",
            f"Last outcome: {self.record.last_outcome or '-'}",
            f"Aborted because: {self.record.aborted_reason}" if self.record.aborted_reason else "",
        ])
        spool = StatePaths(self.policy.state_dir).spool_dir
        try:
            # send_mail flushes older spooled mail first, and spools this one if it cannot go.
            send_mail(self.policy.notify, subject, body, spool_dir=spool, secret=self.runner.secret)
        except FailoverError as exc:
            log.warning("mail not sent (spooled for the next transition): %s", exc)
        except Exception as exc:  # noqa: BLE001 - mail must never stop a failover
            log.warning("mail not sent: %s: %s", type(exc).__name__, exc)

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
        self.runner.force = force
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

