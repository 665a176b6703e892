"""The `webhook` channel: POST the event's JSON, signed with HMAC-SHA256.

    secrets: {hook: /etc/failover-engine/webhook.key}      # mode 0600
    notify:
      webhook:
        url: https://hooks.example.org/failover
        secret: hook                 # signs the body; the receiver checks the header
        client_cert: pki/client.pem  # optional client certificate (and client_key)
        client_key: pki/client.key
        ca_file: pki/ca.pem          # optional: CAs trusted for the receiver
        timeout: 10s

Headers: `Content-Type: application/json`, `X-Failover-Event: <kind>`,
`X-Failover-Event-Id: <id>` (the idempotency id: a receiver that sees it twice may drop
the second), and with a secret `X-Failover-Signature: sha256=<hex HMAC-SHA256 of the body>`.
Any 2xx answer is delivered; anything else stays in the outbox for a retry.
"""
from __future__ import annotations

import hashlib
import hmac
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from engine.channels import DEFAULT_TIMEOUT, ChannelError, SecretLookup, read_secret, routed
from engine.durations import parse_duration
from engine.events import Event

SIGNATURE_HEADER = "X-Failover-Signature"


def signature(key: bytes, body: bytes) -> str:
    """The signature header's value for `body`: `sha256=<hex>`."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def tls_context(url: str, ca_file: str | None, client_cert: str | None,
                client_key: str | None, what: str) -> ssl.SSLContext | None:
    """The TLS context for an https `url` (None for plain http): the policy's CA, and our
    client certificate when one is configured; unreadable files are one ChannelError."""
    if not url.lower().startswith("https:"):
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if client_cert:
            context.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ChannelError(f"{what} {url}: TLS files: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    return context


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
              context: ssl.SSLContext | None, what: str) -> int:
    """POST `body`; the HTTP status, or ChannelError when there is no 2xx answer."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        raise ChannelError(f"{what} {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        raise ChannelError(f"{what} {url}: {text}") from None
    except (TimeoutError, OSError) as exc:
        raise ChannelError(f"{what} {url}: {'timed out' if isinstance(exc, TimeoutError) else exc}"
                           ) from None


class WebhookChannel:
    """Deliver an event as a signed JSON POST."""

    def __init__(self, name: str, config: Mapping[str, Any], secret: SecretLookup) -> None:
        self.name, self.kind = name, "webhook"
        self.events = routed(config, self.kind)
        self.url = str(config["url"])
        self.secret_name: str | None = config.get("secret")
        self.secret = secret
        self.client_cert, self.client_key = config.get("client_cert"), config.get("client_key")
        self.ca_file = config.get("ca_file")
        self.timeout = (parse_duration(config["timeout"]) if config.get("timeout")
                        else DEFAULT_TIMEOUT)

    def _context(self) -> ssl.SSLContext | None:
        return tls_context(self.url, self.ca_file, self.client_cert, self.client_key, "webhook")

    def send(self, event: Event, timeout: float) -> str:
        """POST the event; ChannelError unless the receiver answers 2xx."""
        body = event.to_json().encode()
        headers = {"X-Failover-Event": str(event.kind), "X-Failover-Event-Id": event.id}
        if self.secret_name:
            key = read_secret(self.secret, self.secret_name, "webhook")
            headers[SIGNATURE_HEADER] = signature(key, body)
        status = post_json(self.url, body, headers, max(0.1, min(self.timeout, timeout)),
                           self._context(), "webhook")
        return f"webhook {self.url} answered {status}"
