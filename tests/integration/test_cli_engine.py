"""End to end through the CLI as a subprocess, against a real HTTPS production and SMTP sink.

- `run` with a 0.2 s interval engages after the threshold once production stops;
- a second `run` on the same policy is refused; `status --json` shows the state;
- `restore` while the monitor runs goes through its request and re-arms; a `reset` the
  monitor refuses is exit 1 with its reason;
- `engage --now` / `restore` without a monitor;
- SIGKILL in the middle of engage at every step boundary, then start again: the end
  state equals an uninterrupted run, and no step completes twice.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import REPO, wait_until

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]


def cli(policy: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "--policy", str(policy), *args], capture_output=True,
                          text=True, timeout=timeout)


def state_of(policy_dir: Path) -> dict:
    try:
        return json.loads((policy_dir / "state" / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def write_policy(tmp_path: Path, prod, smtp, engage: str | None = None) -> Path:
    (tmp_path / "cron.d").mkdir(exist_ok=True)
    (tmp_path / "cron.d" / "refresh").write_text("17 * * * * root true\n")
    pki = prod.pki
    engage = engage or """\
      - notify: {message: "engaging on purpose"}
      - disable_cron: {file: cron.d/refresh}
      - lock: {state: present}
    """
    text = f"""\
    version: 1
    name: e2e
    state_dir: state
    notify:
      email:
        smtp: {{host: 127.0.0.1, port: {smtp.port}}}
        from: engine@e2e.test
        to: [admins@e2e.test]
        subject: e2e
    probes:
      production:
        http:
          url: {prod.server.url('/health')}
          client_cert: {pki.client.cert}
          client_key: {pki.client.key}
          ca_file: {pki.ca.cert}
          timeout: 1s
    monitor:
      target: production
      interval: 200ms
      failures_to_engage: 3
      hold_down: 1h
    engage:
      ENGAGE_STEPS
    restore:
      - enable_cron: {{file: cron.d/refresh}}
      - lock: {{state: absent}}
    """
    path = tmp_path / "policy.yaml"
    steps = textwrap.indent(textwrap.dedent(engage).strip("\n"), "  ")
    path.write_text(textwrap.dedent(text).replace("ENGAGE_STEPS", steps.lstrip()))
    return path


class Production:
    """The real HTTPS production (client certificate required) and the PKI it trusts."""

    def __init__(self, server, pki):
        self.server, self.pki = server, pki


@pytest.fixture
def prod(https_server, pki):
    https_server.set_route("/health", 200, "OK")
    return Production(https_server, pki)


def test_run_engages_after_threshold_and_restores_through_the_monitor(tmp_path, prod, smtp_sink):
    policy = write_policy(tmp_path, prod, smtp_sink)
    monitor = subprocess.Popen([*ENGINE, "--policy", str(policy), "run"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: state_of(tmp_path).get("cycles", 0) >= 2, what="two cycles")
        assert state_of(tmp_path)["state"] == "watching"

        second = cli(policy, "run", timeout=20)
        assert second.returncode == 1
        assert "another failover-engine holds this policy's lock" in second.stderr
        assert "Traceback" not in second.stderr

        prod.server.stop()
        wait_until(lambda: state_of(tmp_path).get("state") == "engaged", what="the engage")
        assert (tmp_path / "state" / "engage.lock").exists()
        assert not (tmp_path / "cron.d" / "refresh").exists()
        smtp_sink.wait_for(3)
        subjects = [m["Subject"] for m in smtp_sink.messages]
        assert any("engaging" in s for s in subjects) and any(" ENGAGED: " in s for s in subjects)
        assert any("engaging on purpose" in m.get_content() for m in smtp_sink.messages)

        status = cli(policy, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["state"] == "engaged"

        prod.server.start()
        restore = cli(policy, "restore")
        assert restore.returncode == 0, restore.stdout + restore.stderr
        assert "asked it to restore" in restore.stdout
        assert "state: watching" in restore.stdout  # the monitor's reply, not a guess
        wait_until(lambda: state_of(tmp_path).get("state") == "watching", what="the restore")

        # The monitor refuses a reset from watching: the reply's reason, exit 1.
        reset = cli(policy, "reset")
        assert reset.returncode == 1, reset.stdout + reset.stderr
        assert "asked it to reset" in reset.stdout
        assert "the monitor refused" in reset.stderr
        assert "cannot reset from state watching" in reset.stderr
        assert list((tmp_path / "state" / "requests").iterdir()) == []  # replies collected
        assert (tmp_path / "cron.d" / "refresh").exists()
        assert not (tmp_path / "state" / "engage.lock").exists()
        assert state_of(tmp_path)["hold_down_until"]
    finally:
        monitor.send_signal(signal.SIGTERM)
        out, _ = monitor.communicate(timeout=20)
    assert monitor.returncode == 0, out
    assert "Traceback" not in out
    assert "probe production failed (1/3)" in out
    assert "probe production failed (3/3)" in out


def test_engage_now_and_restore_without_a_monitor(tmp_path, prod, smtp_sink):
    policy = write_policy(tmp_path, prod, smtp_sink)
    engage = cli(policy, "engage", "--now")
    assert engage.returncode == 0, engage.stdout + engage.stderr
    assert "state: engaged" in engage.stdout
    assert (tmp_path / "state" / "engage.lock").exists()

    again = cli(policy, "engage", "--now")
    assert again.returncode == 1
    assert "cannot engage from state engaged" in again.stderr

    restore = cli(policy, "restore")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert state_of(tmp_path)["state"] == "watching"
    assert (tmp_path / "cron.d" / "refresh").exists()

    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert [a["kind"] for a in audit if a["outcome"] == "changed"] == [
        "notify", "disable_cron", "lock", "enable_cron", "lock"]


def test_engage_stops_at_a_failing_step_and_reset_needs_an_operator(tmp_path, prod, smtp_sink):
    policy = write_policy(tmp_path, prod, smtp_sink, engage="""\
      - disable_cron: {file: cron.d/refresh}
      - command: {argv: ["false"]}
      - lock: {state: present}
    """)
    engage = cli(policy, "engage", "--now")
    assert engage.returncode == 1
    assert "aborted" in engage.stdout
    assert state_of(tmp_path)["state"] == "aborted"
    assert not (tmp_path / "state" / "engage.lock").exists()  # stopped before the lock step
    status = cli(policy, "status")
    assert "aborted" in status.stdout
    reset = cli(policy, "reset")
    assert reset.returncode == 0 and state_of(tmp_path)["state"] == "watching"


GATED_STEP = """\
import pathlib, sys, time
k, folder = sys.argv[1], pathlib.Path(sys.argv[2])
(folder / f"waiting-{k}").touch()
while not (folder / f"gate-{k}").exists():
    time.sleep(0.02)
