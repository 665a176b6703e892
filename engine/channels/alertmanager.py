"""The `alertmanager` channel: Prometheus Alertmanager's v2 API, alerts that fire and resolve.

    notify:
      alertmanager: {url: http://127.0.0.1:9093, timeout: 10s}

Conditions are alerts, so they show in Alertmanager while they last:
`FailoverEngaged` fires on `engaged`, `FailoverAborted` on `aborted`, `FailoverDisarmed`
on `disarmed`, `FailoverDecisionNeeded` on `manual_decision_needed`; the events that end
them (`restored`, `reset`, `rearmed`, `outage_cleared`, `engage_started`) post the same
alert (same labels: alertname, policy, instance) with `endsAt` now, which resolves it.
A firing alert is posted with `endsAt` ALERT_HOLD ahead, so it stays firing until the
engine resolves it, instead of Alertmanager's 5-minute default. `test` posts a
`FailoverEngineTest` alert that ends after five minutes. HTTPS options as the webhook
(`ca_file`, `client_cert`, `client_key`).
"""
from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.channels import DEFAULT_TIMEOUT, SecretLookup, routed
from engine.channels.webhook import post_json, tls_context
from engine.durations import parse_duration
from engine.events import Event, Kind, body, subject

ALERT_HOLD = timedelta(days=30)
TEST_HOLD = timedelta(minutes=5)
# event kind → (alerts it fires, alerts it resolves)
FIRES: dict[Kind, tuple[str, ...]] = {
    Kind.ENGAGED: ("FailoverEngaged",), Kind.ABORTED: ("FailoverAborted",),
    Kind.DISARMED: ("FailoverDisarmed",), Kind.MANUAL_DECISION_NEEDED: ("FailoverDecisionNeeded",),
    Kind.TEST: ("FailoverEngineTest",),
}
RESOLVES: dict[Kind, tuple[str, ...]] = {
    Kind.RESTORED: ("FailoverEngaged", "FailoverAborted", "FailoverDecisionNeeded"),
    Kind.RESET: ("FailoverAborted", "FailoverDecisionNeeded"),
    Kind.REARMED: ("FailoverDisarmed",),
    Kind.OUTAGE_CLEARED: ("FailoverDecisionNeeded",),
    Kind.ENGAGE_STARTED: ("FailoverDecisionNeeded",),
}
ALERT_SEVERITY = {"FailoverEngineTest": "info", "FailoverEngaged": "warning"}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def alerts(event: Event) -> list[dict[str, Any]]:
    """The v2 alert objects one event posts (empty for an event that maps to none)."""
    start = _when(event.time)
    found = []
    for name in FIRES.get(event.kind, ()):
        hold = TEST_HOLD if event.kind is Kind.TEST else ALERT_HOLD
        found.append({"labels": _labels(event, name),
                      "annotations": {"summary": subject(event), "description": body(event),
                                      "event_id": event.id},
                      "startsAt": start.isoformat(), "endsAt": (start + hold).isoformat()})
    for name in RESOLVES.get(event.kind, ()):
        found.append({"labels": _labels(event, name),
                      "annotations": {"summary": subject(event), "event_id": event.id},
                      "startsAt": start.isoformat(), "endsAt": start.isoformat()})
    return found


def _labels(event: Event, name: str) -> dict[str, str]:
    # The same labels when firing and when resolving: Alertmanager matches on all of them,
    # so the severity label belongs to the alert's name, not to the event that posts it.
    return {"alertname": name, "policy": event.policy, "instance": event.host,
            "severity": ALERT_SEVERITY.get(name, "critical")}


class AlertmanagerChannel:
    """Post alerts to Alertmanager's `/api/v2/alerts`."""

    def __init__(self, name: str, config: Mapping[str, Any], secret: SecretLookup) -> None:
        self.name, self.kind = name, "alertmanager"
        self.events = routed(config, self.kind)
        self.url = str(config["url"]).rstrip("/") + "/api/v2/alerts"
        self.ca_file = config.get("ca_file")
        self.client_cert, self.client_key = config.get("client_cert"), config.get("client_key")
        self.timeout = (parse_duration(config["timeout"]) if config.get("timeout")
                        else DEFAULT_TIMEOUT)

    def _context(self) -> ssl.SSLContext | None:
        return tls_context(self.url, self.ca_file, self.client_cert, self.client_key,
                           "alertmanager")

    def send(self, event: Event, timeout: float) -> str:
        """Post the event's alerts; an event that maps to no alert is delivered as nothing."""
        found = alerts(event)
        if not found:
            return f"alertmanager: {event.kind} maps to no alert"
        status = post_json(self.url, json.dumps(found).encode(), {},
                           max(0.1, min(self.timeout, timeout)), self._context(), "alertmanager")
        states = ", ".join(f"{a['labels']['alertname']} "
                           f"{'resolved' if a['endsAt'] == a['startsAt'] else 'firing'}"
                           for a in found)
        return f"alertmanager {self.url} answered {status}: {states}"
