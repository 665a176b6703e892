"""The `check` commands run as an unprivileged user (NRPE's), as docs/operations.md shows.

install --check-group makes what the checks read readable by that group; then `check
engine` and `check dump-age` answer as `nobody` (group nogroup) without root. Without it
the same checks say UNKNOWN (a permission problem is not a verdict on the engine), never
CRITICAL or OK.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.state import EngineState, StateStore, isotime
from engine.statuslog import format_outcome
from tests.support import REPO

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]

POLICY = """\
version: 1
name: nrpe
state_dir: {base}/srv/fe/state
probes:
  production:
    tcp: {{host: 127.0.0.1, port: 9}}
monitor:
  target: production
  interval: 10m
  failures_to_engage: 3
engage:
  - lock: {{state: present, file: {base}/srv/fe/state/engaged}}
restore:
  - lock: {{state: absent, file: {base}/srv/fe/state/engaged}}
jobs:
  import:
    schedule: "17 * * * *"
    status_log: {base}/srv/fe/log/import.log
    steps:
      - command: {{argv: ["/bin/true"]}}
"""


@pytest.fixture
def nobody() -> tuple[int, int]:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    try:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no nobody/nogroup on this host")


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory nobody can enter (pytest's tmp_path is under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="failover-nrpe-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def nobody_can_run(path: str) -> bool:
    """Whether every directory on the way to the interpreter lets others through."""
    real = Path(os.path.realpath(path))
    return all(p.stat().st_mode & 0o001 for p in real.parents) and bool(
        real.stat().st_mode & 0o001)


def as_nobody(ids: tuple[int, int], *argv: str) -> subprocess.CompletedProcess[str]:
    uid, gid = ids
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    command = [*ENGINE, *argv]
    if not nobody_can_run(sys.executable):
        # This machine's venv interpreter lives under /root (pyenv): run the launcher with
        # the system python3 and the venv's packages instead, as a venv built from it would.
        import sysconfig

        env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
        command = ["/usr/bin/python3", str(REPO / "bin" / "failover-engine"), *argv]

    def drop() -> None:
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)

    return subprocess.run(command, capture_output=True, text=True, cwd="/", env=env,
                          preexec_fn=drop, timeout=60)


def staged(base: Path, *, check_group: bool) -> tuple[Path, Path]:
    """Install the policy under base/root (with or without --check-group), then let the
    engine and the import job write what they write. Returns (policy as installed,
    the same policy with base/root prefixed: what runs on the host)."""
    root = base / "root"
    root.mkdir(mode=0o755)
    installed = base / "installed.yaml"
    installed.write_text(POLICY.format(base=""))
    live = base / "live.yaml"
    live.write_text(POLICY.format(base=root))
    live.chmod(0o644)
    argv = ["--policy", str(installed), "install", "--root", str(root)]
    if check_group:
        argv += ["--check-group", "nogroup"]
    done = subprocess.run([*ENGINE, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    state_dir = root / "srv/fe/state"
    store = StateStore(state_dir)
    with store.hold("run"):  # the monitor's lock file, as `run` leaves it
        store.save(EngineState(cycles=1, last_cycle=isotime(), last_outcome="probe ok"))
    log = root / "srv/fe/log/import.log"
    with open(log, "a") as handle:  # what the import job appends
        handle.write(format_outcome(True) + "\n")
    return installed, live


def test_checks_run_as_nobody_after_install_with_check_group(base, nobody):
    _, live = staged(base, check_group=True)
    state_dir = base / "root/srv/fe/state"
    assert state_dir.stat().st_gid == nobody[1] and state_dir.stat().st_mode & 0o7777 == 0o2750
    assert (state_dir / "state.json").stat().st_mode & 0o777 == 0o640
    assert (state_dir / "state.json").stat().st_gid == nobody[1]  # setgid directory
    engine = as_nobody(nobody, "--policy", str(live), "check", "engine")
    assert engine.returncode == 0, engine.stdout + engine.stderr
    assert engine.stdout.startswith("ENGINE OK - policy nrpe watching")
    age = as_nobody(nobody, "--policy", str(live), "check", "dump-age")
    assert age.returncode == 0, age.stdout + age.stderr
    assert age.stdout.startswith("DUMP-AGE OK: last import completed ok")
    # Nothing secret became readable: the spool and requests stay private.
    for private in ("spool", "requests"):
        path = state_dir / private
        if path.exists():
            assert path.stat().st_mode & 0o077 == 0


def test_without_check_group_permission_problems_are_unknown(base, nobody):
    _, live = staged(base, check_group=False)
    engine = as_nobody(nobody, "--policy", str(live), "check", "engine")
    assert engine.returncode == 3, engine.stdout + engine.stderr
    assert engine.stdout.startswith("ENGINE UNKNOWN")
    assert "check-group" in engine.stdout
    age = as_nobody(nobody, "--policy", str(live), "check", "dump-age",
                    "--log", str(base / "root/srv/fe/log/import.log"))
    assert age.returncode == 3, age.stdout + age.stderr
    assert age.stdout.startswith("DUMP-AGE UNKNOWN") and "check-group" in age.stdout
