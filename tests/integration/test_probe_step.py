"""Never fail over to a broken standby, through the CLI: a real HTTPS standby demanding a
client certificate, a real SMTP sink.

- the standby answers 503: `engage --now` stops at the probe step with the probe's reason,
  exit 1, before the steps after it (the cron file stays, no lock);
- `dry-run engage` says the probe would fail (exit 1);
- `engage --now --force` engages anyway, and the audit log and the ENGAGED mail say the
  probe's failure was overridden;
- a standby that answers: the probe step is done and engage goes through.
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.drillkit.https import HttpsServer
from engine.drillkit.pki import Pki
from engine.drillkit.smtp import SmtpSink
from tests.integration.test_cli_engine import cli, state_of, write_policy
from tests.support import wait_until

ENGAGE = """\
  - probe: {name: standby}
  - disable_cron: {file: cron.d/refresh}
  - lock: {state: present}
"""


class _Prod:
    def __init__(self, server: HttpsServer, pki: Pki) -> None:
        self.server, self.pki = server, pki


def _policy(tmp_path: Path, server: HttpsServer, pki: Pki, smtp: SmtpSink) -> Path:
    path = write_policy(tmp_path, _Prod(server, pki), smtp, ENGAGE)
    text = path.read_text().replace("monitor:\n", f"""\
  standby:
    http:
      url: {server.url('/standby')}
      client_cert: {pki.client.cert}
      client_key: {pki.client.key}
      ca_file: {pki.ca.cert}
      timeout: 2s
      expect_body: standby
monitor:
""", 1)
    path.write_text(text)
    return path


def _audit(tmp_path: Path) -> list[dict]:
    audit = tmp_path / "state" / "audit.jsonl"
    return [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []


def test_a_broken_standby_stops_engage_and_force_overrides_it(
        tmp_path: Path, https_server: HttpsServer, pki: Pki, smtp_sink: SmtpSink) -> None:
    https_server.set_route("/standby", 503, "down for maintenance")
    policy = _policy(tmp_path, https_server, pki, smtp_sink)
    assert cli(policy, "validate").returncode == 0

    dry = cli(policy, "dry-run", "engage")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "probe standby failed: HTTP 503 (expected 200)" in dry.stdout + dry.stderr

    first = cli(policy, "engage", "--now")
    out = first.stdout + first.stderr
    assert first.returncode == 1, out
    assert "probe standby failed: HTTP 503 (expected 200)" in out
    assert "--force" in out
    assert state_of(tmp_path)["state"] == "aborted"
    assert (tmp_path / "cron.d" / "refresh").exists(), "a step after the probe ran"
    assert not (tmp_path / "state" / "engage.lock").exists()
    failed = [e for e in _audit(tmp_path) if e["outcome"] == "failed"]
    assert [e["kind"] for e in failed] == ["probe"]

    assert cli(policy, "reset").returncode == 0
    forced = cli(policy, "engage", "--now", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert state_of(tmp_path)["state"] == "engaged"
    assert "OVERRIDDEN by engage --force: probe standby failed: HTTP 503" in forced.stdout
    overridden = [e for e in _audit(tmp_path)
                  if e["kind"] == "probe" and e["outcome"] == "changed"]
    assert len(overridden) == 1
    assert overridden[0]["facts"]["overridden"] == ("probe standby failed: HTTP 503 "
                                                    "(expected 200)")
    assert overridden[0]["summary"].startswith("OVERRIDDEN by engage --force")

    wait_until(lambda: any("ENGAGED" in str(m["Subject"]) for m in smtp_sink.messages),
               timeout=20, what="the ENGAGED mail")
    engaged = next(m for m in smtp_sink.messages if "ENGAGED" in str(m["Subject"]))
    body = engaged.get_payload() if not engaged.is_multipart() else \
        engaged.get_payload(0).get_payload()
    assert "probe standby failed: HTTP 503" in body and "overridden by --force" in body, body


def test_a_standby_that_answers_lets_engage_through(
        tmp_path: Path, https_server: HttpsServer, pki: Pki, smtp_sink: SmtpSink) -> None:
    https_server.set_route("/standby", 200, "standby OK")
    policy = _policy(tmp_path, https_server, pki, smtp_sink)
    result = cli(policy, "engage", "--now")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "standby answers: HTTP 200" in result.stdout
    assert state_of(tmp_path)["state"] == "engaged"
    assert not (tmp_path / "cron.d" / "refresh").exists()
    assert [e["kind"] for e in _audit(tmp_path)] == ["disable_cron", "lock"]


def test_force_reaches_a_running_monitor(tmp_path: Path, https_server: HttpsServer, pki: Pki,
                                         smtp_sink: SmtpSink) -> None:
    import signal
    import subprocess

    from tests.integration.test_cli_engine import ENGINE

    https_server.set_route("/health", 200, "OK")
    https_server.set_route("/standby", 503, "down for maintenance")
    policy = _policy(tmp_path, https_server, pki, smtp_sink)
    monitor = subprocess.Popen([*ENGINE, "--policy", str(policy), "run"], text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= 1, what="a cycle")
        refused = cli(policy, "engage", "--now")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "asked it to engage" in refused.stdout
        assert "probe standby failed: HTTP 503 (expected 200)" in refused.stdout
        assert state_of(tmp_path)["state"] == "aborted"
        assert cli(policy, "reset").returncode == 0
        forced = cli(policy, "engage", "--now", "--force")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert "state: engaged" in forced.stdout  # the monitor's reply
        overridden = [e for e in _audit(tmp_path) if e["outcome"] == "changed"
                      and e["kind"] == "probe"]
        assert len(overridden) == 1 and overridden[0]["summary"].startswith("OVERRIDDEN")
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(30)
