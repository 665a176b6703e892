"""Notification channels: where events go, one module per kind, built from the policy.

The policy's `notify` block has one optional entry per channel kind, and the channel is
named after it (`notify test email`):

    notify:
      email: {smtp: {...}, from: ..., to: [...]}          # engine/channels/email.py
      webhook: {url: https://..., secret: hook}            # engine/channels/webhook.py
      alertmanager: {url: http://127.0.0.1:9093}           # engine/channels/alertmanager.py
      command: {argv: [/usr/local/bin/page, --team, db]}   # engine/channels/command.py

Each entry may carry `events: [kind, ...]` (engine.events.Kind names): the events that
channel gets. Without it, message channels get `MESSAGE_EVENTS` (at most three messages for
an outage that is engaged and later restored) and Alertmanager gets `ALERT_EVENTS`.

A channel is an object with `name`, `kind`, `events` and `send(event, timeout)`, which
returns a short description of what was delivered and raises `ChannelError` when the
receiver could not take it (the outbox, engine/outbox.py, keeps it and retries).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from engine.errors import FailoverError
from engine.events import ALERT_EVENTS, MESSAGE_EVENTS, Event, Kind

SecretLookup = Callable[[str], Path]
CHANNEL_KINDS = ("email", "webhook", "alertmanager", "command")
DEFAULT_TIMEOUT = 10.0


class ChannelError(FailoverError):
    """The receiver did not take the event (it stays in the outbox)."""


class Channel(Protocol):
    """What the outbox delivers through."""

    name: str
    kind: str
    events: frozenset[str]

    def send(self, event: Event, timeout: float) -> str:
        """Deliver one event; return what was done, raise ChannelError otherwise."""
        ...


def routed(config: Mapping[str, Any], kind: str) -> frozenset[str]:
    """The events a channel's config routes to it (its `events`, else the default)."""
    events = config.get("events")
    if events is not None:
        return frozenset(str(e) for e in events)
    return frozenset(str(k) for k in (ALERT_EVENTS if kind == "alertmanager"
                                      else MESSAGE_EVENTS))


def build_channels(notify: Mapping[str, Any] | None,
                   secret: SecretLookup) -> dict[str, Channel]:
    """The policy's channels by name (an empty dict without a notify block)."""
    from engine.channels.alertmanager import AlertmanagerChannel
    from engine.channels.command import CommandChannel
    from engine.channels.email import EmailChannel
    from engine.channels.webhook import WebhookChannel

    classes: dict[str, Any] = {"email": EmailChannel, "webhook": WebhookChannel,
                               "alertmanager": AlertmanagerChannel, "command": CommandChannel}
    channels: dict[str, Channel] = {}
    for kind in CHANNEL_KINDS:
        config = (notify or {}).get(kind)
        if isinstance(config, Mapping):
            channels[kind] = classes[kind](kind, config, secret)
    return channels


def routes_for(channels: Mapping[str, Channel], kind: Kind | str) -> list[str]:
    """The names of the channels an event of `kind` goes to."""
    return [name for name, channel in channels.items() if str(kind) in channel.events]


def read_secret(secret: SecretLookup, name: str, what: str) -> bytes:
    """A secret's bytes (trailing newline stripped); ChannelError naming it, never its text."""
    try:
        path = secret(name)
        data = Path(path).read_bytes().strip()
    except FailoverError as exc:
        raise ChannelError(f"{what}: {exc}") from None
    except OSError as exc:
        raise ChannelError(f"{what}: cannot read secret '{name}': "
                           f"{exc.strerror or exc}") from None
    if not data:
        raise ChannelError(f"{what}: secret '{name}' is empty")
    return data
