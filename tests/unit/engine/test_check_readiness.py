"""`check readiness` through the command line: exit codes, the line naming failing checks,
and the perfdata, from readiness records the monitor would write."""
from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cli import main
from engine.paths import StatePaths
from engine.readiness import Check, merge
from engine.state import isotime


def _policy(tmp_path: Path, readiness: bool = True) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: t
        state_dir: state
        probes:
          production: {tcp: {host: 127.0.0.1, port: 9}}
        monitor: {target: production, interval: 1m, failures_to_engage: 3}
        engage:
          - lock: {state: present}
        restore:
          - lock: {state: absent}
        """) + ("readiness: {interval: 1h}\n" if readiness else ""))
    (tmp_path / "state").mkdir(mode=0o700, exist_ok=True)
    return path


def _record(tmp_path: Path, checks: list[Check], ago: timedelta = timedelta(seconds=30)) -> None:
    record = merge(None, checks, 3600.0, isotime(datetime.now(UTC) - ago))
    StatePaths(tmp_path / "state").readiness.write_text(record.to_json())


def _run(policy: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--policy", str(policy), "check", "readiness"])
    return code, capsys.readouterr().out.strip()


GOOD = [Check("engage.1.nsupdate", True, "ok", "granted"), Check("state_dir", True, "ok", "w"),
        Check("cron.1", True, "ok", "there")]


def test_all_pass_is_ok_with_perfdata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path)
    _record(tmp_path, GOOD)
    code, line = _run(policy, capsys)
    assert code == 0
    assert re.fullmatch(r"READINESS OK - all 3 checks pass; checked \d+s ago \| checks=3;;;0 "
                        r"failing=0;;0;0 warnings=0;;;0 age=\d+s;7500;;0", line), line


def test_a_failing_check_is_critical_and_named(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path)
    _record(tmp_path, [
        Check("engage.1.nsupdate", False, "refused_grant", "REFUSED: key k is not allowed"),
        Check("engage.2.check_dump_age", False, "margin", "6h30m ago", warning=True),
        *GOOD[1:]])
    code, line = _run(policy, capsys)
    assert code == 2
    assert line.startswith("READINESS CRITICAL - 2 of 4 checks fail: "
                           "engage.1.nsupdate=refused_grant, engage.2.check_dump_age=margin "
                           "(engage.1.nsupdate: REFUSED: key k is not allowed)")
    assert "failing=2;;0;0 warnings=1;;;0" in line


def test_only_a_margin_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path)
    _record(tmp_path, [Check("engage.2.check_dump_age", False, "margin", "x", warning=True),
                       *GOOD])
    code, line = _run(policy, capsys)
    assert code == 1
    assert line.startswith("READINESS WARNING - 1 of 4 checks near their limit: "
                           "engage.2.check_dump_age=margin")


def test_overdue_checks_are_a_warning_even_when_they_passed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path)
    _record(tmp_path, GOOD, ago=timedelta(hours=3))
    code, line = _run(policy, capsys)
    assert code == 1
    assert "the checks are overdue: last run 3h" in line and "is the monitor running?" in line


def test_unknown_without_a_block_without_a_run_or_with_a_damaged_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = _run(_policy(tmp_path, readiness=False), capsys)
    assert code == 3 and "has no `readiness:` block" in line
    policy = _policy(tmp_path)
    code, line = _run(policy, capsys)
    assert code == 3 and line.startswith("READINESS UNKNOWN - the readiness checks never ran")
    StatePaths(tmp_path / "state").readiness.write_text("{not json")
    code, line = _run(policy, capsys)
    assert code == 3 and line.startswith("READINESS UNKNOWN - ")
    assert "Traceback" not in line


def test_the_plugin_does_not_import_the_actions_or_heavy_clients() -> None:
    import subprocess
    import sys

    from tests.support import REPO

    code = ("import sys, engine.commands.check_readiness; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'dns', 'paramiko', 'pymysql', 'oracledb', 'transitions', 'actions'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
