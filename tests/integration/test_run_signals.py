"""The monitor as a subprocess: SIGTERM mid-cycle, SIGHUP with a broken and a good policy."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from tests.support import REPO, wait_until

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]
STOP_TIMEOUT = 30  # the unit's TimeoutStopSec


def policy_text(url: str, failures: int, timeout: str = "1s") -> str:
    return f"""\
version: 1
name: signals
state_dir: state
probes:
  production:
    http: {{url: "{url}", timeout: {timeout}}}
monitor:
  target: production
  interval: 200ms
  failures_to_engage: {failures}
engage:
  - lock: {{state: present}}
restore:
  - lock: {{state: absent}}
"""


def cycles(tmp_path: Path) -> int:
    try:
        return json.loads((tmp_path / "state" / "state.json").read_text()).get("cycles", 0)
    except (OSError, ValueError):
        return 0


class Silent:
    """A TCP server that accepts and never answers: a probe against it hangs until its timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def test_sigterm_during_a_probe_cycle_exits_cleanly(tmp_path):
    silent = Silent()
    try:
        policy = tmp_path / "p.yaml"
        policy.write_text(policy_text(f"http://127.0.0.1:{silent.port}/", 50, timeout="3s"))
        proc = subprocess.Popen([*ENGINE, "--policy", str(policy), "run"], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_until(lambda: len(silent.accepted) >= 1, what="a probe to hang")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=STOP_TIMEOUT)
    finally:
        silent.close()
    assert proc.returncode == 0, out
    assert "SIGTERM: stopping after the current step" in out
    assert "monitor stopped" in out
    assert "Traceback" not in out
    # the lock is released: a new engine can start at once
    assert subprocess.run([*ENGINE, "--policy", str(policy), "status"],
                          capture_output=True, timeout=30).returncode == 0


def test_sighup_keeps_the_old_policy_when_the_new_one_is_broken_and_applies_a_good_one(
        tmp_path, http_server):
    policy = tmp_path / "p.yaml"
    url = http_server.url("/")
    policy.write_text(policy_text(url, 5))
    proc = subprocess.Popen([*ENGINE, "--policy", str(policy), "run"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: cycles(tmp_path) >= 2, what="two cycles")
        policy.write_text("version: 1\nname: [broken\n")
        proc.send_signal(signal.SIGHUP)
        before = cycles(tmp_path)
        wait_until(lambda: cycles(tmp_path) >= before + 3, what="cycles after a bad SIGHUP")

        policy.write_text(policy_text(url, 7))
        http_server.stop()
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "(1/7)" in (json.loads(
            (tmp_path / "state" / "state.json").read_text()).get("last_outcome") or ""),
            what="the reloaded threshold in the outcome line")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=STOP_TIMEOUT)
    assert "SIGHUP: the new policy does not validate; keeping the old one" in out
    assert "SIGHUP: policy signals reloaded" in out
    assert "Traceback" not in out
