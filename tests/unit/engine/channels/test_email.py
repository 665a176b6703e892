"""The email channel through a real aiosmtpd relay: STARTTLS, login from a secret file."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.channels import ChannelError
from engine.channels.email import EmailChannel
from engine.events import subject


def _config(sink, pki, credentials="smtp"):
    return {"smtp": {"host": "127.0.0.1", "port": sink.port, "starttls": True,
                     "ca_file": str(pki.ca.cert), "credentials": credentials},
            "from": "failover@standby.test", "to": ["admins@example.test"]}


def _cred(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smtp.cred"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_starttls_and_login_deliver_one_mail_in_the_one_style(tmp_path, smtp_sink_tls, pki,
                                                              sample_event):
    cred = _cred(tmp_path, "drill:s3cret\n")
    channel = EmailChannel("email", _config(smtp_sink_tls, pki), lambda name: cred)
    channel.send(sample_event, 10.0)
    assert smtp_sink_tls.wait_for(1, timeout=10)
    got = smtp_sink_tls.received[0]
    assert got.authenticated_as == "drill"
    msg = got.message
    assert msg["Subject"] == subject(sample_event) == \
        "[failover-engine gocdb@standby1] ENGAGED: goc.egi.eu → standby"
    assert msg["Message-ID"] == f"<{sample_event.id}.email@failover-engine.invalid>"
    body = msg.get_content()
    for part in ("Timeline:", "Changes:", "engage step 2 (nsupdate): goc.stfc.ac.uk. → "
                 "standby.example.", "Next steps:", "Commands:", "policy:   gocdb"):
        assert part in body


def test_a_wrong_password_is_an_error_and_nothing_is_sent(tmp_path, smtp_sink_tls, pki,
                                                          sample_event):
    cred = _cred(tmp_path, "drill:wrong\n")
    channel = EmailChannel("email", _config(smtp_sink_tls, pki), lambda name: cred)
    with pytest.raises(ChannelError, match="refused the login"):
        channel.send(sample_event, 10.0)
    assert smtp_sink_tls.messages == []
