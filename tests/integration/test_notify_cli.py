"""Notifications through the command line (subprocesses): `notify test`, the outbox retried
by every command, spooled step mail sent the same way, and validate's duplicate warning.
Real receivers on loopback: an aiosmtpd sink, a webhook receiver that checks the HMAC
signature, a real program for the command channel."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.fixtures.webhook import HOOK_KEY
from tests.support import REPO

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]

RECEIVER = """
import sys
sys.stdin.read()
open(sys.argv[1], "a").write("got\\n")
"""


def cli(policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "--policy", str(policy), *args], capture_output=True,
                          text=True, timeout=60)


def write_policy(tmp_path: Path, smtp_port: int, *, webhook_url: str | None = None,
                 engage: str = "- lock: {state: present}") -> Path:
    key = tmp_path / "hook.key"
    key.write_bytes(HOOK_KEY)
    key.chmod(0o600)
    channels = ""
    if webhook_url:
        argv = json.dumps([sys.executable, "-c", RECEIVER, str(tmp_path / "cmd.got")])
        channels = f"""
          webhook: {{url: "{webhook_url}", secret: hook, timeout: 5s}}
          command: {{argv: {argv}}}"""
    text = textwrap.dedent(f"""\
        version: 1
        name: nt
        state_dir: state
        secrets: {{hook: {key}}}
        notify:
          email:
            smtp: {{host: 127.0.0.1, port: {smtp_port}}}
            from: engine@nt.test
            to: [admins@nt.test]{channels}
        probes:
          production:
            tcp: {{host: 127.0.0.1, port: 9, timeout: 1s}}
        monitor: {{target: production, interval: 1s, failures_to_engage: 3}}
        engage:
          ENGAGE
        restore:
          - lock: {{state: absent}}
        """)
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("ENGAGE", engage))
    return path


def test_notify_test_reports_each_channel(tmp_path, smtp_sink, webhook):
    policy = write_policy(tmp_path, smtp_sink.port, webhook_url=webhook.url)
    result = cli(policy, "notify", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["email", "webhook", "command"]
    assert all(": ok: " in line for line in lines), lines
    assert smtp_sink.wait_for(1) and " TEST: " in smtp_sink.messages[0]["Subject"]
    assert len(webhook.events) == 1 and webhook.events[0]["kind"] == "test"
    assert webhook.bad_signatures == 0
    assert (tmp_path / "cmd.got").read_text() == "got\n"

    webhook.status = 503
    only = cli(policy, "notify", "test", "webhook")
    assert only.returncode == 1
    assert only.stdout.startswith("webhook: FAILED: webhook http://127.0.0.1:")
    assert "HTTP 503" in only.stdout and "email" not in only.stdout

    missing = cli(policy, "notify", "test", "pager")
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith(
        "notify.pager: no such channel in the policy (configured: email, webhook, command)")


def test_every_command_retries_the_outbox(tmp_path, smtp_sink):
    policy = write_policy(tmp_path, smtp_sink.port)
    smtp_sink.stop()
    engage = cli(policy, "engage", "--now")
    assert engage.returncode == 0, engage.stdout + engage.stderr
    status = json.loads(cli(policy, "status", "--json").stdout)
    assert status["outbox"]["depth"] == 1 and status["outbox"]["by_channel"] == {"email": 1}
    assert "outbox: 1 event(s) waiting (email 1)" in cli(policy, "status").stdout
    smtp_sink.start()
    cli(policy, "status")  # any command: the outbox is tried at its end
    assert smtp_sink.wait_for(1)
    assert [m["Subject"].split("] ")[1].split(":")[0] for m in smtp_sink.messages] == ["ENGAGED"]
    assert json.loads(cli(policy, "status", "--json").stdout)["outbox"]["depth"] == 0
    cli(policy, "status")
    assert len(smtp_sink.messages) == 1  # once


def test_spooled_step_mail_goes_out_with_the_next_command(tmp_path, smtp_sink):
    policy = write_policy(tmp_path, smtp_sink.port,
                          engage='- notify: {message: "step mail"}\n  - lock: {state: present}')
    smtp_sink.stop()
    assert cli(policy, "engage", "--now").returncode == 0
    assert json.loads(cli(policy, "status", "--json").stdout)["spooled_mail"] == 1
    smtp_sink.start()
    cli(policy, "status")
    assert smtp_sink.wait_for(2)
    subjects = sorted(m["Subject"] for m in smtp_sink.messages)
    assert len(subjects) == 2 and any("step mail" in s for s in subjects)
    assert json.loads(cli(policy, "status", "--json").stdout)["spooled_mail"] == 0


def test_validate_warns_about_a_notify_step_repeating_an_event(tmp_path, smtp_sink):
    policy = write_policy(tmp_path, smtp_sink.port,
                          engage='- lock: {state: present}\n  - notify: {message: "engaged"}')
    result = cli(policy, "validate")
    assert result.returncode == 0
    assert result.stderr.strip() == (
        f"warning: {policy}: engage step 2 (notify) mails the admins, and so does the "
        "engine's `engaged` event: they would get both; remove the step, or leave `engaged` "
        "out of notify.email.events")
