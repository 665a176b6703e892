"""Issue 10 case 3: `systemctl stop` (SIGTERM) during restore's wait_dns, then a restart.

The monitor (`run`) runs the restore an operator asked for; its wait_dns waits on a real
primary and secondary for the alias to read as expected. SIGTERM stops the monitor in the
middle of that wait: the restore is interrupted (state `restoring`, the wait's progress
journalled), not aborted, and the next `run` resumes the wait and finishes the restore.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actions.nsupdate import NsUpdate
from engine.drillkit.named import DnsLab
from tests.fixtures.bind import PROD, STANDBY
from tests.support import REPO, step_context, wait_until

pytestmark = pytest.mark.integration

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]
NAME = "goc.example.test."


def state(tmp_path: Path) -> dict[str, Any]:
    try:
        return json.loads((tmp_path / "state" / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def waiting(tmp_path: Path) -> bool:
    run = state(tmp_path).get("run") or {}
    progress = (run.get("progress") or {}).get("0") or {}
    return state(tmp_path).get("state") == "restoring" and "started" in progress


def test_sigterm_during_restore_wait_dns_resumes_after_restart(tmp_path, dns_lab: DnsLab):
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({
        "version": 1, "name": "resume", "state_dir": "state",
        "probes": {"production": {"tcp": {"host": "127.0.0.1",
                                          "port": int(dns_lab.servers[0].split(":")[1])}}},
        "monitor": {"target": "production", "interval": "10s", "failures_to_engage": 3},
        "engage": [{"lock": {"state": "present"}}],
        "restore": [{"wait_dns": {"name": NAME, "expect": STANDBY, "servers": dns_lab.servers,
                                  "interval": "200ms", "settle": "0s"}},
                    {"lock": {"state": "absent"}}],
    }))
    engage = subprocess.run([*ENGINE, "--policy", str(policy), "engage", "--now"],
                            capture_output=True, text=True, timeout=60)
    assert engage.returncode == 0, engage.stdout + engage.stderr

    first_log = tmp_path / "run1.log"
    with open(first_log, "w") as out:
        monitor = subprocess.Popen([*ENGINE, "--policy", str(policy), "run"], text=True,
                                   stdout=out, stderr=subprocess.STDOUT)
    asker = None
    try:
        wait_until(lambda: "monitoring" in first_log.read_text(), what="the monitor to start")
        asker = subprocess.Popen([*ENGINE, "--policy", str(policy), "restore"], text=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: waiting(tmp_path), timeout=60, what="the restore's wait_dns")
        monitor.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
        assert monitor.wait(60) == 0, first_log.read_text()
    finally:
        for proc in (monitor, asker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    text = first_log.read_text()
    assert "Traceback" not in text, text
    saved = state(tmp_path)
    assert saved["state"] == "restoring", text  # interrupted, not aborted
    assert not saved.get("aborted_reason")
    assert saved["run"]["phase"] == "restore" and "0" not in saved["run"]["steps"]
    assert not saved["run"].get("failed")
    started = saved["run"]["progress"]["0"]["started"]

    # The alias now reads as the wait expects; the restarted monitor resumes the wait.
    ctx = step_context(tmp_path, secret=dns_lab.update_key_file)
    NsUpdate({"server": dns_lab.primary.address, "zone": "example.test", "name": NAME,
              "expect": PROD, "set": STANDBY, "key": "tsig"}).apply(ctx)
    second_log = tmp_path / "run2.log"
    with open(second_log, "w") as out:
        monitor = subprocess.Popen([*ENGINE, "--policy", str(policy), "run"], text=True,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: state(tmp_path).get("state") == "watching", timeout=60,
                   what="the resumed restore to finish")
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(60)
    text = second_log.read_text()
    assert "resuming the wait begun at" in text, text
    assert "Traceback" not in text
    assert not (tmp_path / "state" / "engage.lock").exists()
    last = state(tmp_path)["last_run"]
    assert last["phase"] == "restore" and last["ok"] is True
    assert started  # the first run's progress was what the second one resumed
    assert os.path.exists(policy)
