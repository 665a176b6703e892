"""Issue 10 case 3: a full disk during engage and during a job, for real.

The state directory lives on a small tmpfs (mounted by the test: root only, as on the
CI host; elsewhere the test is skipped, or fails under FAILOVER_REQUIRE_SERVERS=1), and
the disk fills the way it does in production: a program writes until the kernel says
ENOSPC. Engage then stops with one line (never a traceback), and once there is room
again it resumes at its first unfinished step; a job fails with its outcome in the
status log (which lives on another filesystem, as /var/log does).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

pytestmark = pytest.mark.integration

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]
# Writes into the small filesystem until ENOSPC, once (a flag file outside says it did).
FILL = ("import errno, sys, pathlib\n"
        "flag, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
        "if flag.exists(): sys.exit(0)\n"
        "flag.write_text('filled')\n"
        "with open(target, 'wb', buffering=0) as out:\n"
        "    try:\n"
        "        while True:\n"
        "            out.write(b'x' * 4096)\n"
        "    except OSError as exc:\n"
        "        assert exc.errno == errno.ENOSPC, exc\n")


def cli(policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "--policy", str(policy), *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs at tmp_path/small, unmounted afterwards."""
    if os.geteuid() != 0:
        if os.environ.get("FAILOVER_REQUIRE_SERVERS") == "1":
            pytest.fail("the disk-full tests mount a tmpfs and need root")
        pytest.skip("the disk-full tests mount a tmpfs and need root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def write_policy(tmp_path: Path, state_dir: Path, engage: list[dict[str, Any]],
                 jobs: dict[str, Any] | None = None) -> Path:
    """The policy as JSON (which is YAML)."""
    policy = {
        "version": 1, "name": "diskfull", "state_dir": str(state_dir),
        "probes": {"production": {"tcp": {"host": "127.0.0.1", "port": 9}}},
        "monitor": {"target": "production", "interval": "10s", "failures_to_engage": 3},
        "engage": engage, "restore": [{"lock": {"state": "absent"}}],
    }
    if jobs:
        policy["jobs"] = jobs
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps(policy, indent=1))
    return path


def fill_step(tmp_path: Path, small: Path) -> dict[str, Any]:
    return {"command": {"argv": [sys.executable, "-c", FILL, f"{tmp_path}/filled.flag",
                                 f"{small}/filler"]}}


def test_disk_full_during_engage_aborts_with_one_line_and_resumes(tmp_path, small_fs):
    state_dir = small_fs / "state"
    second = tmp_path / "second.lock"
    policy = write_policy(tmp_path, state_dir, [
        {"lock": {"state": "present"}}, fill_step(tmp_path, small_fs),
        {"lock": {"state": "present", "file": str(second)}}])
    engage = cli(policy, "engage", "--now")
    assert engage.returncode == 1, engage.stdout + engage.stderr
    output = engage.stdout + engage.stderr
    assert "No space left on device" in output and "engage stopped" in output, output
    assert "Traceback" not in output and "internal error" not in output, output
    assert len([line for line in engage.stderr.splitlines() if "engage stopped" in line]) == 1
    assert not second.exists()  # the run stopped where the disk filled
    saved = json.loads((state_dir / "state.json").read_text())
    assert saved["state"] in ("engaging", "aborted")  # whichever the full disk let it write
    assert saved["run"]["steps"].get("0")  # the lock step is journalled as done

    (small_fs / "filler").unlink()  # room again
    if saved["state"] == "aborted":
        assert cli(policy, "reset").returncode == 0
    again = cli(policy, "engage", "--now")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((state_dir / "state.json").read_text())["state"] == "engaged"
    assert second.exists()
    audit = [json.loads(line) for line in (state_dir / "audit.jsonl").read_text().splitlines()]
    created = [e for e in audit if e["kind"] == "lock" and e["outcome"] == "changed"
               and str(state_dir / "engage.lock") in e["summary"]]
    assert len(created) == 1  # the resumed run did not create the first lock again


def test_disk_already_full_refuses_engage_with_one_line(tmp_path, small_fs):
    state_dir = small_fs / "state"
    policy = write_policy(tmp_path, state_dir, [{"lock": {"state": "present"}}])
    state_dir.mkdir(mode=0o700)
    subprocess.run([sys.executable, "-c", FILL, str(tmp_path / "flag"), str(small_fs / "f")],
                   check=True)
    engage = cli(policy, "engage", "--now")
    output = engage.stdout + engage.stderr
    assert engage.returncode == 1, output
    assert "No space left on device" in output and "Traceback" not in output, output
    assert "internal error" not in output, output
    assert not (state_dir / "engage.lock").exists()
    (small_fs / "f").unlink()
    assert cli(policy, "engage", "--now").returncode == 0


def test_disk_full_during_a_job_fails_with_the_outcome_recorded(tmp_path, small_fs):
    state_dir = small_fs / "state"
    log = tmp_path / "refresh.log"
    policy = write_policy(tmp_path, state_dir, [{"lock": {"state": "present"}}], {
        "refresh": {"status_log": str(log), "work_dir": f"{small_fs}/work",
                    "steps": [fill_step(tmp_path, small_fs),
                              {"command": {"argv": ["/bin/true"]}}]}})
    job = cli(policy, "job", "refresh")
    output = job.stdout + job.stderr
    assert job.returncode == 1, output
    assert "No space left on device" in output and "Traceback" not in output, output
    assert "internal error" not in output, output
    last = log.read_text().splitlines()[-1]
    assert " ERROR: " in last and "No space left on device" in last
    (small_fs / "filler").unlink()
    (tmp_path / "filled.flag").unlink()
    (tmp_path / "filled.flag").write_text("once is enough")
    again = cli(policy, "job", "refresh")
    assert again.returncode == 0, again.stdout + again.stderr
    assert log.read_text().splitlines()[-1].endswith("INFO: completed ok")
