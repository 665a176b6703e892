"""engine.mail against a real aiosmtpd sink: headers, the spool, SMTP failures, the lock.

The notify step, the Engine's transition mail and a job's failure mail all go through
this module; the step's own behaviour is tested in tests/unit/actions/test_notify.py.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from engine.drillkit.pki import Pki
from engine.drillkit.smtp import SmtpSink
from engine.errors import SecretError, StepError
from engine.mail import flush_spool, mail_body, pending, read_credentials, send_mail, status


def _config(sink: SmtpSink, **smtp: Any) -> dict[str, Any]:
    return {"email": {"smtp": {"host": "127.0.0.1", "port": sink.port, **smtp},
                      "from": "failover@standby.test",
                      "to": ["admins@example.test", "oncall@example.test"],
                      "subject": "drill failover"}}


def _no_secret(name: str) -> Path:
    raise AssertionError(f"no secret is needed here, asked for {name!r}")


def test_send_mail_headers_envelope_and_body(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    spool = tmp_path / "spool"
    sent = send_mail(_config(smtp_sink), "[drill] engaged: done", "the body\n",
                     spool_dir=spool, secret=_no_secret)
    [received] = smtp_sink.received
    msg = received.message
    assert received.mail_from == "failover@standby.test"
    assert received.rcpt_tos == ["admins@example.test", "oncall@example.test"]
    assert msg["To"] == "admins@example.test, oncall@example.test"
    assert msg["Subject"] == "[drill] engaged: done"
    assert msg["Message-ID"] == sent.message_id and sent.delivered == 1
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"].datetime.utcoffset().total_seconds() == 0
    assert msg.get_content().replace("\r\n", "\n") == "the body\n"
    assert pending(spool) == [] and status(spool, sent.message_id) == "gone"


def test_mail_body_lists_where_and_when() -> None:
    from datetime import UTC, datetime

    body = mail_body("Engaged.\n", policy="drill", state="engaged", step="engage/3",
                     host="standby.test", when=datetime(2027, 1, 15, 8, 0, tzinfo=UTC))
    assert body == ("Engaged.\n\npolicy:  drill\nstate:   engaged\nhost:    standby.test\n"
                    "time:    2027-01-15 08:00:00 UTC\nstep:    engage/3\n")


def test_spooled_then_required_flush(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config, spool = _config(smtp_sink), tmp_path / "spool"
    smtp_sink.stop()
    recorded: list[str] = []
    with pytest.raises(StepError, match="will be sent on the next transition") as err:
        send_mail(config, "s", "b", spool_dir=spool, secret=_no_secret,
                  on_spooled=recorded.append)
    assert err.value.retryable
    [message_id] = recorded  # known before the relay was tried
    assert status(spool, message_id) == "spooled"
    with pytest.raises(StepError, match="cannot reach the mail relay"):
        flush_spool(config, spool, _no_secret, require=message_id)
    smtp_sink.start()
    assert flush_spool(config, spool, _no_secret, require=message_id) == 1
    assert status(spool, message_id) == "gone"
    assert [m["Message-ID"] for m in smtp_sink.messages] == [message_id]


def test_concurrent_flushes_send_each_message_once(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    # The monitor and a cron job may flush at the same moment: the spool lock serialises them.
    config, spool = _config(smtp_sink), tmp_path / "spool"
    smtp_sink.stop()
    for n in range(5):
        with pytest.raises(StepError):
            send_mail(config, f"m{n}", "b", spool_dir=spool, secret=_no_secret)
    smtp_sink.start()
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(
        flush_spool(config, spool, _no_secret))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(m["Subject"] for m in smtp_sink.messages) == [f"m{n}" for n in range(5)]
    assert sum(counts) == 5 and pending(spool) == []


def test_unusable_secret_is_one_clear_line(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    def secret(name: str) -> Path:
        raise SecretError(f"secret '{name}': /etc/x.cred is readable by others; chmod 600 it")

    config = _config(smtp_sink, credentials="smtp")
    with pytest.raises(StepError, match="secret 'smtp': /etc/x.cred is readable by others"):
        send_mail(config, "s", "b", spool_dir=tmp_path / "spool", secret=secret)
    assert len(pending(tmp_path / "spool")) == 1


def test_send_mail_flushes_older_mail_first(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config, spool = _config(smtp_sink), tmp_path / "spool"
    smtp_sink.stop()
    with pytest.raises(StepError):
        send_mail(config, "first", "one", spool_dir=spool, secret=lambda n: tmp_path / n)
    smtp_sink.start()
    sent = send_mail(config, "second", "two", spool_dir=spool, secret=lambda n: tmp_path / n)
    assert [m["Subject"] for m in smtp_sink.messages] == ["first", "second"]
    assert smtp_sink.messages[1]["Message-ID"] == sent.message_id
    assert sent.delivered == 2
    assert pending(spool) == []


def test_temporary_rejection_keeps_mail_spooled(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config, spool = _config(smtp_sink), tmp_path / "spool"
    smtp_sink.reject = "451 4.3.0 try again later"
    with pytest.raises(StepError, match="451 4.3.0 try again later") as err:
        send_mail(config, "s", "b", spool_dir=spool, secret=lambda n: tmp_path / n)
    assert err.value.retryable
    assert len(pending(spool)) == 1
    smtp_sink.reject = None
    assert flush_spool(config, spool, lambda n: tmp_path / n) == 1


def test_permanent_rejection_moves_mail_aside(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config, spool = _config(smtp_sink), tmp_path / "spool"
    smtp_sink.reject = "554 5.7.1 not from you"
    with pytest.raises(StepError, match="refused the mail for good") as err:
        sent_id: list[str] = []
        send_mail(config, "s", "b", spool_dir=spool, secret=lambda n: tmp_path / n,
                  on_spooled=sent_id.append)
    assert not err.value.retryable
    assert pending(spool) == []
    assert status(spool, sent_id[0]) == "rejected"
    assert len(list((spool / "rejected").glob("*.eml"))) == 1


def test_starttls_with_untrusted_relay_fails(tmp_path: Path, smtp_sink_tls: SmtpSink,
                                             pki: Pki) -> None:
    config = _config(smtp_sink_tls, starttls=True, ca_file=str(pki.wrong_ca.cert))
    with pytest.raises(StepError, match="STARTTLS with 127.0.0.1:.* failed"):
        send_mail(config, "s", "b", spool_dir=tmp_path / "spool", secret=lambda n: tmp_path / n)


def test_credentials_file_formats(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_text("user:pa:ss\n")
    assert read_credentials(path) == ("user", "pa:ss")
    path.write_text("user\npass word\n")
    assert read_credentials(path) == ("user", "pass word")
    path.write_text("only-a-password\n")
    with pytest.raises(StepError, match="must hold 'user:password'") as err:
        read_credentials(path)
    assert "only-a-password" not in str(err.value)


def test_flush_with_empty_spool_contacts_nobody(tmp_path: Path) -> None:
    config = {"email": {"smtp": {"host": "127.0.0.1", "port": 1}, "from": "a@b", "to": ["c@d"]}}
    assert flush_spool(config, tmp_path / "spool", lambda n: tmp_path / n) == 0
    assert not (tmp_path / "spool").exists()


def test_long_subject_arrives_intact(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    subject = "[drill] suspect: production failed a probe; counting towards the failover"
    smtp_sink.stop()
    with pytest.raises(StepError):
        send_mail(_config(smtp_sink), subject, "b", spool_dir=tmp_path / "spool",
                  secret=lambda n: tmp_path / n)
    smtp_sink.start()
    assert flush_spool(_config(smtp_sink), tmp_path / "spool", lambda n: tmp_path / n) == 1
    assert smtp_sink.messages[0]["Subject"] == subject


def test_sink_wait_for(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    assert not smtp_sink.wait_for(1, timeout=0.05)
    send_mail(_config(smtp_sink), "s", "b", spool_dir=tmp_path / "spool",
              secret=lambda n: tmp_path / n)
    assert smtp_sink.wait_for(1, timeout=5)
