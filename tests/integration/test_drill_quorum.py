"""`failover-engine drill --quorum` (issue 14): S1–S3 on a real 3-member etcd and three
observer `run` processes, through the CLI; and the one line without etcd."""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, require_binary

pytestmark = pytest.mark.integration

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]


def _running_under(work: str) -> list[bytes]:
    """Command lines of live processes naming the drill's temp dir (etcd members, observers)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if work.encode() in cmdline:
                found.append(cmdline)
    return found


def _drill(tmp_path: Path, path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "drill", "--quorum", *extra], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={"PATH": path, "TMPDIR": str(tmp_path), "HOME": str(tmp_path)})


def test_drill_quorum_shows_s1_to_s3_in_order_and_cleans_up(tmp_path):
    require_binary("etcd")
    result = _drill(tmp_path, "/usr/bin:/bin:/usr/sbin:/sbin")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    # One heading per scenario, in order, and one final verdict each.
    headings = re.findall(r"^(S[123]): ", output, re.M)
    assert headings == ["S1", "S2", "S3"], output
    assert re.findall(r"^(S[123]) held: ", output, re.M) == ["S1", "S2", "S3"], output
    for line in [
        "S1 held: production down → exactly one engage, by the standby",
        "S2 held: the standby cut from production only → no engage, quorum not reached (1/2)",
        "S3 held: obs2 cut from everything → it never acts and its verdict vanishes; "
        "production down → the other two engage once",
    ]:
        assert line in output, output
    for check in ["exactly one engage across the three audit logs", "it is the standby's",
                  "the leader key is the standby's", "no engage in any audit log",
                  "the standby's status says quorum not reached (1/2)",
                  "nobody holds the leader key", "exactly one engage, the standby's",
                  "obs2 never acted", "obs2's verdict is gone from the store",
                  "obs2's status says the store is unreachable"]:
        assert f"✔ {check}" in output, output
    assert "✘" not in output
    # The timeline relays what the real observers logged: the standby's refusal in S2 and
    # its leader key in S1 and S3.
    assert re.search(r"standby: the outage is prolonged, but quorum not reached \(1/2\)",
                     output)
    assert len(re.findall(r"standby: quorum reached \(\d/2\); leader key taken", output)) == 2
    assert output.rstrip().endswith("drill --quorum passed")
    # Nothing left behind: no temp dir, no etcd member or observer still running.
    assert not list(tmp_path.glob("failover-drill-quorum-*"))
    work = re.search(r"files in (\S+)", output).group(1)
    assert not _running_under(work)


def test_drill_quorum_without_etcd_is_one_line_naming_the_package(tmp_path):
    # A PATH without etcd (the launcher and its .venv are found by absolute path).
    result = _drill(tmp_path, str(tmp_path / "empty"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "etcd-server" in lines[0] and "bin/bootstrap" in lines[0]
    assert not list(tmp_path.glob("failover-drill-quorum-*"))  # nothing was started


def test_plain_drill_help_mentions_quorum(tmp_path):
    result = subprocess.run([*ENGINE, "drill", "--help"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0
    text = re.sub(r"-\s+", "-", " ".join(result.stdout.split()))  # argparse breaks at "-"
    assert "--quorum" in text and "etcd-server" in text and "quorum not reached (1/2)" in text


def test_drill_quorum_stopped_by_sigterm_leaves_nothing_behind(tmp_path):
    require_binary("etcd")
    proc = subprocess.Popen([*ENGINE, "drill", "--quorum"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                                 "TMPDIR": str(tmp_path), "HOME": str(tmp_path)})
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # until the observers of S1 run
        lines.append(line)
        if "three observers cycling" in line:
            break
    work = re.search(r"files in (\S+)", "".join(lines)).group(1)
    assert (Path(work) / "s1").is_dir()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(60) == 128 + signal.SIGTERM, "".join(lines) + rest
    assert "Traceback" not in rest
    assert not Path(work).exists()
    assert not _running_under(work)


def test_a_scenario_that_does_not_hold_fails_the_drill_naming_it(tmp_path, monkeypatch,
                                                                  capsys):
    # The world is real (etcd, production); the scenarios are replaced so that S1 holds,
    # S2 times out and S3's check fails: exit 1 naming S2 and S3, and a scenario without
    # any check cannot hold.
    require_binary("etcd")
    from engine.commands import drill_quorum
    from engine.errors import FailoverError

    def s2(self, result):
        raise FailoverError("timed out after 30s waiting for the standby past its threshold")

    monkeypatch.setattr(drill_quorum.QuorumDrill, "s1",
                        lambda self, result: result.checks.append(("holds", True)))
    monkeypatch.setattr(drill_quorum.QuorumDrill, "s2", s2)
    monkeypatch.setattr(drill_quorum.QuorumDrill, "s3",
                        lambda self, result: result.checks.append(("one engage", False)))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    code = drill_quorum.main(argparse.Namespace(keep=False, quorum=True))
    output = capsys.readouterr().out
    assert code == 1, output
    assert "S1 held: " in output
    assert "✘ timed out after 30s waiting for the standby past its threshold" in output
    assert "S2 FAILED: " in output and "S3 FAILED: " in output
    assert "✘ one engage" in output
    assert output.rstrip().endswith("drill --quorum FAILED: S2, S3")
    assert not list(tmp_path.glob("failover-drill-quorum-*"))
    assert not drill_quorum.Scenario("S0", "nothing checked").held
