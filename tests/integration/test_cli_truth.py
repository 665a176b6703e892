"""Through the CLI, against real loopback servers: every exit code, status line, metric and
check means what it says (issue 11).

- a guard answering 301 is reachable: the target's outage counts and engages;
- a guard that always fails disarms the failover: `check engine` WARNING within
  DISARM_AFTER cycles of `run`, status and the metrics say so, one mail;
- the target's client certificate vanishing disarms it too; days left in status/metrics;
- refusals exit 1 with the reason on stderr, with and without a running monitor;
- a restore following a monitor that is SIGKILLed exits 1 naming it and the state reached;
- once engaged the count stops at the threshold and "down for" shows; reset clears the
  count and says so; status before the first run says "never run".
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.arming import DISARM_AFTER
from tests.support import REPO, wait_until

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]


def cli(policy: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "--policy", str(policy), *args], capture_output=True,
                          text=True, timeout=timeout)


def state_of(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / "state" / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback TCP port that accepts connections (a healthy tcp target)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def write_policy(tmp_path: Path, probes: str, *, guards: str = "[internet]", smtp=None,
                 threshold: int = 3, restore: str | None = None,
                 engage: str | None = None) -> Path:
    (tmp_path / "lock").mkdir(exist_ok=True)
    notify = ""
    if smtp is not None:
        notify = f"""\
notify:
  email:
    smtp: {{host: 127.0.0.1, port: {smtp.port}}}
    from: engine@truth.test
    to: [admins@truth.test]
    subject: truth
"""
    restore = restore or f"  - lock: {{state: absent, file: {tmp_path}/lock/engaged}}\n"
    engage = engage or f"  - lock: {{state: present, file: {tmp_path}/lock/engaged}}\n"
    text = f"""\
version: 1
name: truth
state_dir: state
{notify}probes:
{textwrap.indent(textwrap.dedent(probes).strip(), "  ")}
monitor:
  target: production
  guards: {guards}
  interval: 1s
  failures_to_engage: {threshold}
  hold_down: 1h
