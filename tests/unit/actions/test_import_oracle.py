"""import_oracle against the strict fake DB-API and server (no Oracle server can run here;
see tests/fixtures/fake_oracle.py). Tests named `test_finding_N_…` are the review findings
of issue 17: each failed on the code before the fix."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

import actions.import_oracle as import_oracle
from actions.base import Context
from actions.import_oracle import ImportOracle, read_credentials
from actions.oracle_datapump import codes, is_transient
from actions.registry import step_class
from engine.errors import StepError
from tests.fixtures.fake_oracle import FakeJob, FakeOracle, Status
from tests.support import REPO, step_context

PASSWORD = "s3cret-Pa55"
NOW = datetime(2026, 11, 26, 7, 17, 3, tzinfo=UTC)
JOB = "FE_GOCDB5_261126071703"
ROLLBACK = "FR_GOCDB5_261126071703"


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    work = tmp_path / "work"
    archive = tmp_path / "archive"
    work.mkdir()
    archive.mkdir()
    dump = work / "goc5dump.dmp"
    dump.write_bytes(b"DUMP" * 4096)
    older = archive / "_goc5dump_26-11-25_10_17_00"
    older.write_bytes(b"OLD" * 4096)
    last = archive / "_goc5dump_26-11-26_06_17_00"
    last.write_bytes(b"GOOD" * 4096)
    older_time = datetime(2026, 11, 25, tzinfo=UTC).timestamp()
    os.utime(older, (older_time, older_time))
    creds = tmp_path / "oracle.ini"
    creds.write_text(f"[oracle]\nuser = system\npassword = {PASSWORD}\n"
                     "dsn = localhost:1521/FREEPDB1\n")
    creds.chmod(0o600)
    return {"work": work, "archive": archive, "dump": dump, "last": last, "creds": creds}


def script_happy(fake: FakeOracle) -> None:
    """A server on which everything works: the schema exists with 120 objects; after an
    import it has two tables. Jobs run EXECUTING → COMPLETED (the fake's default)."""
    fake.users.add("GOCDB5")
    fake.on(r"FROM dba_objects WHERE owner = :owner$", rows=[(120,)])
    fake.on(r"FROM dba_tables", rows=[("SITES", 120), ("SERVICES", 300)])
    fake.on(r'COUNT\(\*\) FROM "GOCDB5"\."SITES"', rows=[(120,)])
    fake.on(r"GROUP BY object_type", rows=[("TABLE", 2), ("INDEX", 3)])
    fake.on(r"status = 'INVALID'", rows=[(0,)])
    fake.script_job(r"^FE_", [Status("EXECUTING", 40), Status("COMPLETED", 100)])


def _ctx(site: dict[str, Path], logs: list[str], **extra: object) -> Context:
    base: dict[str, object] = {"sleep": lambda seconds: None, "previous_output": site["dump"],
                               "swap_guard": lambda name: contextlib.nullcontext()}
    base.update(extra)
    return step_context(site["work"].parent, secret=site["creds"], policy_name="oracle",
                        step_id="job:import.2", log=logs.append, **base)


def _step(fake: FakeOracle, site: dict[str, Path], **params: object) -> ImportOracle:
    base: dict[str, object] = {"credentials": "oracle", "schema": "gocdb5",
                               "last_good": str(site["archive"]),
                               "remap_tablespace": {"GOCDB5": "USERS"},
                               "expect_tables": ["SITES"], "min_rows": {"SITES": 100}}
    base.update(params)
    return ImportOracle(base, connect=fake.connect, now=lambda: NOW)


def _position(fake: FakeOracle, pattern: str, start: int = 0) -> int:
    position = fake.index(pattern, start)
    assert position >= 0, f"{pattern!r} not called; calls: {fake.statements()}"
    return position


def _on(fake: FakeOracle, connection: int) -> list[str]:
    return [c.sql for c in fake.calls if c.connection == connection and c.kind == "execute"]


def _first(sql: list[str], text: str) -> int:
    return next(i for i, s in enumerate(sql) if text in s)


def test_registered() -> None:
    assert step_class("import_oracle") is ImportOracle


def test_happy_path_records_calls_in_order(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    logs: list[str] = []
    outcome = _step(fake_oracle, site).apply(_ctx(site, logs))

    sql = fake_oracle.statements()
    container = _position(fake_oracle, r"CON_NAME")
    privs = _position(fake_oracle, r"FROM session_privs")
    old_jobs = _position(fake_oracle, r"FROM dba_datapump_jobs")
    directory = _position(fake_oracle, r"CREATE OR REPLACE DIRECTORY \"FAILOVER_DUMP\" AS '")
    assert str(site["work"]) in sql[directory]
    header = _position(fake_oracle, "GET_DUMPFILE_INFO")
    last_good_header = _position(fake_oracle, "GET_DUMPFILE_INFO", header + 1)
    probe = _position(fake_oracle, r"DBMS_DATAPUMP\.OPEN")
    opened = _position(fake_oracle, r"DBMS_DATAPUMP\.OPEN", probe + 1)
    add_dump = _position(fake_oracle, "KU\\$_FILE_TYPE_DUMP_FILE", opened)
    add_log = _position(fake_oracle, "KU\\$_FILE_TYPE_LOG_FILE", opened)
    schema_filter = _position(fake_oracle, "METADATA_FILTER", opened)
    remap = _position(fake_oracle, "METADATA_REMAP", opened)
    exists_action = _position(fake_oracle, "TABLE_EXISTS_ACTION", opened)
    drop = _position(fake_oracle, r'DROP USER "GOCDB5" CASCADE')
    start = _position(fake_oracle, r"DBMS_DATAPUMP\.START_JOB")
    status = _position(fake_oracle, r"DBMS_DATAPUMP\.GET_STATUS")
    stats = _position(fake_oracle, r"DBMS_STATS\.GATHER_SCHEMA_STATS")
    verify = _position(fake_oracle, r"FROM dba_tables")
    # Everything is checked, and both jobs fully defined, before the drop.
    assert container < privs < old_jobs < directory < header < last_good_header < probe \
        < opened < add_dump < add_log < schema_filter < remap < exists_action < drop \
        < start < status < stats < verify
    assert len(fake_oracle.matching(r"DBMS_DATAPUMP\.GET_STATUS")) == 2

    calls = fake_oracle.calls
    assert calls[0].kind == "connect"
    assert calls[0].binds == {"user": "system", "dsn": "localhost:1521/FREEPDB1",
                              "password_given": True}
    assert fake_oracle.matching("GET_DUMPFILE_INFO")[1].binds["filename"] == site["last"].name
    assert fake_oracle.matching("GET_DUMPFILE_INFO")[1].binds["directory"] == "FAILOVER_DUMP_LG"
    opens = fake_oracle.matching(r"DBMS_DATAPUMP\.OPEN")
    assert [c.binds["job_name"] for c in opens] == ["FP_GOCDB5_261126071703", JOB]
    adds = fake_oracle.matching("KU\\$_FILE_TYPE_DUMP_FILE")
    assert adds[0].binds["filename"] == site["last"].name  # the probe: the rollback's dump
    assert adds[1].binds["filename"] == "goc5dump.dmp"
    logs_added = [c.binds for c in fake_oracle.matching("KU\\$_FILE_TYPE_LOG_FILE")]
    # Both logs go to the dump's directory, which the import must write anyway.
    assert [b["directory"] for b in logs_added] == ["FAILOVER_DUMP", "FAILOVER_DUMP"]
    assert logs_added[1]["filename"] == f"{JOB}.log"
    assert fake_oracle.matching("METADATA_FILTER")[1].binds["value"] == "IN ('GOCDB5')"
    assert fake_oracle.matching("TABLE_EXISTS_ACTION")[1].binds["value"] == "REPLACE"
    assert fake_oracle.stats_gathered == ["GOCDB5"]
    assert [c.kind for c in calls].count("connect") == 1
    assert calls[-1].kind == "close"
    assert fake_oracle.jobs == {}  # no job and no master table left behind
    # The password is never recorded, logged or reported.
    assert PASSWORD not in json.dumps([c.binds for c in calls], default=str)
    assert PASSWORD not in "\n".join(logs) + outcome.summary

    assert outcome.changed
    assert outcome.summary == f"imported {site['dump']} into GOCDB5: 2 tables, 420 rows, 5 objects"
    assert outcome.before == {"schema": "GOCDB5", "existed": True, "objects": 120}
    assert outcome.after["tables"] == 2 and outcome.after["dump"] == str(site["dump"])
    assert outcome.after["dump_created"] == "Thu Nov 26 06:00:02 2026"
    assert outcome.output is None  # the dump goes on to the archive step unchanged
    written = datetime.fromtimestamp(site["dump"].stat().st_mtime, UTC)
    assert outcome.facts["data_completed"] == written.isoformat(timespec="seconds")
    assert f"import_oracle: {JOB}: 40% done" in logs


def _assert_rolled_back(fake: FakeOracle, site: dict[str, Path], connection: int = 2) -> None:
    """The rollback's connection stopped the first job, dropped the half-import and
    re-imported the last good dump."""
    rollback = [c for c in fake.calls if c.connection == connection and c.kind == "execute"]
    sql = [c.sql for c in rollback]
    adds = [c for c in rollback if "KU$_FILE_TYPE_DUMP_FILE" in c.sql]
    assert adds and adds[0].binds["filename"] == site["last"].name
    assert adds[0].binds["directory"] == "FAILOVER_DUMP_LG"
    opened = [c for c in rollback if "DBMS_DATAPUMP.OPEN" in c.sql]
    assert opened[0].binds["job_name"] == ROLLBACK
    order = [_first(sql, key) for key in ("DBMS_DATAPUMP.ATTACH", "FROM dba_datapump_jobs",
                                          'DROP USER "GOCDB5"', "DBMS_DATAPUMP.OPEN",
                                          "START_JOB")]
    assert order == sorted(order), sql
    assert "GOCDB5" in fake.users


def test_failure_at_import_rolls_back_to_last_good(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39002: invalid operation", nth=1)
    logs: list[str] = []
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, logs))
    message = str(err.value)
    assert "\n" not in message
    assert f"import of {site['dump']} into GOCDB5 failed: ORA-39002: invalid operation" in message
    assert f"rolled back: re-imported last good dump {site['last']} (2 tables, 420 rows)" in message
    assert not err.value.retryable
    _assert_rolled_back(fake_oracle, site)
    assert any("re-importing last good dump" in line for line in logs)
    assert fake_oracle.jobs == {}


# --- finding 1: the PDB, the release and the privileges ------------------------------


def test_finding_1_example_credentials_name_the_pdb() -> None:
    text = (REPO / "policies/examples/oracle.yaml").read_text()
    assert "XEPDB1" in text or "FREEPDB1" in text
    assert "1521/XE " not in text and "1521/XE\n" not in text


def test_finding_1_container_root_is_refused_before_anything(fake_oracle: FakeOracle,
                                                            site) -> None:
    script_happy(fake_oracle)
    fake_oracle.con_name = "CDB$ROOT"
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "connected to the container root CDB$ROOT" in str(err.value)
    assert "nothing was dropped" in str(err.value)
    assert not fake_oracle.matching("DROP USER") and not fake_oracle.matching("DIRECTORY")


def test_finding_1_server_problems_check_the_database(fake_oracle: FakeOracle, site) -> None:
    assert _step(fake_oracle, site).server_problems(_ctx(site, [])) == []
    fake_oracle.con_name = "CDB$ROOT"
    fake_oracle.version = "18.4.0.0.0"
    fake_oracle.privileges -= {"ANALYZE ANY", "SELECT ANY TABLE"}
    fake_oracle.roles.clear()
    problems = _step(fake_oracle, site).server_problems(_ctx(site, []))
    assert len(problems) == 3, problems
    assert "container root CDB$ROOT" in problems[0] and "FREEPDB1" in problems[0]
    assert "Oracle 18.4.0.0.0 is older than 19c" in problems[1]
    assert problems[2].endswith("lacks ANALYZE ANY, SELECT ANY TABLE, role "
                                "DATAPUMP_IMP_FULL_DATABASE (see docs/operations.md, Oracle "
                                "standby)")
    # kill_sessions needs two more.
    fake_oracle.privileges -= {"ALTER SYSTEM"}
    problems = _step(fake_oracle, site, kill_sessions=True).server_problems(_ctx(site, []))
    assert "ALTER SYSTEM" in problems[2]
    assert all(c.kind != "execute" or c.sql.startswith("SELECT") for c in fake_oracle.calls)


def test_server_problems_cannot_connect(fake_oracle: FakeOracle, site) -> None:
    fake_oracle.fail("connect", "ORA-12541: TNS:no listener")
    problems = _step(fake_oracle, site).server_problems(_ctx(site, []))
    assert len(problems) == 1 and "cannot connect to Oracle localhost:1521/FREEPDB1" in problems[0]


# --- finding 2: job errors judged per entry by number -----------------------------------

GRANT_ENTRY = (39083, "ORA-39083: Object type OBJECT_GRANT failed to create with error:\n"
                      "ORA-01917: user or role 'GOCDB_READER' does not exist\n"
                      "Failing sql is:\nGRANT SELECT ON \"GOCDB5\".\"SITES\" TO \"GOCDB_READER\"")
COMPILE_ENTRY = (39082, "ORA-39082: Object type PACKAGE:\"GOCDB5\".\"API\" created with "
                        "compilation warnings")
OTHER_ENTRY = (39083, "ORA-39083: Object type INDEX failed to create with error:\n"
                      "ORA-01031: insufficient privileges")
DATA_ENTRY = (31693, "ORA-31693: Table data object \"GOCDB5\".\"SITES\" failed to load/unload "
                     "and is being skipped due to error:\n"
                     "ORA-01653: unable to extend table GOCDB5.SITES by 128 in tablespace USERS")


def _job_with(fake: FakeOracle, *errors: tuple[int, str], state: str = "COMPLETED") -> None:
    fake.scripts.clear()
    fake.script_job(r"^FE_", [Status("EXECUTING", 40, errors=list(errors)),
                              Status(state, 100)])


def test_finding_2_grant_and_compile_entries_keep_the_import(fake_oracle: FakeOracle,
                                                             site) -> None:
    script_happy(fake_oracle)
    _job_with(fake_oracle, GRANT_ENTRY, COMPILE_ENTRY)
    logs: list[str] = []
    outcome = _step(fake_oracle, site).apply(_ctx(site, logs))
    assert outcome.changed and "kept despite" not in outcome.summary
    assert not fake_oracle.matching("FR_")
    surfaced = [line for line in logs if line.startswith(f"import_oracle: {JOB}: ORA-")]
    assert surfaced[0] == (f"import_oracle: {JOB}: ORA-39083: Object type OBJECT_GRANT failed "
                           "to create with error: | ORA-01917: user or role 'GOCDB_READER' does "
                           "not exist | Failing sql is: | GRANT SELECT ON \"GOCDB5\".\"SITES\" TO "
                           "\"GOCDB_READER\"")
    assert len(surfaced) == 2


def test_finding_2_completed_with_other_errors_is_kept_by_default(fake_oracle: FakeOracle,
                                                                  site) -> None:
    script_happy(fake_oracle)
    _job_with(fake_oracle, OTHER_ENTRY)
    outcome = _step(fake_oracle, site).apply(_ctx(site, []))
    assert "kept despite 1 job error(s) (on_errors: keep): ORA-39083: Object type INDEX " \
           "failed to create with error: | ORA-01031" in outcome.summary
    assert outcome.after["job_errors"] == 1
    assert not [c for c in fake_oracle.calls if c.connection == 2]


def test_finding_2_on_errors_rollback_and_the_allow_list(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    _job_with(fake_oracle, OTHER_ENTRY)
    with pytest.raises(StepError, match=r"completed with 1 error\(s\): ORA-39083.*rolled back"):
        _step(fake_oracle, site, on_errors="rollback").apply(_ctx(site, []))
    _assert_rolled_back(fake_oracle, site)

    fresh = FakeOracle()
    script_happy(fresh)
    _job_with(fresh, OTHER_ENTRY)
    outcome = _step(fresh, site, on_errors="rollback",
                    accept_errors=["ORA-01031"]).apply(_ctx(site, []))
    assert outcome.changed and "kept despite" not in outcome.summary


def test_finding_2_lost_table_data_rolls_back(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    _job_with(fake_oracle, DATA_ENTRY, GRANT_ENTRY)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "completed with 1 error(s): ORA-31693: Table data object" in str(err.value)
    assert "rolled back" in str(err.value)
    _assert_rolled_back(fake_oracle, site)


def test_finding_2_a_job_that_did_not_complete_rolls_back(fake_oracle: FakeOracle,
                                                          site) -> None:
    script_happy(fake_oracle)
    _job_with(fake_oracle, state="STOPPED")
    with pytest.raises(StepError, match=f"Data Pump job {JOB} ended STOPPED.*rolled back"):
        _step(fake_oracle, site).apply(_ctx(site, []))


# --- finding 3: the rollback is proven before the drop ----------------------------------


def test_finding_3_rollback_log_does_not_need_a_writable_archive(fake_oracle: FakeOracle,
                                                                  site) -> None:
    script_happy(fake_oracle)
    fake_oracle.unwritable.add("FAILOVER_DUMP_LG")   # the database may only read the archive
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39002: invalid operation", nth=1)
    with pytest.raises(StepError, match="rolled back: re-imported last good dump"):
        _step(fake_oracle, site).apply(_ctx(site, []))


def test_finding_3_a_rollback_that_cannot_be_defined_stops_before_the_drop(
        fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    # The probe is the first job defined; its dump file (the last good one) is refused.
    fake_oracle.fail(r"KU\$_FILE_TYPE_DUMP_FILE", "ORA-39001: invalid argument value", nth=1)
    with pytest.raises(StepError, match="nothing was dropped"):
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert not fake_oracle.matching("DROP USER")
    assert "GOCDB5" in fake_oracle.users and fake_oracle.jobs == {}


# --- finding 4: the first job is stopped before any rollback ----------------------------


def test_finding_4_lost_session_stops_the_running_job_first(fake_oracle: FakeOracle,
                                                            site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail(r"DBMS_DATAPUMP\.GET_STATUS", "ORA-03113: end-of-file on communication "
                     "channel", nth=1)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    message = str(err.value)
    assert "DPY-4011: the database or network closed the connection | ORA-03113" in message
    assert "the session was lost; the job may still run in the server" in message
    assert "rolled back" in message
    sql = _on(fake_oracle, 2)
    attach = fake_oracle.matching(r"DBMS_DATAPUMP\.ATTACH")
    assert attach[0].binds["job_name"] == JOB and attach[0].connection == 2
    assert _first(sql, "ATTACH") < _first(sql, "STOP_JOB") < _first(sql, "dba_datapump_jobs") \
        < _first(sql, "DROP USER")
    _assert_rolled_back(fake_oracle, site)
    assert fake_oracle.jobs == {}


def test_finding_4_a_job_that_will_not_leave_blocks_the_rollback(fake_oracle: FakeOracle,
                                                                  site) -> None:
    script_happy(fake_oracle)
    fake_oracle.stop_lag = 1_000_000
    fake_oracle.fail(r"DBMS_DATAPUMP\.GET_STATUS", "ORA-03113: end-of-file on communication "
                     "channel", nth=1)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site, stop_wait="30s", poll_interval="5s").apply(_ctx(site, []))
    message = str(err.value)
    assert f"ROLLBACK NOT STARTED: job {JOB} is still in DBA_DATAPUMP_JOBS after 30s" in message
    assert "do not engage the failover" in message
    assert not [s for s in _on(fake_oracle, 2) if "DROP USER" in s or "OPEN(" in s]


# --- finding 5: the deadline and stop requests ------------------------------------------


def test_finding_5_deadline_stops_the_job_and_keeps_time_for_the_rollback(
        fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.scripts.clear()
    fake_oracle.script_job(r"^FE_", [Status("EXECUTING", 10)] * 60 + [Status("COMPLETED", 100)])
    ctx = _ctx(site, [])
    ctx.deadline = time.monotonic() + 1000.0

    def sleep(seconds: float) -> None:   # simulated time: the deadline comes nearer
        assert ctx.deadline is not None
        ctx.deadline -= seconds

    ctx.sleep = sleep
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site, poll_interval="60s", rollback_reserve="400s").apply(ctx)
    assert "400s before the step's timeout, the time kept for the rollback" in str(err.value)
    assert "rolled back" in str(err.value)
    first = [c for c in fake_oracle.matching(r"GET_STATUS") if c.connection == 1]
    assert 9 <= len(first) <= 11    # 1000 s - 400 s kept = ten polls of 60 s, not 61
    assert fake_oracle.matching(r"STOP_JOB")[0].connection == 1


def test_finding_5_a_stop_request_never_aborts_the_rollback(fake_oracle: FakeOracle,
                                                            site) -> None:
    script_happy(fake_oracle)
    stop = threading.Event()
    stop.set()                          # SIGTERM arrived: it stays set, as under the service
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, [], should_stop=stop.is_set))
    assert "stopped: the step was asked to stop" in str(err.value)
    assert "rolled back: re-imported last good dump" in str(err.value)
    rollback_polls = [c for c in fake_oracle.matching("GET_STATUS") if c.connection == 2]
    assert len(rollback_polls) == 2     # EXECUTING, COMPLETED: polled to its end


def test_finding_11_a_status_without_a_state_is_not_still_running(fake_oracle: FakeOracle,
                                                                   site) -> None:
    script_happy(fake_oracle)
    fake_oracle.scripts.clear()
    fake_oracle.script_job(r"^F[ER]_", [Status("EXECUTING", 10)] * 10)
    fake_oracle.script_job(r"^F[ER]_", [Status("EXECUTING", 10)] * 10)
    fake_oracle.on(r"DBMS_DATAPUMP\.GET_STATUS", outs={"state": None})
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "GET_STATUS reported no job state three times running" in str(err.value)
    assert len(fake_oracle.matching("GET_STATUS")) == 6   # three for the import, three rollback


def test_too_little_time_left_refuses_before_the_drop(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    ctx = _ctx(site, [])
    ctx.deadline = time.monotonic() + 100.0
    with pytest.raises(StepError, match="kept for a rollback.*nothing was dropped"):
        _step(fake_oracle, site, rollback_reserve="1h").apply(ctx)
    assert not fake_oracle.matching("DROP USER")


# --- finding 6: statistics never roll back ----------------------------------------------


def test_finding_6_statistics_failure_keeps_the_import(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail(r"DBMS_STATS\.GATHER_SCHEMA_STATS", "ORA-20000: Unable to analyze TABLE "
                     "\"GOCDB5\".\"SITES\", insufficient privileges or does not exist", nth=1)
    logs: list[str] = []
    outcome = _step(fake_oracle, site).apply(_ctx(site, logs))
    assert "statistics not gathered: ORA-20000: Unable to analyze" in outcome.summary
    assert outcome.after["statistics"] is False
    assert not fake_oracle.matching("FR_") and not [c for c in fake_oracle.calls
                                                    if c.connection == 2]


def test_finding_6_statistics_failure_in_the_rollback_is_no_rollback_failure(
        fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39002: invalid operation", nth=1)
    fake_oracle.fail(r"DBMS_STATS\.GATHER_SCHEMA_STATS", "ORA-20000: insufficient privileges")
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "rolled back: re-imported last good dump" in str(err.value)
    assert "statistics not gathered: ORA-20000" in str(err.value)
    assert "EMPTY" not in str(err.value)


# --- finding 7: sessions of the schema owner --------------------------------------------


def test_finding_7_connected_owner_refuses_drop_without_kill(fake_oracle: FakeOracle,
                                                             site) -> None:
    script_happy(fake_oracle)
    fake_oracle.sessions["GOCDB5"] = [(12, 345, 1)]
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "DROP USER GOCDB5 failed: ORA-01940: cannot drop a user that is currently " \
           "connected" in str(err.value)
    assert "nothing was dropped" in str(err.value) and "kill_sessions" in str(err.value)
    assert not fake_oracle.matching("START_JOB") and fake_oracle.jobs == {}


def test_finding_7_kill_sessions_locks_and_kills_before_the_drop(fake_oracle: FakeOracle,
                                                                 site) -> None:
    script_happy(fake_oracle)
    fake_oracle.sessions["GOCDB5"] = [(12, 345, 1), (40, 7, 2)]
    logs: list[str] = []
    outcome = _step(fake_oracle, site, kill_sessions=True).apply(_ctx(site, logs))
    assert outcome.changed
    sql = fake_oracle.statements()
    lock = _position(fake_oracle, r'ALTER USER "GOCDB5" ACCOUNT LOCK')
    kills = [i for i, s in enumerate(sql) if s.startswith("ALTER SYSTEM KILL SESSION")]
    timeout = _position(fake_oracle, "DDL_LOCK_TIMEOUT")
    drop = _position(fake_oracle, "DROP USER")
    assert lock < kills[0] < kills[1] < timeout < drop
    assert [sql[i] for i in kills] == ["ALTER SYSTEM KILL SESSION '12,345,@1' IMMEDIATE",
                                       "ALTER SYSTEM KILL SESSION '40,7,@2' IMMEDIATE"]
    assert "import_oracle: locked GOCDB5 and killed 2 of its session(s)" in logs


# --- finding 8: the detail behind ORA-39001 ---------------------------------------------


def test_finding_8_error_detail_comes_from_get_status(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.unwritable.add("FAILOVER_DUMP")
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    message = str(err.value)
    assert "ORA-39001: invalid argument value — ORA-39070: Unable to open the log file. | " \
           "ORA-29283: invalid file operation" in message
    assert "ORA-06512" not in message and "Help:" not in message
    assert "nothing was dropped" in message and "\n" not in message
    assert not fake_oracle.matching("DROP USER") and fake_oracle.jobs == {}


# --- finding 9: the header, read fully before the drop ----------------------------------


@pytest.mark.parametrize(("items", "expected"), [
    ({"db_version": "21.00.00.00.00"}, "was written for Oracle 21.00.00.00.00, newer than "
                                       "this database (19.3.0.0.0)"),
    ({"data_encrypted": "1"}, "is encrypted"),
    ({"encryption_mode": "3"}, "is encrypted"),
    ({"master_piece_count": "2"}, "multi-file dump set (master table in 2 piece(s))"),
    ({"file_number": "2"}, "is file 2 of a multi-file dump set"),
    ({"master_present": "0"}, "has no master table"),
])
def test_finding_9_header_checks(fake_oracle: FakeOracle, site, items: dict[str, str],
                                 expected: str) -> None:
    script_happy(fake_oracle)
    fake_oracle.header("goc5dump.dmp", **items)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert expected in str(err.value) and "nothing was dropped" in str(err.value)
    assert not fake_oracle.matching("DROP USER")


def test_header_unknown_encryption_mode_is_no_refusal(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.header("goc5dump.dmp", encryption_mode="1")   # KU$_DFHDR_ENCMODE_UNKNOWN
    assert _step(fake_oracle, site).apply(_ctx(site, [])).changed


# --- finding 10: paths, names, buffers, leftovers, codes, tags --------------------------


def test_finding_10_symlinked_directories_are_resolved(fake_oracle: FakeOracle, site,
                                                       tmp_path: Path) -> None:
    script_happy(fake_oracle)
    link = tmp_path / "work-link"
    link.symlink_to(site["work"])
    ctx = _ctx(site, [], previous_output=link / "goc5dump.dmp")
    assert _step(fake_oracle, site).apply(ctx).changed
    directory = fake_oracle.matching(r'DIRECTORY "FAILOVER_DUMP" AS')[0].sql
    assert directory.endswith(f"AS '{os.path.realpath(site['work'])}'")


def test_finding_10_job_names_fit_30_bytes(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.users.add("GOCDB5_STANDBY_X")
    fake_oracle.on(r'COUNT\(\*\) FROM "GOCDB5_STANDBY_X"\."SITES"', rows=[(120,)])
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39002: invalid operation", nth=1)
    with pytest.raises(StepError, match="rolled back"):
        _step(fake_oracle, site, schema="GOCDB5_STANDBY_X").apply(_ctx(site, []))
    names = [c.binds["job_name"] for c in fake_oracle.matching(r"DBMS_DATAPUMP\.OPEN")]
    assert names == ["FP_GOCDB5_STAND_261126071703", "FE_GOCDB5_STAND_261126071703",
                     "FR_GOCDB5_STAND_261126071703"]
    assert all(len(n.encode()) <= 30 for n in names)


def test_finding_10_many_long_error_entries_are_bounded(fake_oracle: FakeOracle,
                                                        site) -> None:
    script_happy(fake_oracle)
    entry = (39083, "ORA-39083: Object type OBJECT_GRANT failed to create with error:\n"
                    "ORA-01917: user or role 'X' does not exist\n" + "G" * 1900)
    _job_with(fake_oracle, *([entry] * 300))
    logs: list[str] = []
    outcome = _step(fake_oracle, site).apply(_ctx(site, logs))
    assert outcome.changed
    assert "import_oracle: FE_GOCDB5_261126071703: more error entries than read at once" in logs


def test_finding_10_an_earlier_running_job_refuses_the_import(fake_oracle: FakeOracle,
                                                              site) -> None:
    script_happy(fake_oracle)
    old = "FE_GOCDB5_261126061703"
    fake_oracle.jobs[old] = FakeJob(old, "SYSTEM", "IMPORT", state="EXECUTING", schema="GOCDB5",
                                    handles={99: 1})
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert f"an earlier Data Pump job {old} of this step is still EXECUTING" in str(err.value)
    assert "nothing was dropped" in str(err.value)
    assert not fake_oracle.matching("DROP USER") and old in fake_oracle.jobs


def test_finding_10_stopped_jobs_and_old_logs_are_cleaned_up(fake_oracle: FakeOracle,
                                                             site) -> None:
    script_happy(fake_oracle)
    old = "FE_GOCDB5_261126061703"
    fake_oracle.jobs[old] = FakeJob(old, "SYSTEM", "IMPORT", state="NOT RUNNING",
                                    schema="GOCDB5")
    other = "SYS_IMPORT_SCHEMA_01"       # not ours: left alone
    fake_oracle.jobs[other] = FakeJob(other, "SYSTEM", "IMPORT", state="NOT RUNNING")
    (site["work"] / f"{old}.log").write_text("old log\n")
    (site["work"] / "keep.log").write_text("not ours\n")
    assert _step(fake_oracle, site).apply(_ctx(site, [])).changed
    assert list(fake_oracle.jobs) == [other]
    assert fake_oracle.matching(r"DBMS_DATAPUMP\.ATTACH")[0].binds["job_name"] == old
    assert not (site["work"] / f"{old}.log").exists() and (site["work"] / "keep.log").exists()


def test_finding_10_errors_are_matched_by_full_code(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail("connect", "ORA-03113: end-of-file on communication channel")
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert err.value.retryable
    assert "DPY-4011" in str(err.value)
    # A code quoted inside another error's text is not that error.
    quoted = FakeOracle()
    quoted.fail("connect", "ORA-01017: invalid credential or not authorized; logon denied")
    with pytest.raises(Exception) as raised:
        quoted.connect(user="u", password="p", dsn="d")
    assert codes(raised.value)[0] == "ORA-01017" and not is_transient(raised.value)
    assert raised.value.args[0].full_code == "ORA-01017"


def test_finding_10_call_timeout_and_session_tags(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39002: invalid operation", nth=1)
    with pytest.raises(StepError, match="rolled back"):
        _step(fake_oracle, site, call_timeout="10m").apply(_ctx(site, []))
    first, second = fake_oracle.connections
    assert first.call_timeout == second.call_timeout == 600_000
    assert first.module == second.module == "failover-engine"
    assert (first.action, second.action) == ("import_oracle import", "import_oracle rollback")
    assert first.client_identifier == "oracle"


def test_finding_10_documented_privileges() -> None:
    text = (REPO / "docs/operations.md").read_text() + (REPO / "actions/import_oracle.py"
                                                         ).read_text()
    for privilege in ("ANALYZE ANY", "SELECT ANY TABLE", "SELECT ANY DICTIONARY",
                      "DATAPUMP_IMP_FULL_DATABASE", "ALTER SYSTEM"):
        assert privilege in text, privilege


# --- the other paths ----------------------------------------------------------------------


def test_accept_errors_under_its_first_name(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    _job_with(fake_oracle, OTHER_ENTRY)
    outcome = _step(fake_oracle, site, on_errors="rollback",
                    ignore_errors=["ORA-01031"]).apply(_ctx(site, []))
    assert outcome.changed and "kept despite" not in outcome.summary


def test_job_log_file_error_lines_are_surfaced(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    # Same host: the job's log file lands in the dump's directory; its ORA- lines are shown.
    (site["work"] / f"{JOB}.log").write_text(
        "Processing object type SCHEMA_EXPORT/TABLE/TABLE\n"
        "ORA-39083: Object type REF_CONSTRAINT failed to create with error\n")
    logs: list[str] = []
    assert _step(fake_oracle, site).apply(_ctx(site, logs)).changed
    assert f"import_oracle: {JOB}.log: ORA-39083: Object type REF_CONSTRAINT failed to " \
           "create with error" in logs


def test_verification_failure_rolls_back(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.on(r'COUNT\(\*\) FROM "GOCDB5"\."SITES"', rows=[(3,)], nth=1)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "table GOCDB5.SITES has 3 rows, expected at least 100" in str(err.value)
    assert "rolled back" in str(err.value)
    _assert_rolled_back(fake_oracle, site)


def test_failure_during_rollback_says_standby_may_be_empty(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39002: invalid operation", nth=1)
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39001: invalid argument value", nth=2)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    message = str(err.value)
    assert "\n" not in message
    assert "failed: ORA-39002: invalid operation" in message
    assert (f"ROLLBACK FAILED too: re-importing last good dump {site['last']}: "
            "ORA-39001: invalid argument value") in message
    assert "the standby schema GOCDB5 may be EMPTY or partial: do not engage" in message
    by_hand = f"impdp schemas=GOCDB5 directory=FAILOVER_DUMP_LG dumpfile={site['last'].name}"
    assert by_hand in message
    assert len(fake_oracle.matching("START_JOB")) == 2


def test_rollback_connection_refused(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail(r"FROM dba_tables", "ORA-03113: end-of-file on communication channel",
                     nth=1)
    fake_oracle.fail("connect", "ORA-12541: TNS:no listener", nth=2)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    message = str(err.value)
    assert "failed: DPY-4011: the database or network closed the connection | ORA-03113" \
        in message
    assert "ROLLBACK FAILED too: connecting: cannot connect to Oracle" in message
    assert "ORA-12541" in message and "nothing was dropped" not in message


@pytest.mark.parametrize("damage", ["missing", "empty", "sha256", "header", "classic"])
def test_bad_dump_drops_nothing(fake_oracle: FakeOracle, site, damage: str) -> None:
    script_happy(fake_oracle)
    dump = site["dump"]
    expected = {"missing": "does not exist; nothing was dropped",
                "empty": "is empty (an interrupted transfer?); nothing was dropped",
                "sha256": "does not match its sha256",
                "header": "is not a Data Pump dump file",
                "classic": "is a classic exp file"}[damage]
    if damage == "missing":
        dump.unlink()
    elif damage == "empty":
        dump.write_bytes(b"")
    elif damage == "sha256":
        full = hashlib.sha256(dump.read_bytes()).hexdigest()
        dump.with_name(dump.name + ".sha256").write_text(f"{full}  {dump.name}\n")
        dump.write_bytes(dump.read_bytes()[: 4096 * 2])  # cut at 50%
    elif damage == "header":
        fake_oracle.header(dump.name, filetype=0)
    else:
        fake_oracle.header(dump.name, filetype=2)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert expected in str(err.value) and "nothing was dropped" in str(err.value)
    assert not fake_oracle.matching("DROP USER") and not fake_oracle.matching("START_JOB")
    if damage in {"missing", "empty", "sha256"}:
        assert fake_oracle.calls == []  # refused before connecting at all


def test_server_cannot_open_the_dump_hints_at_permissions(fake_oracle: FakeOracle,
                                                          site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail("GET_DUMPFILE_INFO", "ORA-39087: directory name FAILOVER_DUMP is invalid",
                     nth=1)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert str(err.value) == (
        f"import_oracle GOCDB5: ORA-39087: directory name FAILOVER_DUMP is invalid (can the "
        f"database server's OS user read and write {site['work']}?); nothing was dropped")
    assert not fake_oracle.matching("DROP USER")
    assert fake_oracle.calls[-1].kind == "close"


def test_bad_last_good_dump_drops_nothing(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.header(site["last"].name, master_present="0")
    with pytest.raises(StepError, match=f"last good dump {site['last']} has no master table"):
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert not fake_oracle.matching("DROP USER")


def test_no_last_good_refuses_to_drop_existing_schema(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    empty = site["archive"].parent / "empty-archive"
    empty.mkdir()
    with pytest.raises(StepError, match="refusing to drop schema GOCDB5.*nothing was dropped"):
        _step(fake_oracle, site, last_good=str(empty)).apply(_ctx(site, []))
    assert not fake_oracle.matching("DROP USER")
    assert not fake_oracle.matching(r"DBMS_DATAPUMP\.OPEN")


def test_first_import_without_schema_needs_no_last_good(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.users.clear()
    empty = site["archive"].parent / "empty-archive"
    empty.mkdir()
    outcome = _step(fake_oracle, site, last_good=str(empty)).apply(_ctx(site, []))
    assert outcome.before == {"schema": "GOCDB5", "existed": False, "objects": 0}
    assert "GOCDB5" in fake_oracle.users


def test_first_import_failure_stops_its_job_and_says_nothing_to_roll_back(
        fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.users.clear()
    empty = site["archive"].parent / "empty-archive"
    empty.mkdir()
    fake_oracle.fail(r"DBMS_DATAPUMP\.GET_STATUS", "ORA-03113: end-of-file on communication "
                     "channel", nth=1)
    with pytest.raises(StepError, match="nothing to roll back to"):
        _step(fake_oracle, site, last_good=str(empty)).apply(_ctx(site, []))
    assert fake_oracle.jobs == {}   # the orphaned job was attached and stopped


def test_swap_guard_refusal_drops_nothing(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)

    def refuse(name: str) -> contextlib.AbstractContextManager[None]:
        raise StepError(f"refused before the swap of {name}: engage.lock exists")

    with pytest.raises(StepError, match="refused before the swap of GOCDB5.*nothing was "
                                        "dropped"):
        _step(fake_oracle, site).apply(_ctx(site, [], swap_guard=refuse))
    assert not fake_oracle.matching("DROP USER") and fake_oracle.jobs == {}


def test_connect_failure_is_retryable_and_drops_nothing(fake_oracle: FakeOracle, site) -> None:
    fake_oracle.fail("connect", "ORA-12541: TNS:no listener")
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "cannot connect to Oracle localhost:1521/FREEPDB1 as system: ORA-12541" \
        in str(err.value)
    assert err.value.retryable
    assert PASSWORD not in str(err.value)


def test_wrong_password_is_not_retryable(fake_oracle: FakeOracle, site) -> None:
    fake_oracle.fail("connect", "ORA-01017: invalid username/password; logon denied")
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert not err.value.retryable


def test_connect_factory_is_the_default(fake_oracle: FakeOracle, site, monkeypatch) -> None:
    script_happy(fake_oracle)
    monkeypatch.setattr(import_oracle, "connect_factory", fake_oracle.connect)
    step = ImportOracle({"credentials": "oracle", "schema": "GOCDB5",
                         "last_good": str(site["archive"])}, now=lambda: NOW)
    assert step.apply(_ctx(site, [])).changed


def test_plan_is_local_and_reports_problems(fake_oracle: FakeOracle, site) -> None:
    plan = _step(fake_oracle, site).plan(_ctx(site, []))
    assert plan.problem is None
    assert plan.summary.startswith(f"replace schema GOCDB5 with {site['dump']} (16384 bytes)")
    assert f"rollback dump {site['last']}" in plan.summary
    site["dump"].unlink()
    plan = _step(fake_oracle, site).plan(_ctx(site, []))
    assert plan.problem is not None and "does not exist" in plan.problem
    planned = _step(fake_oracle, site).plan(_ctx(site, [], previous_output_pending=True))
    assert planned.problem is None and f"with {site['dump']} (once made)" in planned.summary
    assert fake_oracle.calls == []


def test_host_problems_local(fake_oracle: FakeOracle, site) -> None:
    site["creds"].write_text(f"just-a-password {PASSWORD}\n")
    step = _step(fake_oracle, site, last_good="/nonexistent/dir/archive",
                 directory_path="/nonexistent/work")
    problems = step.host_problems(_ctx(site, []))
    assert len(problems) == 3, problems
    assert problems[0].startswith("import_oracle credentials 'oracle': ")
    assert "could not be rolled back" in problems[1]
    assert "directory_path /nonexistent/work is not a directory here" in problems[2]
    assert PASSWORD not in "\n".join(problems)
    assert fake_oracle.calls == []


def test_validate_host_asks_the_database_and_preflight_does_not(
        fake_oracle: FakeOracle, tmp_path: Path, monkeypatch) -> None:
    from engine.hostcheck import host_problems
    from engine.policy import load_policy

    source = tmp_path / "export" / "goc5dump.dmp"
    source.parent.mkdir()
    source.write_bytes(b"DUMP")
    (tmp_path / "archive").mkdir()
    policy = load_policy(_job_policy(tmp_path, source))
    monkeypatch.setattr(import_oracle, "connect_factory", fake_oracle.connect)
    fake_oracle.con_name = "CDB$ROOT"
    assert not [p for p in host_problems(policy) if "import_oracle" in p]
    assert fake_oracle.calls == []   # run, engage and restore never wait for the database
    problems = [p for p in host_problems(policy, servers=True) if "import_oracle" in p]
    assert len(problems) == 1 and "connected to the container root CDB$ROOT" in problems[0]
    assert problems[0].startswith("jobs.import.steps[1] (import_oracle): import_oracle "
                                  "localhost/FREEPDB1: ")


def test_bad_names_are_refused() -> None:
    with pytest.raises(StepError, match="schema 'gocdb5; drop' is not a plain Oracle name"):
        ImportOracle({"credentials": "o", "schema": "gocdb5; drop", "last_good": "/x"})
    with pytest.raises(StepError, match="table_exists_action"):
        ImportOracle({"credentials": "o", "schema": "G", "last_good": "/x",
                      "table_exists_action": "MERGE"})
    with pytest.raises(StepError, match="on_errors"):
        ImportOracle({"credentials": "o", "schema": "G", "last_good": "/x",
                      "on_errors": "ignore"})


def test_schema_fragment() -> None:
    from engine.schemacheck import SCHEMA_BASE, make_validator

    schema = json.loads((REPO / "schemas/steps/import_oracle.json").read_text())
    by_id = {}
    for name in ("import_oracle", "common"):
        document = json.loads((REPO / f"schemas/steps/{name}.json").read_text())
        document["$id"] = SCHEMA_BASE + f"steps/{name}.json"
        by_id[document["$id"]] = document
    validator = make_validator(jsonschema.Draft202012Validator,
                               SCHEMA_BASE + "steps/import_oracle.json", by_id)
    good = {"credentials": "oracle", "schema": "GOCDB5", "last_good": "/var/lib/x",
            "remap_tablespace": {"GOCDB5": "USERS"}, "table_exists_action": "REPLACE",
            "min_rows": {"SITES": 1}, "ignore_errors": ["ORA-31684"], "poll_interval": "2s",
            "accept_errors": ["ORA-01917"], "on_errors": "rollback", "kill_sessions": True,
            "rollback_reserve": "30m", "stop_wait": "5m", "call_timeout": "30m",
            "timeout": "2h"}
    assert list(validator.iter_errors(good)) == []
    assert schema["x-secret-refs"] == ["credentials"]
    for name, spec in schema["properties"].items():
        assert spec.get("description"), name
    for bad in ({"schema": "GOCDB5", "last_good": "/x"},
                {**good, "schema": "GOC DB"}, {**good, "password": "x"},
                {**good, "table_exists_action": "replace"}, {**good, "on_errors": "ignore"},
                {**good, "accept_errors": ["01917"]}):
        assert list(validator.iter_errors(bad)), bad


def test_credentials_formats(tmp_path: Path) -> None:
    line = tmp_path / "line"
    line.write_text(f"# sqlplus style\ngocdb/{PASSWORD}@db.example.org:1521/XEPDB1\n")
    creds = read_credentials(line)
    assert (creds.user, creds.password, creds.dsn) == ("gocdb", PASSWORD,
                                                       "db.example.org:1521/XEPDB1")
    assert PASSWORD not in repr(creds)
    ini = tmp_path / "ini"
    ini.write_text(f"[db]\nuser=system\npassword={PASSWORD}\nhost=localhost\nservice_name=XE\n")
    assert read_credentials(ini).dsn == "localhost:1521/XE"
    bad = tmp_path / "bad"
    bad.write_text("[oracle]\nuser=system\ndsn=x\n")
    with pytest.raises(StepError, match="lack password"):
        read_credentials(bad)
    garbage = tmp_path / "garbage"
    garbage.write_text(f"{PASSWORD}\n")
    with pytest.raises(StepError) as err:
        read_credentials(garbage)
    assert PASSWORD not in str(err.value)


# --- the whole job through the engine: fetch (local) → import_oracle → archive ----------


def _job_policy(tmp_path: Path, source: Path) -> Path:
    creds = tmp_path / "oracle.ini"
    creds.write_text(f"[oracle]\nuser = system\npassword = {PASSWORD}\ndsn = localhost/FREEPDB1\n")
    creds.chmod(0o600)
    policy = tmp_path / "oracle.yaml"
    policy.write_text(f"""
version: 1
name: oracle-test
state_dir: {tmp_path / 'state'}
secrets: {{oracle: {creds}}}
probes: {{production: {{http: {{url: "http://127.0.0.1:9/"}}}}}}
monitor: {{target: production, interval: 10m, failures_to_engage: 3}}
engage: [{{lock: {{state: present}}}}]
restore: [{{lock: {{state: absent}}}}]
jobs:
  import:
    status_log: {tmp_path / 'import.log'}
    work_dir: {tmp_path / 'work'}
    steps:
      - fetch: {{source: {source}}}
      - import_oracle:
          credentials: oracle
          schema: GOCDB5
          last_good: {tmp_path / 'archive'}
          poll_interval: 10ms
      - archive: {{dir: {tmp_path / 'archive'}, keep: 1}}
""")
    return policy


def test_job_end_to_end_with_rollback_to_the_archived_dump(fake_oracle: FakeOracle,
                                                            tmp_path: Path, monkeypatch) -> None:
    from engine.commands.check_dump_age import CRITICAL, OK, run
    from engine.jobs import run_job
    from engine.policy import load_policy
    from engine.statuslog import read_status_log

    source = tmp_path / "export" / "goc5dump.dmp"
    source.parent.mkdir()
    source.write_bytes(b"FIRST" * 4096)
    first_mtime = datetime(2026, 11, 26, 4, 0, tzinfo=UTC).timestamp()
    os.utime(source, (first_mtime, first_mtime))
    script_happy(fake_oracle)
    fake_oracle.users.clear()  # a fresh standby: no schema yet
    monkeypatch.setattr(import_oracle, "connect_factory", fake_oracle.connect)
    policy = load_policy(_job_policy(tmp_path, source))

    first = run_job(policy, "import")
    assert first.ok, first.reason
    archived = sorted((tmp_path / "archive").iterdir())
    assert len(archived) == 1 and archived[0].read_bytes() == source.read_bytes()
    assert read_status_log(tmp_path / "import.log").last_outcome.ok
    code, line = run(argparse_namespace(log=str(tmp_path / "import.log")))
    assert code == OK, line
    # The job recorded the dump's own time (its mtime, kept by fetch) for --data-age.
    record = json.loads((tmp_path / "state" / "jobs" / "import.json").read_text())
    assert record["data_completed"] == datetime.fromtimestamp(
        first_mtime, UTC).isoformat(timespec="seconds")
    code, line = run(argparse_namespace(data_age=True, state_dir=str(tmp_path / "state"),
                                        job="import"),
                     now=datetime.fromtimestamp(first_mtime, UTC) + timedelta(hours=8))
    assert code == CRITICAL and "data completed 8h ago" in line

    # Second run: a new dump whose import fails; the archived first dump is re-imported.
    source.write_bytes(b"SECOND" * 4096)
    assert "GOCDB5" in fake_oracle.users
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39002: invalid operation", nth=1)
    second = run_job(policy, "import")
    assert not second.ok
    assert "ORA-39002" in second.reason and f"re-imported last good dump {archived[0]}" \
        in second.reason
    rollback_file = fake_oracle.matching("KU\\$_FILE_TYPE_DUMP_FILE")[-1]
    assert rollback_file.binds["filename"] == archived[0].name
    assert sorted((tmp_path / "archive").iterdir()) == archived  # the bad dump is not archived
    lines = [line for line in (tmp_path / "import.log").read_text().splitlines()
             if " INFO: " in line or " ERROR: " in line]
    assert lines[0].endswith("INFO: completed ok")
    assert " ERROR: step 2 (import_oracle) failed: " in lines[1] and "rolled back" in lines[1]
    # A failure after a recent success keeps the check OK, as the original.
    assert run(argparse_namespace(log=str(tmp_path / "import.log")))[0] == OK


def argparse_namespace(**values: object):
    import argparse

    base = {"warning": None, "critical": None, "log": None, "data_age": False, "job": None,
            "policy": None, "state_dir": None}
    base.update(values)
    return argparse.Namespace(**base)
