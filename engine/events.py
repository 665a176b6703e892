"""What the engine tells people: events with a stable schema, and how one reads as a message.

Every notification the engine sends is an `Event` (the monitor's outage warning, the
Engine's transitions, a job's failure, a disarmed failover, …). An event is a plain
dataclass with a JSON form (`to_json`/`from_json`, `"format": EVENT_FORMAT`), the same for
every channel: a mail renders it with `subject()` and `body()`, a webhook posts the JSON,
Alertmanager gets an alert built from it, a command reads the JSON on stdin.

Fields: `kind` (see `Kind`), `id` (idempotency: the same event built twice has the same id,
so it is queued and delivered once per channel; `event_id()`), `policy`, `host`, `state`,
`time`, `headline` (e.g. `goc.egi.eu → standby`), `summary`, `counts` (failures, threshold,
engages, restores, down since…), `changes` (before → after), `next_steps`, `commands` (to
run), `timeline` (what happened since the episode began) and `severity`.

Subject: `[failover-engine gocdb@HOST] ENGAGED: goc.egi.eu → standby`. Body: the summary,
the timeline, the changes, the next steps and commands, then policy/host/state/counts.
Pure code, no I/O.
"""
from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

EVENT_FORMAT = 1


class Kind(StrEnum):
    """The kinds of events (the stable names in the JSON and in `events:` routes)."""

    OUTAGE_WARNING = "outage_warning"
    OUTAGE_CLEARED = "outage_cleared"
    MANUAL_DECISION_NEEDED = "manual_decision_needed"
    ENGAGE_STARTED = "engage_started"
    ENGAGED = "engaged"
    ABORTED = "aborted"
    PRODUCTION_BACK = "production_back"
    RESTORING = "restoring"
    RESTORED = "restored"
    RESET = "reset"
    DISARMED = "disarmed"
    REARMED = "rearmed"
    READINESS_LOST = "readiness_lost"
    READINESS_REGAINED = "readiness_regained"
    REMINDER = "reminder"
    JOB_FAILED = "job_failed"
    PAUSED = "paused"
    RESUMED = "resumed"
    TEST = "test"


# How each kind reads in a subject, and how serious it is.
TITLES: dict[Kind, str] = {
    Kind.OUTAGE_WARNING: "WARNING", Kind.OUTAGE_CLEARED: "ALL CLEAR",
    Kind.MANUAL_DECISION_NEEDED: "MANUAL DECISION NEEDED", Kind.ENGAGE_STARTED: "ENGAGING",
    Kind.ENGAGED: "ENGAGED", Kind.ABORTED: "ABORTED", Kind.PRODUCTION_BACK: "PRODUCTION BACK",
    Kind.RESTORING: "RESTORING", Kind.RESTORED: "RESTORED", Kind.RESET: "RESET",
    Kind.DISARMED: "DISARMED", Kind.REARMED: "ARMED AGAIN", Kind.READINESS_LOST: "READINESS LOST",
    Kind.READINESS_REGAINED: "READINESS REGAINED", Kind.REMINDER: "REMINDER",
    Kind.JOB_FAILED: "JOB FAILED", Kind.PAUSED: "PAUSED", Kind.RESUMED: "RESUMED",
    Kind.TEST: "TEST",
}
SEVERITY: dict[Kind, str] = {
    Kind.ABORTED: "critical", Kind.DISARMED: "critical", Kind.MANUAL_DECISION_NEEDED: "critical",
    Kind.ENGAGED: "warning", Kind.ENGAGE_STARTED: "warning", Kind.OUTAGE_WARNING: "warning",
    Kind.READINESS_LOST: "warning", Kind.JOB_FAILED: "warning", Kind.REMINDER: "warning",
}
# Events that must reach someone: `check engine` is CRITICAL while one cannot be delivered.
MUST_DELIVER = frozenset({Kind.ABORTED, Kind.DISARMED})

# The default routes. A message channel (email, webhook, command) gets what a human must
# read: for one outage that is engaged and later restored that is three messages (the
# warning, "engaged" with its changes, "restored"). Alertmanager gets the conditions it
# shows as firing alerts and the events that resolve them.
MESSAGE_EVENTS = frozenset({
    Kind.OUTAGE_WARNING, Kind.OUTAGE_CLEARED, Kind.MANUAL_DECISION_NEEDED, Kind.ENGAGED,
    Kind.ABORTED, Kind.RESTORED, Kind.DISARMED, Kind.REARMED, Kind.READINESS_LOST,
    Kind.READINESS_REGAINED, Kind.REMINDER, Kind.JOB_FAILED, Kind.TEST,
})
ALERT_EVENTS = frozenset({
    Kind.ENGAGED, Kind.ABORTED, Kind.RESTORED, Kind.RESET, Kind.DISARMED, Kind.REARMED,
    Kind.MANUAL_DECISION_NEEDED, Kind.OUTAGE_CLEARED, Kind.ENGAGE_STARTED, Kind.TEST,
})


