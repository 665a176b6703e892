"""The webhook channel against a real receiver on loopback that checks the HMAC signature."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.channels import ChannelError
from engine.channels.webhook import WebhookChannel
from engine.events import Event
from tests.fixtures.webhook import HOOK_KEY


def _secret(tmp_path: Path, key: bytes) -> Path:
    path = tmp_path / "hook.key"
    path.write_bytes(key + b"\n")
    path.chmod(0o600)
    return path


def test_a_signed_post_reaches_the_receiver_which_checks_the_signature(
        tmp_path, webhook, sample_event: Event):
    key = _secret(tmp_path, HOOK_KEY)
    channel = WebhookChannel("webhook", {"url": webhook.url, "secret": "hook"},
                             lambda name: key)
    what = channel.send(sample_event, 5.0)
    assert "answered 204" in what
    assert webhook.bad_signatures == 0 and len(webhook.events) == 1
    assert Event.from_dict(webhook.events[0]) == sample_event
    assert webhook.events[0]["format"] == 1 and webhook.events[0]["title"] == "ENGAGED"
    headers = webhook.headers[0]
    assert headers["X-Failover-Event-Id"] == sample_event.id
    assert headers["X-Failover-Event"] == "engaged"


def test_a_wrong_key_is_refused_by_the_receiver_and_stays_undelivered(
        tmp_path, webhook, sample_event):
    key = _secret(tmp_path, b"not the receiver's key")
    channel = WebhookChannel("webhook", {"url": webhook.url, "secret": "hook"},
                             lambda name: key)
    with pytest.raises(ChannelError, match="HTTP 401"):
        channel.send(sample_event, 5.0)
    assert webhook.bad_signatures == 1 and webhook.events == []


def test_an_unsigned_post_is_refused_too(webhook, sample_event):
    channel = WebhookChannel("webhook", {"url": webhook.url}, lambda name: Path("/nonexistent"))
    with pytest.raises(ChannelError, match="HTTP 401"):
        channel.send(sample_event, 5.0)
    assert webhook.bad_signatures == 1


def test_a_receiver_answering_503_is_an_error(tmp_path, webhook, sample_event):
    key = _secret(tmp_path, HOOK_KEY)
    webhook.status = 503
    channel = WebhookChannel("webhook", {"url": webhook.url, "secret": "hook"},
                             lambda name: key)
    with pytest.raises(ChannelError, match="HTTP 503"):
        channel.send(sample_event, 5.0)


def test_https_with_a_client_certificate(tmp_path, webhook_tls, pki, sample_event):
    key = _secret(tmp_path, HOOK_KEY)
    config = {"url": webhook_tls.url, "secret": "hook", "ca_file": str(pki.ca.cert),
              "client_cert": str(pki.client.cert), "client_key": str(pki.client.key)}
    WebhookChannel("webhook", config, lambda name: key).send(sample_event, 5.0)
    assert len(webhook_tls.events) == 1
    without = {k: v for k, v in config.items() if not k.startswith("client_")}
    with pytest.raises(ChannelError):
        WebhookChannel("webhook", without, lambda name: key).send(sample_event, 5.0)
    assert len(webhook_tls.events) == 1


def test_a_closed_port_is_an_error_naming_the_url(tmp_path, sample_event):
    from engine.drillkit.ports import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(ChannelError, match="webhook http://127.0.0.1:"):
        WebhookChannel("webhook", {"url": url}, lambda name: tmp_path).send(sample_event, 2.0)