engage:
{engage}restore:
{restore}"""
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


class Monitor:
    """`failover-engine run` as a subprocess, stopped at the end of the test."""

    def __init__(self, policy: Path) -> None:
        self.proc = subprocess.Popen([*ENGINE, "--policy", str(policy), "run"], text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return out


@pytest.fixture
def monitors() -> Iterator[list[Monitor]]:
    started: list[Monitor] = []
    yield started
    for monitor in started:
        if monitor.proc.poll() is None:
            monitor.proc.kill()
        monitor.proc.communicate(timeout=30)


def test_a_guard_answering_301_is_reachable_and_the_outage_engages(tmp_path, http_server,
                                                                    monitors, smtp_sink):
    http_server.set_route("/", 301, "moved")  # as http://google.co.uk/ answers
    policy = write_policy(tmp_path, f"""
        production:
          tcp: {{host: 127.0.0.1, port: {closed_port()}, timeout: 1s}}
        internet:
          http: {{url: "{http_server.url('/')}", timeout: 2s}}
    """, smtp=smtp_sink)
    monitor = Monitor(policy)
    monitors.append(monitor)
    wait_until(lambda: state_of(tmp_path).get("state") == "engaged", what="the engage")
    status = json.loads(cli(policy, "status", "--json").stdout)
    assert status["probes"]["internet"]["ok"] is True
    assert status["probes"]["internet"]["detail"] == "HTTP 301 (reachable)"
    assert status["disarmed"] is None
    # Once engaged the count stops at the threshold; the text shows how long it is down.
    engaged_at = state_of(tmp_path)["cycles"]
    wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= engaged_at + 4,
               what="cycles while engaged")
    assert state_of(tmp_path)["failures"] == 3
    text = cli(policy, "status").stdout
    assert "production down for " in text and "failures:" not in text
    check = cli(policy, "check", "engine")
    assert check.returncode == 1 and "production down for" in check.stdout
    # The mails say what status says: the count while counting, then how long it is down.
    smtp_sink.wait_for(3)
    bodies = {m["Subject"]: m.get_content() for m in smtp_sink.messages}
    engaged = [b for s, b in bodies.items() if "] ENGAGED: " in s]
    assert engaged and "failures: 3/3" in engaged[0] and "down since: 20" in engaged[0], bodies
    # One warning at half the threshold (2 of 3), not a mail per failed probe.
    warning = [b for s, b in bodies.items() if "] WARNING: " in s and s.endswith("(2/3)")]
    assert len(warning) == 1 and "failures: 2/3" in warning[0], bodies
    log = monitor.stop()
    assert "suspect → suspect" not in log
    assert "failed (4/3)" not in log and "down for" in log


def test_an_always_failing_guard_disarms_the_failover(tmp_path, listener, smtp_sink, monitors):
    policy = write_policy(tmp_path, f"""
        production:
          tcp: {{host: 127.0.0.1, port: {listener}, timeout: 1s}}
        internet:
          tcp: {{host: 127.0.0.1, port: {closed_port()}, timeout: 1s}}
    """, smtp=smtp_sink)
    monitor = Monitor(policy)
    monitors.append(monitor)
    wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= 1, what="the first cycle")
    first = cli(policy, "check", "engine")
    assert first.returncode == 0, first.stdout  # one failed guard cycle is not yet disarmed
    wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= DISARM_AFTER,
               what=f"{DISARM_AFTER} cycles")
    check = cli(policy, "check", "engine")
    assert check.returncode == 1, check.stdout
    assert "ENGINE WARNING" in check.stdout
    assert "the failover is disarmed: every guard (internet)" in check.stdout
    status = json.loads(cli(policy, "status", "--json").stdout)
    assert status["disarmed"].startswith("every guard (internet) failed 3 cycles")
    assert "failover_engine_disarmed{policy=\"truth\"} 1" in \
        (tmp_path / "state" / "metrics.prom").read_text()
    wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= DISARM_AFTER + 4,
               what="more cycles")
    smtp_sink.wait_for(1)
    disarmed = [m for m in smtp_sink.messages if "DISARMED" in m["Subject"]]
    assert len(disarmed) == 1  # mailed once, not every cycle
    log = monitor.stop()
    assert log.count("warning engine.disarmed:") == 1


def test_a_vanished_client_certificate_disarms_and_days_left_are_reported(
        tmp_path, https_server, pki, http_server, monitors):
    https_server.set_route("/health", 200, "OK")
    cert = tmp_path / "client.pem"
    shutil.copy(pki.client.cert, cert)
    policy = write_policy(tmp_path, f"""
        production:
          http:
            url: {https_server.url('/health')}
            client_cert: {cert}
            client_key: {pki.client.key}
            ca_file: {pki.ca.cert}
            timeout: 2s
        internet:
          http: {{url: "{http_server.url('/')}", timeout: 2s}}
    """)
    monitor = Monitor(policy)
    monitors.append(monitor)
    wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= 1, what="the first cycle")
    status = json.loads(cli(policy, "status", "--json").stdout)
    days = status["probes"]["production"]["cert_days_left"]
    assert 0 < days < 3  # the test PKI's certificates last two days
    assert "client certificate: " in cli(policy, "status").stdout
    metrics = (tmp_path / "state" / "metrics.prom").read_text()
    assert 'failover_engine_client_cert_days_left{policy="truth",probe="production"}' in metrics
    assert cli(policy, "check", "engine").returncode == 1  # under the default 14 days
    relaxed = cli(policy, "check", "engine", "--cert-warning", "1h")
    assert relaxed.returncode == 0, relaxed.stdout
    assert "cert_days_left=" in relaxed.stdout

    cert.unlink()
    wait_until(lambda: bool(state_of(tmp_path).get("disarmed")), what="disarmed")
    check = cli(policy, "check", "engine", "--cert-warning", "1h")
    assert check.returncode == 1
    assert "the failover is disarmed: the target probe production cannot run" in check.stdout
    assert str(cert) in check.stdout
    # Our own certificate failing says nothing about production: nothing is counted.
    cycles = state_of(tmp_path)["cycles"]
    wait_until(lambda: state_of(tmp_path)["cycles"] >= cycles + 4, what="more cycles")
    assert (state_of(tmp_path)["state"], state_of(tmp_path)["failures"]) == ("watching", 0)
    assert "cannot run" in state_of(tmp_path)["last_outcome"]
    shutil.copy(pki.client.cert, cert)
    wait_until(lambda: state_of(tmp_path).get("disarmed") is None, what="armed again")
    assert "engine.rearmed" in monitor.stop()


def test_refusals_exit_1_with_the_reason_on_stderr(tmp_path, listener, monitors):
    policy = write_policy(tmp_path, f"""
        production:
          tcp: {{host: 127.0.0.1, port: {listener}, timeout: 1s}}
    """, guards="[]")
    never = cli(policy, "status")
    assert "state: never run" in never.stdout
    restore = cli(policy, "restore")
    assert restore.returncode == 1
    assert "cannot restore from state watching" in restore.stderr
    assert cli(policy, "engage", "--now").returncode == 0
    again = cli(policy, "engage", "--now")
    assert again.returncode == 1 and "cannot engage from state engaged" in again.stderr
    assert again.stderr.count("cannot engage") == 1  # printed once

    monitors.append(Monitor(policy))
    wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= 1, what="the first cycle")
    again = cli(policy, "engage", "--now")
    assert again.returncode == 1
    assert "waiting up to 15s for it to pick the request up" in again.stdout
    assert "the monitor refused" in again.stderr and "cannot engage" in again.stderr


def test_reset_clears_the_count_and_says_so(tmp_path, listener):
    policy = write_policy(tmp_path, f"""
        production:
          tcp: {{host: 127.0.0.1, port: {listener}, timeout: 1s}}
    """, guards="[]", engage="  - command: {argv: [/bin/false]}\n")
    failed = cli(policy, "engage", "--now")
    assert failed.returncode == 1 and state_of(tmp_path)["state"] == "aborted"
    data = json.loads((tmp_path / "state" / "state.json").read_text())
    data["failures"] = 2  # production failed twice meanwhile
    (tmp_path / "state" / "state.json").write_text(json.dumps(data))
    reset = cli(policy, "reset")
    assert reset.returncode == 0, reset.stderr
    assert "state: watching; failure count cleared (was 2/3)" in reset.stdout
    assert state_of(tmp_path)["failures"] == 0


def test_a_restore_following_a_monitor_that_dies_exits_1(tmp_path, listener, monitors):
    marker = tmp_path / "restore-started"
    policy = write_policy(tmp_path, f"""
        production:
          tcp: {{host: 127.0.0.1, port: {listener}, timeout: 1s}}
    """, guards="[]", restore=(f"  - command: {{argv: [/usr/bin/touch, {marker}]}}\n"
                               "  - command: {argv: [/bin/sleep, '20']}\n"))
    assert cli(policy, "engage", "--now").returncode == 0
    monitor = Monitor(policy)
    monitors.append(monitor)
    wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= 1, what="the first cycle")
    restore = subprocess.Popen([*ENGINE, "--policy", str(policy), "restore"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(marker.exists, what="the restore's first step")
        wait_until(lambda: len((state_of(tmp_path).get("run") or {}).get("steps") or {}) >= 1,
                   what="the first step in the journal")
        monitor.proc.send_signal(signal.SIGKILL)
        out, err = restore.communicate(timeout=30)
    finally:
        if restore.poll() is None:
            restore.kill()
    assert restore.returncode == 1, out + err
    assert "waiting up to 2m for the monitor to finish the restore" in out
    assert f"the monitor (pid {monitor.proc.pid}, run" in err
    assert "stopped before it answered the restore request" in err
    assert "reached state restoring" in err and "1 steps done" in err


def test_a_failed_jobs_error_is_printed_once(tmp_path, listener):
    policy = write_policy(tmp_path, f"""
        production:
          tcp: {{host: 127.0.0.1, port: {listener}, timeout: 1s}}
    """, guards="[]")
    policy.write_text(policy.read_text() + f"""\
jobs:
  tick:
    status_log: {tmp_path}/tick.log
    steps:
      - command: {{argv: ["/bin/false"]}}
""")
    job = cli(policy, "job", "tick")
    assert job.returncode == 1
    terminal = job.stdout + job.stderr
    assert terminal.count("exited 1 (expected 0)") == 1, terminal
    assert "job tick: ERROR: step 1 (command) failed" in job.stdout
    assert "exited 1 (expected 0)" in (tmp_path / "tick.log").read_text()  # the full reason
    (tmp_path / "lock" / "engaged").write_text("")
    refused = cli(policy, "job", "tick")
    assert refused.returncode == 1
    terminal = refused.stdout + refused.stderr
    assert terminal.count("refused:") == 1, terminal
