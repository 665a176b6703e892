"""The `email` channel: an event as one mail, through the relay of `notify.email`.

Subject `[failover-engine gocdb@HOST] ENGAGED: goc.egi.eu → standby` (engine.events), the
body from `engine.events.body`. The Message-ID is derived from the event's id, so a
retried event is the same message. SMTP, STARTTLS and login from a secret file are
engine.mail's (the notify step uses the same code).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine import mail
from engine.channels import ChannelError, SecretLookup, routed
from engine.errors import FailoverError
from engine.events import Event, body, subject


class EmailChannel:
    """Deliver an event as a mail to `notify.email.to`."""

    def __init__(self, name: str, config: Mapping[str, Any], secret: SecretLookup) -> None:
        self.name, self.kind = name, "email"
        self.events = routed(config, self.kind)
        self.notify = {"email": dict(config)}
        self.secret = secret

    def send(self, event: Event, timeout: float) -> str:
        """Mail the event; ChannelError when the relay does not accept it."""
        msg = mail.compose(self.notify, subject(event), body(event),
                           message_id=f"<{event.id}.{self.name}@failover-engine.invalid>")
        try:
            mail.deliver(self.notify, msg, secret=self.secret, timeout=max(0.1, timeout))
        except FailoverError as exc:
            raise ChannelError(str(exc)) from None
        return f"mail to {', '.join(mail.recipients(self.notify))} via {mail.relay(self.notify)}"
