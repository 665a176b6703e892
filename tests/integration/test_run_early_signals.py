"""`run` installs its signal handlers first (issue 10 case 10): a SIGTERM or SIGHUP that
arrives while it is still loading its policy stops it cleanly or is honoured later, instead
of killing it silently (the default action of both signals).

The first two tests make the signal arrive exactly while the policy loads: a wrapper
replaces `engine.commands.load` with one that signals its own process first (before the
fix, that killed `run` with -SIGTERM). The last two send it as soon as /proc shows the
process catching SIGTERM, while it loads a large policy.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]


def _policy(tmp_path: Path) -> Path:
    steps = "".join(f"  - lock: {{state: present, label: l{i}}}\n" for i in range(1500))
    path = tmp_path / "p.yaml"
    path.write_text(f"""\
version: 1
name: early
state_dir: state
probes:
  production:
    tcp: {{host: 127.0.0.1, port: 9, timeout: 1s}}
monitor:
  target: production
  interval: 200ms
  failures_to_engage: 1000
engage:
{steps}restore:
  - lock: {{state: absent}}
""")
    return path


def _catches(pid: int, signum: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def _start(tmp_path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([*ENGINE, "--policy", str(_policy(tmp_path)), "run"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    while not _catches(process.pid, signal.SIGTERM):
        if process.poll() is not None:
            pytest.fail(f"run exited early: {process.communicate()}")
        time.sleep(0.001)
    return process


_WRAPPER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import engine.commands
real_load = engine.commands.load
def load(args):
    os.kill(os.getpid(), signal.{name})  # the signal arrives while the policy loads
    return real_load(args)
engine.commands.load = load
from engine.cli import main
sys.exit(main(["--policy", {policy!r}, "run"]))
"""


def _run_with_signal_during_load(tmp_path: Path, name: str) -> subprocess.Popen[str]:
    code = _WRAPPER.format(repo=str(REPO), policy=str(_policy(tmp_path)), name=name)
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigterm_during_policy_load_is_a_clean_stop(tmp_path: Path) -> None:
    process = _run_with_signal_during_load(tmp_path, "SIGTERM")
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "SIGTERM: stopping" in err and "stopped while starting" in err
    assert not (tmp_path / "state" / "engine.lock").exists()  # it never started monitoring


def test_sighup_during_policy_load_reloads_instead_of_killing(tmp_path: Path) -> None:
    process = _run_with_signal_during_load(tmp_path, "SIGHUP")
    state = tmp_path / "state" / "state.json"
    deadline = time.monotonic() + 60
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "reloaded" in err


def test_sigterm_while_starting_stops_cleanly(tmp_path: Path) -> None:
    process = _start(tmp_path)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "SIGTERM: stopping" in err
    assert "internal error" not in err


def test_sighup_while_starting_does_not_kill(tmp_path: Path) -> None:
    process = _start(tmp_path)
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    state = tmp_path / "state" / "state.json"
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # until the monitor has cycled once: the SIGHUP did not kill it
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