@dataclass(frozen=True)
class Change:
    """One thing an engage or restore changed: `what` went from `before` to `after`."""

    what: str
    before: str | None = None
    after: str | None = None

    def line(self) -> str:
        """`what: before → after` (or just `what` when the step gave no values)."""
        if self.before is None and self.after is None:
            return self.what
        return f"{self.what}: {self.before if self.before is not None else '-'} → " \
               f"{self.after if self.after is not None else '-'}"


@dataclass(frozen=True)
class Event:
    """One notification; see the module docstring for each field."""

    kind: Kind
    id: str
    policy: str
    host: str
    state: str
    time: str
    headline: str
    summary: str
    severity: str = "info"
    counts: dict[str, Any] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    timeline: list[dict[str, str]] = field(default_factory=list)

    @property
    def title(self) -> str:
        """The subject's upper-case word(s): ENGAGED, WARNING, …"""
        return TITLES[self.kind]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (stable: `format` says which version)."""
        data = asdict(self)
        data["kind"] = str(self.kind)
        data["title"] = self.title
        data["format"] = EVENT_FORMAT
        return data

    def to_json(self) -> str:
        """`to_dict()` as compact JSON."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """The inverse of `to_dict` (unknown keys are ignored: a newer writer's extras)."""
        return cls(
            kind=Kind(data["kind"]), id=str(data["id"]), policy=str(data["policy"]),
            host=str(data["host"]), state=str(data["state"]), time=str(data["time"]),
            headline=str(data["headline"]), summary=str(data["summary"]),
            severity=str(data.get("severity", "info")), counts=dict(data.get("counts") or {}),
            changes=[Change(**c) for c in data.get("changes") or []],
            next_steps=list(data.get("next_steps") or []),
            commands=list(data.get("commands") or []),
            timeline=[dict(t) for t in data.get("timeline") or []])

    @classmethod
    def from_json(cls, text: str) -> Event:
        """Parse `to_json()`'s text."""
        return cls.from_dict(json.loads(text))


def event_id(policy: str, kind: Kind | str, key: str) -> str:
    """The idempotency id: the same policy, kind and episode key give the same id, so an
    event re-emitted after a restart is queued (and delivered) once."""
    return hashlib.sha256(f"{policy}\0{kind}\0{key}".encode()).hexdigest()[:24]


def make_event(kind: Kind, *, policy: str, key: str, state: str, time: str, headline: str,
               summary: str, counts: Mapping[str, Any] | None = None,
               changes: Iterable[Change] = (), next_steps: Iterable[str] = (),
               commands: Iterable[str] = (), timeline: Iterable[Mapping[str, str]] = (),
               host: str | None = None) -> Event:
    """Build an event; `key` names the episode (e.g. when the outage began), see event_id."""
    return Event(kind=kind, id=event_id(policy, kind, key), policy=policy,
                 host=host or this_host(), state=str(state), time=time, headline=headline,
                 summary=summary, severity=SEVERITY.get(kind, "info"),
                 counts=dict(counts or {}), changes=list(changes),
                 next_steps=list(next_steps), commands=list(commands),
                 timeline=[dict(t) for t in timeline])


def this_host() -> str:
    """This machine's short host name, as subjects show it."""
    return socket.gethostname().split(".")[0] or "localhost"


def target_name(params: Mapping[str, Any], fallback: str) -> str:
    """What production is called in a headline: the host of the target probe's URL (or its
    `host` option), else the probe's name."""
    url = params.get("url")
    if isinstance(url, str):
        host = urlsplit(url).hostname
        if host:
            return host
    host = params.get("host")
    return str(host) if isinstance(host, str) and host else fallback


def subject(event: Event) -> str:
    """`[failover-engine gocdb@HOST] ENGAGED: goc.egi.eu → standby`."""
    return f"[failover-engine {event.policy}@{event.host}] {event.title}: {event.headline}"


def body(event: Event) -> str:
    """The message text: summary, timeline, changes, next steps, commands, then the facts."""
    lines = [f"{event.title}: {event.headline}", "", event.summary.rstrip()]
    if event.timeline:
        lines += ["", "Timeline:"] + [f"  {t.get('time', '')}  {t.get('text', '')}"
                                      for t in event.timeline]
    if event.changes:
        lines += ["", "Changes:"] + [f"  - {c.line()}" for c in event.changes]
    if event.next_steps:
        lines += ["", "Next steps:"] + [f"  - {s}" for s in event.next_steps]
    if event.commands:
        lines += ["", "Commands:"] + [f"  {c}" for c in event.commands]
    lines += ["", f"policy:   {event.policy}", f"host:     {event.host}",
              f"state:    {event.state}", f"time:     {event.time}"]
    for name, value in event.counts.items():
        if value is not None:
            lines.append(f"{name + ':':9} {value}")
    lines.append(f"event:    {event.kind} {event.id}")
    return "\n".join(lines) + "\n"
