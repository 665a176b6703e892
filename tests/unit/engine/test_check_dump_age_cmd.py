"""`check dump-age`: the Nagios plugin, with every case of the original plugin's own tests.

The original suite (check_db_dump_recent.py's tests) used a fixed "now" of 2023-01-01 12:00
and a 30-minute grace period; the in-process cases below do the same through `run(now=)`.
The subprocess cases run `bin/failover-engine check dump-age` with times relative to now.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import engine.commands
from engine.commands.check_dump_age import CRITICAL, OK, UNKNOWN, WARNING, main, run
from engine.policy import JobSpec, MonitorSpec, Policy
from tests.support import REPO

NOW = datetime(2023, 1, 1, 12, 0, tzinfo=UTC)

ORACLE_RECENT_SUCCESS = [
    "2023-01-01T08:40:01+0000", "2023-01-01T08:41:01+0000 INFO: completed ok",
    "2023-01-01T09:40:01+0000", "An Error",
    "2023-01-01T10:40:01+0000", "An Error", "Another Error",
    "2023-01-01T11:40:01+0000", "2023-01-01T11:41:01+0000 INFO: completed ok",
]
ORACLE_RECENT_FAILURE = [*ORACLE_RECENT_SUCCESS, "2023-01-01T11:50:01+0000", "Yet another Error"]
ORACLE_OLD_SUCCESS = [
    "2023-01-01T09:40:01+0000", "2023-01-01T09:41:01+0000 INFO: completed ok",
    "2023-01-01T10:40:01+0000", "An Error", "Another Error",
    "2023-01-01T11:40:01+0000", "Yet Another Error",
]
ORACLE_NEVER = [
    "2023-01-01T09:40:01+0000", "An Error",
    "2023-01-01T10:40:01+0000", "An Error", "Another Error",
    "2023-01-01T11:40:01+0000", "Yet another Error",
]
MARIADB_RECENT_FAILURE = [
    "2023-01-01T09:17:02+0000 INFO: completed ok",
    "2023-01-01T11:41:01+0000 INFO: completed ok",
    "2023-01-01T11:50:01+0000 ERROR: mysql returned 1: ERROR 1064 (42000) at line 3",
]
MARIADB_OLD = ["2023-01-01T09:17:02+0000 INFO: completed ok",
               "2023-01-01T11:17:02+0000 ERROR: scp: connection refused"]


def _args(**values: object) -> argparse.Namespace:
    base: dict[str, object] = {"warning": None, "critical": None, "log": None,
                               "data_age": False, "job": None, "policy": None, "state_dir": None}
    base.update(values)
    return argparse.Namespace(**base)


def _log(tmp_path: Path, lines: list[str], name: str = "import.log") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (ORACLE_RECENT_SUCCESS, OK),
        (ORACLE_RECENT_FAILURE, OK),       # a later failure after a recent success is still OK
        (ORACLE_OLD_SUCCESS, CRITICAL),
        (ORACLE_NEVER, CRITICAL),
        (MARIADB_RECENT_FAILURE, OK),
        (MARIADB_OLD, CRITICAL),
        ([], CRITICAL),                     # empty log
    ],
    ids=["oracle-recent-success", "oracle-recent-failure", "oracle-old-success", "oracle-never",
         "mariadb-recent-failure", "mariadb-old", "empty"],
)
def test_original_suite_cases(tmp_path: Path, lines: list[str], expected: int) -> None:
    code, line = run(_args(log=str(_log(tmp_path, lines)), critical="30m"), now=NOW)
    assert code == expected, line


def test_missing_log_is_critical_and_names_it(tmp_path: Path) -> None:
    code, line = run(_args(log=str(tmp_path / "absent.log")), now=NOW)
    assert code == CRITICAL
    assert line.startswith("DUMP-AGE CRITICAL: status log ") and "absent.log does not exist" in line


def test_never_succeeded_message(tmp_path: Path) -> None:
    code, line = run(_args(log=str(_log(tmp_path, ORACLE_NEVER))), now=NOW)
    assert code == CRITICAL and "has never succeeded" in line and "|" not in line


def test_ok_line_and_perfdata_format(tmp_path: Path) -> None:
    code, line = run(_args(log=str(_log(tmp_path, ORACLE_RECENT_FAILURE))), now=NOW)
    assert code == OK
    path = tmp_path / "import.log"
    assert line == (f"DUMP-AGE OK: last import completed ok 18m59s ago at 2023-01-01T11:41:01+0000 "
                    f"({path}); a later run failed at line 11 | age=1139s;;25200")


def test_warning_band_and_perfdata_thresholds(tmp_path: Path) -> None:
    log = str(_log(tmp_path, ["2023-01-01T07:00:00+0000 INFO: completed ok"]))  # 5h old
    code, line = run(_args(log=log, warning="4h", critical="6h"), now=NOW)
    assert code == WARNING
    assert line.startswith("DUMP-AGE WARNING: ")
    assert line.endswith("| age=18000s;14400;21600")
    assert run(_args(log=log, warning="19800", critical="6h"), now=NOW)[0] == OK  # bare seconds
    assert run(_args(log=log, warning="1h", critical="4h"), now=NOW)[0] == CRITICAL


def test_default_critical_is_seven_hours(tmp_path: Path) -> None:
    fresh = str(_log(tmp_path, ["2023-01-01T05:01:00+0000 INFO: completed ok"], "a.log"))
    stale = str(_log(tmp_path, ["2023-01-01T04:59:00+0000 INFO: completed ok"], "b.log"))
    assert run(_args(log=fresh), now=NOW)[0] == OK
    assert run(_args(log=stale), now=NOW)[0] == CRITICAL


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2023-01-01T12:20:00+0100", OK),        # 11:20 UTC: 40 minutes old
        ("2023-01-01T11:20:00+0100", CRITICAL),  # 10:20 UTC: 1h40m old
        ("2023-01-01T11:20:00Z", OK),
        ("2023-01-01T06:20:00-05:00", OK),       # 11:20 UTC
    ],
)
def test_timezone_offsets(tmp_path: Path, stamp: str, expected: int) -> None:
    log = str(_log(tmp_path, [f"{stamp} INFO: completed ok"]))
    assert run(_args(log=log, critical="1h"), now=NOW)[0] == expected


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"warning": "soon"}, "--warning 'soon'"),
        ({"critical": "-3h"}, "--critical '-3h'"),
        ({"warning": "8h"}, "must be shorter than --critical 7h"),
    ],
)
def test_garbage_arguments_are_unknown(tmp_path: Path, values: dict, fragment: str) -> None:
    log = str(_log(tmp_path, ORACLE_RECENT_SUCCESS))
    code, line = run(_args(log=log, **values), now=NOW)
    assert code == UNKNOWN and line.startswith("DUMP-AGE UNKNOWN: ") and fragment in line


def test_bad_policy_without_log_is_unknown(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed\n")
    code, line = run(_args(policy=str(bad)), now=NOW)
    assert code == UNKNOWN and f"cannot load policy {bad}" in line and "--log FILE" in line


def test_log_given_means_policy_is_not_read(tmp_path: Path, monkeypatch) -> None:
    def explode(args: argparse.Namespace) -> None:
        raise AssertionError("policy must not be loaded when --log is given")

    monkeypatch.setattr(engine.commands, "load", explode)
    log = str(_log(tmp_path, ORACLE_RECENT_SUCCESS))
    assert run(_args(log=log, policy="/nonexistent/policy.yaml"), now=NOW)[0] == OK


def _policy(tmp_path: Path, jobs: dict[str, Path | None]) -> Policy:
    specs = {name: JobSpec(name=name, steps=[], work_dir=tmp_path / name, status_log=log)
             for name, log in jobs.items()}
    return Policy(path=tmp_path / "policy.yaml", name="t", state_dir=tmp_path / "state",
                  monitor=MonitorSpec(target="p", interval=600, failures_to_engage=30),
                  engage=[], restore=[], jobs=specs)


def test_log_from_policy_first_job_with_status_log(tmp_path: Path, monkeypatch) -> None:
    log = _log(tmp_path, ORACLE_RECENT_SUCCESS)
    policy = _policy(tmp_path, {"archive": None, "import": log})
    monkeypatch.setattr(engine.commands, "load", lambda args: policy)
    code, line = run(_args(), now=NOW)
    assert code == OK and str(log) in line
    code, line = run(_args(job="archive"), now=NOW)
    assert code == UNKNOWN and "job 'archive' has no status_log" in line
    code, line = run(_args(job="nope"), now=NOW)
    assert code == UNKNOWN and "no job 'nope' (jobs: archive, import)" in line


def _record(state_dir: Path, job: str, data: object) -> None:
    (state_dir / "jobs").mkdir(parents=True, exist_ok=True)
    (state_dir / "jobs" / f"{job}.json").write_text(json.dumps(data))


def test_data_age_from_job_record(tmp_path: Path, monkeypatch) -> None:
    policy = _policy(tmp_path, {"import": _log(tmp_path, ORACLE_RECENT_SUCCESS)})
    monkeypatch.setattr(engine.commands, "load", lambda args: policy)
    _record(policy.state_dir, "import", {"ok": True, "last_success": "2023-01-01T11:50:00+00:00",
                                         "data_completed": "2023-01-01T03:00:00+00:00"})
    # The import ran 10 minutes ago, but the dump it loaded was finished 9 hours ago.
    code, line = run(_args(data_age=True), now=NOW)
    assert code == CRITICAL
    assert "data completed 9h ago at 2023-01-01T03:00:00+0000" in line
    assert line.endswith("| age=32400s;;25200")
    assert run(_args(data_age=True, critical="10h"), now=NOW)[0] == OK


def test_data_age_without_policy_given_state_dir_and_job(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine.commands, "load", lambda args: pytest.fail("policy loaded"))
    _record(tmp_path, "import", {"data_completed": "2023-01-01T11:00:00Z"})
    args = _args(data_age=True, state_dir=str(tmp_path), job="import")
    assert run(args, now=NOW)[0] == OK


@pytest.mark.parametrize(
    ("record", "expected", "fragment"),
    [
        (None, CRITICAL, "has never recorded a run"),
        ({"ok": False, "data_completed": None}, CRITICAL, "no data_completed recorded"),
        ({"data_completed": "yesterday"}, UNKNOWN, "is not an ISO 8601 time"),
        ("not json", UNKNOWN, "is not valid JSON"),
    ],
)
def test_data_age_record_problems(tmp_path: Path, record: object, expected: int,
                                  fragment: str) -> None:
    if record == "not json":
        (tmp_path / "jobs").mkdir()
        (tmp_path / "jobs" / "import.json").write_text("{half")
    elif record is not None:
        _record(tmp_path, "import", record)
    code, line = run(_args(data_age=True, state_dir=str(tmp_path), job="import"), now=NOW)
    assert code == expected and fragment in line


def test_unexpected_error_is_unknown_without_traceback(tmp_path: Path, monkeypatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    import engine.statuslog

    def broken(path: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(engine.statuslog, "read_status_log", broken)
    assert main(_args(log=str(tmp_path / "x.log"))) == UNKNOWN
    out = capsys.readouterr().out
    assert out == "DUMP-AGE UNKNOWN: unexpected error: RuntimeError: disk on fire\n"


# --- through the real command line --------------------------------------------------------


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "bin/failover-engine"), *argv],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def _now_minus(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S+0000")


def test_cli_ok_warning_critical(tmp_path: Path) -> None:
    log = tmp_path / "import.log"
    log.write_text(f"{_now_minus(hours=2)}\n{_now_minus(hours=2)} INFO: completed ok\n"
                   f"{_now_minus(hours=1)}\nORA-39002: invalid operation\n")
    done = _cli("check", "dump-age", "--log", str(log))
    assert done.returncode == OK, done
    assert done.stdout.startswith("DUMP-AGE OK: last import completed ok 2h ago")
    assert done.stdout.rstrip().endswith(";;25200") and done.stderr == ""
    done = _cli("check", "dump-age", "--log", str(log), "--warning", "1h", "--critical", "3h")
    assert done.returncode == WARNING, done
    done = _cli("check", "dump-age", "--log", str(log), "--critical", "90m")
    assert done.returncode == CRITICAL, done


def test_cli_missing_log_and_garbage(tmp_path: Path) -> None:
    done = _cli("check", "dump-age", "--log", str(tmp_path / "absent.log"))
    assert done.returncode == CRITICAL and "absent.log does not exist" in done.stdout
    done = _cli("check", "dump-age", "--log", str(tmp_path / "x"), "--warning", "soon")
    assert done.returncode == UNKNOWN and "Traceback" not in done.stdout + done.stderr
    done = _cli("check", "dump-age", "--log", str(tmp_path / "x"), "--critical")  # no value
    assert done.returncode == UNKNOWN and "Traceback" not in done.stdout + done.stderr


def test_cli_without_valid_policy_when_log_given(tmp_path: Path) -> None:
    log = tmp_path / "import.log"
    log.write_text(f"{_now_minus(minutes=5)} INFO: completed ok\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("not: [a policy\n")
    done = _cli("--policy", str(bad), "check", "dump-age", "--log", str(log))
    assert done.returncode == OK, done
    done = _cli("--policy", str(bad), "check", "dump-age")
    assert done.returncode == UNKNOWN, done


def test_cli_reads_the_log_and_record_named_by_the_policy(tmp_path: Path) -> None:
    policy = REPO / "policies/examples/oracle.yaml"
    done = _cli("--policy", str(policy), "check", "dump-age")
    if not Path("/var/log/failover-engine/oracle-import.log").exists():  # not on this host
        assert done.returncode == CRITICAL, done
    assert "/var/log/failover-engine/oracle-import.log" in done.stdout
    _record(tmp_path, "import", {"data_completed": _now_minus(hours=1)})
    done = _cli("--policy", str(policy), "--state-dir", str(tmp_path), "check", "dump-age",
                "--data-age", "--warning", "30m")
    assert done.returncode == WARNING, done
    assert done.stdout.startswith("DUMP-AGE WARNING: data completed 1h ago")
    assert f"({tmp_path}/jobs/import.json)" in done.stdout
