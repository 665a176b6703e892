"""Turning what the engine does into events, and getting them out: the one way to notify.

`Notifier(policy)` is what the Engine, the monitor and the jobs call:

- `engine_event(kind, record, ...)` builds an event (engine.events) from the state record:
  the headline (`goc.egi.eu → standby`), counts, the changes an engage or restore made
  (from the audit log), the next steps, the commands and the timeline of the episode;
- `emit(event)` records it in `state_dir/events.jsonl` (once: an id already there is not
  emitted again), queues it in the outbox (engine/outbox.py) for each channel that routes
  its kind, and wakes the background deliverer;
- the background deliverer (`start()`, the monitor; and an emit in any process) tries the
  outbox at once and then on the backoff schedule, at least every minute, in a daemon
  thread with each channel's own timeout: a dead channel never blocks or slows an engage;
- `drain(budget)` (every CLI command, at its end) tries everything waiting, within a
  few seconds.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.channels import Channel, build_channels, routes_for
from engine.errors import FailoverError
from engine.events import TITLES, Change, Event, Kind, make_event, target_name
from engine.fsutil import append_line, ensure_private_dir
from engine.logs import event as log_event
from engine.outbox import BACKOFF_MAX, Delivery, Outbox
from engine.paths import StatePaths
from engine.policy import Policy
from engine.safefile import FileRefused, read_limited
from engine.state import EngineState, isotime
from engine.states import State

log = logging.getLogger("failover_engine.notify")

# Events after which a new episode (and a new timeline) begins.
_CLOSING = frozenset({Kind.RESTORED, Kind.OUTAGE_CLEARED, Kind.RESET})
CLI_BUDGET = 5.0
ONE_SHOT_PASSES = 3
TIMELINE_MAX = 12


def default_warn_at(threshold: int) -> int | None:
    """The outage warning's level when the policy sets none: half the threshold (at least
    2 failures, so one failed probe never warns), or None when that would not come before
    the engage itself."""
    level = max(2, -(-threshold // 2))
    return level if level < threshold else None


class Notifier:
    """Events of one policy; see the module docstring."""

    def __init__(self, policy: Policy, secret: Callable[[str], Path] | None = None, *,
                 enabled: bool = True) -> None:
        self.policy = policy
        self.enabled = enabled
        self._secret = secret
        self.paths = StatePaths(policy.state_dir)
        self.outbox = Outbox(policy.state_dir)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self._lock = threading.Lock()
        self._history: list[dict[str, Any]] = []
        self._history_stamp: tuple[int, int, int] | None = None

    # -- configuration ------------------------------------------------------------------
    def secret(self, name: str) -> Path:
        """A checked secret file (the runner's lookup when the Engine gave one)."""
        if self._secret is not None:
            return self._secret(name)
        from engine.secrets import SecretStore

        return SecretStore(self.policy).path(name)

    def channels(self) -> dict[str, Channel]:
        """The policy's channels (built anew: a reloaded policy takes effect at once)."""
        return build_channels(self.policy.notify, self.secret)

    @property
    def warn_at(self) -> int | None:
        """Failures in a row at which the outage warning goes out (None: no warning)."""
        threshold = self.policy.monitor.failures_to_engage
        configured = (self.policy.notify or {}).get("warn_at")
        if isinstance(configured, int) and not isinstance(configured, bool):
            return configured if configured < threshold else None
        return default_warn_at(threshold)

    @property
    def target(self) -> str:
        """Production's name in headlines (the target probe's host)."""
        monitor = self.policy.monitor
        spec = self.policy.probes.get(monitor.target)
        return target_name(spec.params if spec else {}, monitor.target)

    # -- the event log --------------------------------------------------------------------
    def history(self) -> list[dict[str, Any]]:
        """The logged events (the newest megabyte), oldest first; read again only when the
        file changed (the monitor asks every cycle)."""
        try:
            info = self.paths.events_log.stat()
            stamp: tuple[int, int, int] | None = (info.st_ino, info.st_size, info.st_mtime_ns)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._history_stamp:
            return list(self._history)
        found = self._read_history()
        self._history_stamp, self._history = stamp, found
        return list(found)

    def _read_history(self) -> list[dict[str, Any]]:
        try:
            text = read_limited(self.paths.events_log, "event_log", from_end=True,
                                nofollow=True)
        except FileNotFoundError:
            return []
        except (FileRefused, OSError) as exc:
            if not getattr(exc, "missing", False):
                log.warning("event log not read: %s", exc)
            return []
        found = []
        for line in text.splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash
        return found

    def episode(self) -> list[dict[str, Any]]:
        """The events since the last closing one (restored, all clear, reset)."""
        events = [e for e in self.history() if e.get("kind") != Kind.TEST]
        for index in range(len(events) - 1, -1, -1):
            if events[index].get("kind") in _CLOSING:
                return events[index + 1:]
        return events

    def episode_key(self) -> str:
        """Names the current episode: the id of the event that closed the previous one (two
        outages within one second still get two warnings)."""
        events = [e for e in self.history() if e.get("kind") in _CLOSING]
        return str(events[-1].get("id")) if events else "first"

    def open_warning(self) -> dict[str, Any] | None:
        """The outage warning of the current episode when nothing followed it yet (so its
        outage ending deserves an all-clear), else None."""
        episode = self.episode()
        if episode and episode[-1].get("kind") in (Kind.OUTAGE_WARNING,
                                                   Kind.MANUAL_DECISION_NEEDED):
            return episode[-1]
        return None

    # -- building -------------------------------------------------------------------------
    def engine_event(self, kind: Kind, record: EngineState, *, key: str, headline: str,
                     summary: str, next_steps: Iterable[str] = (),
                     commands: Iterable[str] = (), changes: Iterable[Change] = (),
                     extra_counts: Mapping[str, Any] | None = None) -> Event:
        """An event about this policy's engine, with the standard counts and the timeline."""
        threshold = self.policy.monitor.failures_to_engage
        counts: dict[str, Any] = {
            "failures": f"{record.failures}/{threshold}",
            "down since": record.down_since,
            "state since": record.since,
            "engages": record.counts.get("engages", 0),
            "restores": record.counts.get("restores", 0),
        }
        counts.update(extra_counts or {})
        now = isotime()
        timeline = [{"time": str(e.get("time", "")), "text": f"{e.get('title')}: "
                     f"{e.get('headline')}"} for e in self.episode()][-(TIMELINE_MAX - 2):]
        if record.down_since and kind not in (Kind.JOB_FAILED, Kind.TEST):
            timeline.insert(0, {"time": record.down_since,
                                "text": f"{self.target} failed its first probe of this outage"})
        timeline.append({"time": now, "text": f"{TITLES[kind]}: {headline}"})
        return make_event(kind, policy=self.policy.name, key=key, state=str(record.state),
                          time=now, headline=headline, summary=summary, counts=counts,
                          changes=changes, next_steps=next_steps,
                          commands=[self.command(c) for c in commands], timeline=timeline)

    def command(self, args: str) -> str:
        """A command line an operator can paste."""
        return f"failover-engine --policy {self.policy.path} {args}"

    def changes(self, phase: str, since: str | None) -> list[Change]:
        """What the `phase` run that started at `since` changed, from the audit log."""
        try:
            text = read_limited(StatePaths(self.policy.state_dir).audit_log, "event_log",
                                from_end=True, nofollow=True)
        except (FileRefused, OSError):
            return []
        found = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (entry.get("phase") != phase or entry.get("outcome") != "changed"
                    or (since and str(entry.get("time", "")) < since)):
                continue
            before, after = entry.get("before"), entry.get("after")
            what = f"{entry.get('step')} ({entry.get('kind')})"
            if before is None and after is None:
                what += f": {entry.get('summary')}"
            found.append(Change(what, None if before is None else _short(before),
                                None if after is None else _short(after)))
        return found

    # -- the monitor's events -------------------------------------------------------------
    def outage_warning(self, record: EngineState) -> bool:
        """Once per outage, when the count reaches `warn_at`."""
        threshold = self.policy.monitor.failures_to_engage
        auto = self.policy.monitor.auto_engage
        then = ("the failover engages by itself" if auto else
                "auto_engage is off: you will be asked to decide")
        return self.emit(self.engine_event(
            Kind.OUTAGE_WARNING, record, key=f"outage@{record.down_since}@{self.episode_key()}",
            headline=f"{self.target} failing ({record.failures}/{threshold})",
            summary=f"Production ({self.target}) failed {record.failures} probes in a row; at "
                    f"{threshold} {then}. One message per outage: an ALL CLEAR follows if it "
                    "recovers first.",
            next_steps=["No action needed yet; look at production if you can.",
                        "To fail over now: `engage --now`; to hold the engine: `pause`."],
            commands=["status", "engage --now", "pause"]))

    def outage_cleared(self, record: EngineState, warning: Mapping[str, Any]) -> bool:
        """The all-clear for a warned outage that ended before any engage."""
        since = (warning.get("counts") or {}).get("down since")
        return self.emit(self.engine_event(
            Kind.OUTAGE_CLEARED, record, key=f"cleared@{since}@{warning.get('id')}",
            headline=f"{self.target} answers again",
            summary=f"Production ({self.target}) answers again; the outage that began "
                    f"{since or 'earlier'} is over without a failover.",
            next_steps=["Nothing to do."], commands=["status"]))

    def manual_decision(self, record: EngineState) -> bool:
        """`auto_engage: false` and the threshold met: someone must decide, once per outage."""
        threshold = self.policy.monitor.failures_to_engage
        return self.emit(self.engine_event(
            Kind.MANUAL_DECISION_NEEDED, record,
            key=f"decide@{record.down_since}@{self.episode_key()}",
            headline=f"{self.target} down {record.failures}/{threshold}, auto_engage is off",
            summary=f"Production ({self.target}) met the failover threshold ({threshold} "
                    "failures), but the policy says auto_engage: false, so the engine waits "
                    "for an operator.",
            next_steps=["Decide whether to fail over.",
                        "To engage: `engage --now`; otherwise nothing: the engine keeps "
                        "watching and says ALL CLEAR when production answers."],
            commands=["engage --now", "status", "pause"]))

    def production_back(self, record: EngineState, successes: int) -> bool:
        """Production answers again while the failover is engaged."""
        return self.emit(self.engine_event(
            Kind.PRODUCTION_BACK, record, key=f"back@{record.since}",
            headline=f"{self.target} answers again; still engaged",
            summary=f"Production answered {successes} cycles in a row; the failover stays "
                    "engaged until an operator restores it.",
            next_steps=["Restore when production is ready."], commands=["restore", "status"]))

    def disarmed(self, record: EngineState, reason: str) -> bool:
        """The failover cannot engage (engine/arming.py), once per episode."""
        return self.emit(self.engine_event(
            Kind.DISARMED, record, key=f"disarmed@{record.disarmed_since}",
            headline=_short(reason)[:100],
            summary=f"The failover is DISARMED and could not engage however long production "
                    f"is down: {reason}.",
            next_steps=["Fix the cause named above; an ARMED AGAIN message follows."],
            commands=["status", "check engine", "validate --host"]))

    def rearmed(self, record: EngineState, before: str | None, since: str | None) -> bool:
        """The disarming condition ended."""
        return self.emit(self.engine_event(
            Kind.REARMED, record, key=f"rearmed@{since}",
            headline="the failover can engage again",
            summary=f"The failover is armed again; it was disarmed: {before}.",
            next_steps=["Nothing to do."], commands=["status"]))

    def reminder(self, record: EngineState) -> bool:
        """`notify.remind_every` while engaged or aborted."""
        steps = (["Restore when production is ready."] if record.state == State.ENGAGED else
                 ["Fix the cause, then `reset` or `restore`."])
        return self.emit(self.engine_event(
            Kind.REMINDER, record, key=f"remind@{record.last_reminder}",
            headline=f"still {record.state} since {record.since}",
            summary=f"The engine is still {record.state} since {record.since}.",
            next_steps=steps, commands=["status"]))

    def job_failed(self, job: str, reason: str, when: str) -> bool:
        """A job with `notify_on_failure` failed (engine/jobs.py)."""
        from engine.state import StateStore

        try:
            record = StateStore(self.policy.state_dir).load()
        except Exception:  # noqa: BLE001 - an unreadable state must not hide the job's failure
            record = EngineState()
        first = reason.splitlines()[0] if reason else "failed"
        return self.emit(self.engine_event(
            Kind.JOB_FAILED, record, key=f"job:{job}@{when}", headline=f"job {job}: {first}"[:120],
            summary=f"The job {job} failed at {when}: {reason}",
            next_steps=["Read the job's log, fix the cause, run the job again."],
            commands=[f"job {job}", "status"]))

    # -- sending --------------------------------------------------------------------------
    def emit(self, event: Event) -> bool:
        """Log, queue and start delivering `event`; False when it was emitted before."""
        if not self.enabled:
            return False
        with self._lock:
            try:
                if any(e.get("id") == event.id for e in self.history()):
                    return False
                ensure_private_dir(self.paths.state_dir)
                append_line(self.paths.events_log, event.to_json(), mode=0o600)
                channels = self.channels()
                names = routes_for(channels, event.kind)
                queued = self.outbox.enqueue(event, names)
            except Exception as exc:  # noqa: BLE001 - notifying must never stop a failover
                # (a full disk, a channel option the code cannot use)
                log.warning("event %s not queued: %s: %s", event.kind, type(exc).__name__, exc)
                return False
        log_event(log, f"event.{event.kind}", f"{event.title}: {event.headline}",
                  event_id=event.id, channels=queued)
        if queued:
            self.kick()
        return True

    def kick(self) -> None:
        """Deliver soon, in the background (a daemon thread: never in the caller's way)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
                self._thread.start()
        self._wake.set()

    def start(self, stop: threading.Event) -> None:
        """Keep delivering until `stop` is set (the monitor's own schedule)."""
        self._stop = stop
        self.kick()

    def _loop(self) -> None:
        # Without a monitor (a CLI command, a job) the thread makes a few passes after its
        # last kick and ends: the command's own drain and the monitor retry later.
        passes = 0
        while True:
            self._wake.clear()
            try:
                result = self.outbox.deliver(self.channels(), budget=60.0)
                self._report(result)
                self.flush_spool(30.0)
            except Exception as exc:  # noqa: BLE001 - the deliverer must outlive a bad pass
                log.warning("outbox delivery failed: %s: %s", type(exc).__name__, exc)
            waiting = (self.outbox.dir.is_dir() and any(self.outbox.dir.glob("*.json"))) or \
                self._spooled()
            passes += 1
            if self._stop is None and (not waiting or passes >= ONE_SHOT_PASSES):
                return
            stop = self._stop
            if stop is not None and stop.is_set():
                return
            # The soonest retry is BACKOFF_START away; check every few seconds, never
            # later than a minute.
            if self._wake.wait(5.0 if waiting else BACKOFF_MAX):
                passes = 0  # kicked by a new event

    def drain(self, budget: float = CLI_BUDGET, *, wait: float | None = None,
              only: str | None = None, quiet: bool = False) -> Delivery:
        """Try everything waiting now (due or not), within `budget` seconds; `wait`: how long
        to wait for a delivery in progress elsewhere (default: a second at most)."""
        started = time.monotonic()
        result = self.outbox.deliver(self.channels(), budget=budget, due_only=False, only=only,
                                     wait=min(1.0, budget) if wait is None else wait)
        self._report(result, quiet=quiet)
        if only is None:
            self.flush_spool(budget - (time.monotonic() - started))
        return result

    def _spooled(self) -> bool:
        from engine.mail import pending

        return bool(pending(self.paths.spool_dir))

    def flush_spool(self, budget: float) -> None:
        """Notify steps' mail that waits in `spool/` goes out on the same schedule as the
        events (not only when the next mail is sent)."""
        from engine import mail

        if budget <= 0 or not self._spooled() or not (self.policy.notify or {}).get("email"):
            return
        try:
            sent = mail.flush_spool(self.policy.notify, self.paths.spool_dir, self.secret,
                                    timeout=min(mail.DEFAULT_TIMEOUT, budget), log=log.warning)
        except FailoverError as exc:
            log.warning("spooled mail of notify steps not sent yet: %s", exc)
            return
        if sent:
            log.info("%d spooled mail(s) of notify steps sent", sent)

    def _report(self, result: Delivery, *, quiet: bool = False) -> None:
        for event_id, channel, what in result.delivered:
            log_event(log, "event.delivered", f"event {event_id[:12]} delivered by {channel}: "
                      f"{what}", event_id=event_id, channel=channel,
                      level=logging.DEBUG if quiet else logging.INFO)
        for event_id, channel, error in result.failed:
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "event %s not delivered by %s (kept in the outbox): %s",
                    event_id[:12], channel, error)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def duplicate_notify_steps(policy: Policy) -> list[str]:
    """`validate`'s warnings: notify steps that say what an event mail already says (a
    first engage/restore step ↔ engage_started/restoring, a later one ↔ engaged/restored),
    when `notify.email` routes that event."""
    from engine.channels import routed
    from engine.runner import step_label

    email = (policy.notify or {}).get("email")
    if not isinstance(email, Mapping):
        return []
    events = routed(email, "email")
    found = []
    for phase, steps, first, later in (
            ("engage", policy.engage, Kind.ENGAGE_STARTED, Kind.ENGAGED),
            ("restore", policy.restore, Kind.RESTORING, Kind.RESTORED)):
        for index, step in enumerate(steps):
            kind = first if index == 0 else later
            if step.kind == "notify" and kind in events:
                found.append(f"{step_label(phase, index)} (notify) mails the admins, and so does "
                             f"the engine's `{kind}` event: they would get both; remove the "
                             f"step, or leave `{kind}` out of notify.email.events")
    return found


def drain_for_cli(policy: Policy | None, budget: float = CLI_BUDGET) -> None:
    """Try the outbox within `budget` seconds (quietly when it cannot: a command run by a
    user who may not write the state dir still does its own job)."""
    if policy is None or not policy.notify:
        return
    try:
        notifier = Notifier(policy)
        if not notifier.outbox.dir.is_dir() and not notifier._spooled():
            return
        notifier.drain(budget, quiet=True)
    except Exception as exc:  # noqa: BLE001 - delivery never changes a command's outcome
        log.debug("outbox not tried: %s", exc)
