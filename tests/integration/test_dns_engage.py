"""DNS steps inside real engage and restore runs, through the CLI, against real BIND.

- a refused update stops the engage before the lock step, the record is unchanged and
  no "engaged" mail is sent;
- SIGKILL during `wait_dns` (the secondary lags), start again: the restore resumes the
  wait and does not send the update a second time.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dns.message
import dns.query

from tests.fixtures.bind import PROD, STANDBY
from tests.support import REPO, wait_until

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]


def cname(server: str) -> str:
    host, port = server.rsplit(":", 1)
    reply = dns.query.tcp(dns.message.make_query("goc.example.test.", "CNAME"), host,
                          port=int(port), timeout=3)
    return reply.answer[0][0].to_text() if reply.answer else "(none)"


def write_policy(tmp_path: Path, lab, smtp_sink, key_file: Path) -> Path:
    port = lab.primary.port
    servers = json.dumps(lab.servers)
    switch = "server: 127.0.0.1, port: {port}, zone: example.test., name: goc.example.test., " \
             "type: CNAME, ttl: 60, key: tsig, timeout: 5s"
    text = f"""\
    version: 1
    name: dnsrun
    state_dir: state
    secrets: {{tsig: {key_file}}}
    notify:
      email:
        smtp: {{host: 127.0.0.1, port: {smtp_sink.port}}}
        from: engine@t.test
        to: [admins@t.test]
        subject: dnsrun
    probes:
      production: {{tcp: {{host: 127.0.0.1, port: {port}}}}}
    monitor: {{target: production, interval: 1s, failures_to_engage: 3}}
    engage:
      - nsupdate: {{{switch.format(port=port)}, expect: {PROD}, set: {STANDBY}}}
      - lock: {{state: present}}
      - notify: {{message: "FAILOVER ENGAGED"}}
    restore:
      - nsupdate: {{{switch.format(port=port)}, expect: {STANDBY}, set: {PROD}}}
      - wait_dns: {{name: goc.example.test., type: CNAME, expect: {PROD}, servers: {servers},
                    settle: 1s, interval: 200ms, timeout: 2m}}
      - lock: {{state: absent}}
    """
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def own_key(tmp_path: Path, source: Path) -> Path:
    key = tmp_path / "tsig.key"
    key.write_text(source.read_text())
    key.chmod(0o600)
    return key


def audit(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]


def test_refused_update_stops_engage_before_the_lock_and_sends_no_engaged_mail(
        tmp_path, dns_lab, smtp_sink):
    # other-key may change only other.example.test: the primary REFUSES this update.
    policy = write_policy(tmp_path, dns_lab, smtp_sink, own_key(tmp_path, dns_lab.other_key_file))
    result = subprocess.run([*ENGINE, "--policy", str(policy), "engage", "--now"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "REFUSED" in result.stdout
    assert cname(dns_lab.servers[0]) == PROD
    assert not (tmp_path / "state" / "engage.lock").exists()
    smtp_sink.wait_for(2)
    bodies = [m.get_content() for m in smtp_sink.messages]
    assert not any("FAILOVER ENGAGED" in b for b in bodies)
    assert not any(" ENGAGED: " in m["Subject"] for m in smtp_sink.messages)
    assert any(" ABORTED: " in m["Subject"] for m in smtp_sink.messages)


def test_sigkill_during_wait_dns_resumes_without_resending_the_update(
        tmp_path, dns_lab, smtp_sink):
    policy = write_policy(tmp_path, dns_lab, smtp_sink, own_key(tmp_path, dns_lab.update_key_file))
    engage = subprocess.run([*ENGINE, "--policy", str(policy), "engage", "--now"],
                            capture_output=True, text=True, timeout=60)
    assert engage.returncode == 0, engage.stdout + engage.stderr
    assert cname(dns_lab.servers[0]) == STANDBY
    dns_lab.wait_serials_match()

    dns_lab.hold_transfers()  # the secondary lags: wait_dns must wait
    restore = subprocess.Popen([*ENGINE, "--policy", str(policy), "restore"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)

    def waiting() -> bool:
        try:
            state = json.loads((tmp_path / "state" / "state.json").read_text())
        except (OSError, ValueError):
            return False
        run = state.get("run") or {}
        return "0" in run.get("steps", {}) and bool(run.get("progress", {}).get("1"))

    wait_until(waiting, what="wait_dns to be waiting")
    started = json.loads((tmp_path / "state" / "state.json").read_text())["run"]["progress"]["1"]
    os.killpg(restore.pid, signal.SIGKILL)
    restore.wait(timeout=10)
    assert cname(dns_lab.servers[0]) == PROD and cname(dns_lab.servers[1]) == STANDBY

    dns_lab.release_transfers()
    again = subprocess.run([*ENGINE, "--policy", str(policy), "restore"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming the interrupted run at step 2" in again.stderr
    assert all(cname(s) == PROD for s in dns_lab.servers)
    restore_updates = [a for a in audit(tmp_path)
                       if a["phase"] == "restore" and a["kind"] == "nsupdate"]
    assert [a["outcome"] for a in restore_updates] == ["changed"]
    assert started  # the wait's own progress was journalled before the kill
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["state"] == "watching"