with open(folder / "completed", "a") as log:
    log.write(k + "\\n")
(folder / f"done-{k}").touch()
"""

IS_DONE = "import pathlib, sys; sys.exit(0 if pathlib.Path(sys.argv[1]).exists() else 1)"


@pytest.mark.parametrize("kill_at", [0, 1, 2])
def test_sigkill_mid_engage_resumes_without_repeating_a_step(tmp_path, prod, smtp_sink, kill_at):
    gates = tmp_path / "gates"
    gates.mkdir()
    script = tmp_path / "gated.py"
    script.write_text(GATED_STEP)
    steps = "".join(
        f"  - command: {{argv: [{sys.executable}, {script}, '{k}', {gates}], "
        f"check: [{sys.executable}, -c, '{IS_DONE}', {gates}/done-{k}]}}\n"
        for k in range(3))
    policy = write_policy(tmp_path, prod, smtp_sink,
                          engage=steps + "  - lock: {state: present}\n")
    for k in range(kill_at):
        (gates / f"gate-{k}").touch()
    engine = subprocess.Popen([*ENGINE, "--policy", str(policy), "engage", "--now"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    wait_until(lambda: (gates / f"waiting-{kill_at}").exists(), what=f"step {kill_at} to block")
    os.killpg(engine.pid, signal.SIGKILL)  # the engine and the step it runs die together
    engine.wait(timeout=10)
    assert state_of(tmp_path)["state"] == "engaging"

    for k in range(3):
        (gates / f"gate-{k}").touch()
    again = cli(policy, "engage", "--now")
    assert again.returncode == 0, again.stdout + again.stderr
    assert state_of(tmp_path)["state"] == "engaged"
    assert (gates / "completed").read_text().split() == ["0", "1", "2"]
    assert (tmp_path / "state" / "engage.lock").exists()
    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    changed = [a["step"] for a in audit if a["outcome"] == "changed"]
    assert changed == ["engage step 1", "engage step 2", "engage step 3", "engage step 4"]


def test_bad_policy_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: [oops\n")
    result = cli(bad, "run", timeout=20)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(bad) in result.stderr
