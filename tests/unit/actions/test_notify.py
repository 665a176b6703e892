"""The notify step against a real aiosmtpd sink: what it says, one mail per step, plan.

The mechanism (spool, SMTP, STARTTLS, rejections) is tested in tests/unit/engine/test_mail.py.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actions.base import Context
from actions.notify import Notify
from actions.registry import build_step
from engine.drillkit.pki import Pki
from engine.drillkit.smtp import SmtpSink
from engine.errors import StepError
from engine.mail import flush_spool, pending
from tests.support import step_context


def _config(sink: SmtpSink, **smtp: Any) -> dict[str, Any]:
    return {"email": {"smtp": {"host": "127.0.0.1", "port": sink.port, **smtp},
                      "from": "failover@standby.test",
                      "to": ["admins@example.test", "oncall@example.test"],
                      "subject": "drill failover"}}


def _ctx(state_dir: Path, notify: dict | None, secrets: dict[str, Path] | None = None,
         log: list[str] | None = None) -> Context:
    ctx = step_context(state_dir, secret=lambda name: (secrets or {})[name],
                       policy_name="drill", step_id="engage/1",
                       policy=SimpleNamespace(notify=notify, name="drill"))
    if log is not None:
        ctx.log = log.append
    return ctx


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p): (p.lstat().st_mtime_ns, p.lstat().st_mode, p.lstat().st_size)
            for p in [root, *root.rglob("*")]}


def test_step_sends_mail_with_headers_and_body(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    ctx = _ctx(tmp_path, _config(smtp_sink))
    ctx.engine_state = "engaging"
    step = Notify({"message": "Production failed 3 probes in a row; engaging the failover."})
    outcome = step.apply(ctx)
    assert outcome.changed
    [received] = smtp_sink.received
    msg = received.message
    assert received.mail_from == "failover@standby.test"
    assert received.rcpt_tos == ["admins@example.test", "oncall@example.test"]
    assert msg["From"] == "failover@standby.test"
    assert msg["To"] == "admins@example.test, oncall@example.test"
    assert msg["Subject"] == (
        "drill failover: Production failed 3 probes in a row; engaging the failover.")
    assert msg["Date"].datetime.utcoffset().total_seconds() == 0
    assert msg["Message-ID"] == outcome.after == ctx.progress["message_id"]
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content().replace("\r\n", "\n")
    assert body.startswith("Production failed 3 probes in a row; engaging the failover.\n")
    assert "policy:  drill" in body and "state:   engaging" in body and "step:    engage/1" in body
    assert "host:    " in body and " UTC" in body
    assert pending(tmp_path / "spool") == []


def test_non_ascii_message_and_registry(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    step = build_step("notify", {"message": "goc.egi.eu → standby, déjà vu"})
    assert isinstance(step, Notify)
    step.apply(_ctx(tmp_path, _config(smtp_sink)))
    assert "goc.egi.eu → standby, déjà vu" in smtp_sink.messages[0].get_content()


def test_second_apply_is_a_no_op(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    ctx = _ctx(tmp_path, _config(smtp_sink))
    step = Notify({"message": "engaged", "subject": "ENGAGED"})
    step.apply(ctx)
    assert step.plan(ctx).done
    again = step.apply(ctx)
    assert not again.changed and "already sent" in again.summary
    assert [m["Subject"] for m in smtp_sink.messages] == ["ENGAGED"]


def test_plan_sends_nothing_and_writes_nothing(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    ctx = _ctx(tmp_path, _config(smtp_sink))
    before = _snapshot(tmp_path)
    plan = Notify({"message": "hello"}).plan(ctx)
    assert not plan.done and plan.problem is None
    assert plan.summary.startswith(
        f"would mail admins@example.test, oncall@example.test via 127.0.0.1:{smtp_sink.port}: "
        "subject 'drill failover: hello'")
    assert smtp_sink.received == []
    assert _snapshot(tmp_path) == before


def test_sink_down_spools_then_flush_delivers(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config = _config(smtp_sink)
    ctx = _ctx(tmp_path, config)
    smtp_sink.stop()
    step = Notify({"message": "engaging while the relay is down"})
    with pytest.raises(StepError) as err:
        step.apply(ctx)
    assert err.value.retryable
    assert f"cannot reach the mail relay 127.0.0.1:{smtp_sink.port}" in str(err.value)
    assert "will be sent on the next transition" in str(err.value)
    [spooled] = pending(tmp_path / "spool")
    assert spooled.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    assert "1 spooled message(s)" in Notify({"message": "x"}).plan(ctx).summary

    with pytest.raises(StepError):  # still down: nothing lost
        flush_spool(config, tmp_path / "spool", ctx.secret)
    assert pending(tmp_path / "spool") == [spooled]

    smtp_sink.start()
    assert flush_spool(config, tmp_path / "spool", ctx.secret) == 1
    assert pending(tmp_path / "spool") == []
    [msg] = smtp_sink.messages
    assert msg["Message-ID"] == ctx.progress["message_id"]
    assert "engaging while the relay is down" in msg.get_content()
    # The step, retried after the flush, knows its mail went out and sends no second one.
    assert not step.apply(ctx).changed
    assert flush_spool(config, tmp_path / "spool", ctx.secret) == 0
    assert len(smtp_sink.messages) == 1


def test_retry_of_the_step_sends_the_spooled_copy(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    ctx = _ctx(tmp_path, _config(smtp_sink))
    smtp_sink.stop()
    step = Notify({"message": "retry me"})
    with pytest.raises(StepError):
        step.apply(ctx)
    smtp_sink.start()
    outcome = step.apply(ctx)  # what the runner's retry does
    assert outcome.changed
    assert [m["Message-ID"] for m in smtp_sink.messages] == [ctx.progress["message_id"]]


def test_starttls_and_auth(tmp_path: Path, smtp_sink_tls: SmtpSink, pki: Pki) -> None:
    cred = tmp_path / "smtp.cred"
    cred.write_text("drill:s3cret\n")
    os.chmod(cred, 0o600)
    config = _config(smtp_sink_tls, starttls=True, ca_file=str(pki.ca.cert), credentials="smtp")
    ctx = _ctx(tmp_path, config, secrets={"smtp": cred})
    assert Notify({"message": "over TLS"}).host_problems(ctx) == []
    Notify({"message": "over TLS"}).apply(ctx)
    [received] = smtp_sink_tls.received
    assert received.authenticated_as == "drill"


def test_wrong_password_is_clear_and_spooled(tmp_path: Path, smtp_sink_tls: SmtpSink,
                                            pki: Pki) -> None:
    cred = tmp_path / "smtp.cred"
    cred.write_text("drill\nwrong-password\n")
    config = _config(smtp_sink_tls, starttls=True, ca_file=str(pki.ca.cert), credentials="smtp")
    ctx = _ctx(tmp_path, config, secrets={"smtp": cred})
    with pytest.raises(StepError, match="refused the login from secret 'smtp'") as err:
        Notify({"message": "x"}).apply(ctx)
    assert "wrong-password" not in str(err.value)
    assert len(pending(tmp_path / "spool")) == 1


def test_no_notify_block(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, None)
    step = Notify({"message": "x"})
    assert "no `notify.email` block" in (step.plan(ctx).problem or "")
    with pytest.raises(StepError, match="no `notify.email` block"):
        step.apply(ctx)


def test_an_explicit_subject_wins_and_long_messages_are_cut_in_the_subject(
        tmp_path: Path, smtp_sink: SmtpSink) -> None:
    ctx = _ctx(tmp_path, _config(smtp_sink))
    Notify({"message": "x", "subject": "ENGAGED"}).apply(ctx)
    Notify({"message": "word " * 40}).apply(_ctx(tmp_path / "b", _config(smtp_sink)))
    first, second = smtp_sink.messages
    assert first["Subject"] == "ENGAGED"
    assert second["Subject"].startswith("drill failover: word word")
    assert second["Subject"].endswith("...") and len(second["Subject"]) < 110
