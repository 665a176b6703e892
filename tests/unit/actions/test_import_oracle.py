"""import_oracle against the fake DB-API (no Oracle server can run here; see fake_oracle.py)."""
from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

import actions.import_oracle as import_oracle
from actions.base import Context
from actions.import_oracle import ImportOracle, read_credentials
from actions.registry import step_class
from engine.errors import StepError
from tests.fixtures.fake_oracle import FakeOracle
from tests.support import REPO

PASSWORD = "s3cret-Pa55"
NOW = datetime(2026, 11, 26, 7, 17, 3, tzinfo=UTC)


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
    creds.write_text(f"[oracle]\nuser = system\npassword = {PASSWORD}\ndsn = localhost:1521/XE\n")
    creds.chmod(0o600)
    return {"work": work, "archive": archive, "dump": dump, "last": last, "creds": creds}


def script_happy(fake: FakeOracle) -> None:
    """A server on which everything works: two tables, an existing schema of 120 objects."""
    fake.on(r"GET_DUMPFILE_INFO", outs={"filetype": 1, "master_present": "1",
                                        "created": "Thu Nov 26 06:00:02 2026"})
    fake.on(r"FROM dba_users", rows=[(1,)])
    fake.on(r"FROM dba_objects WHERE owner = :owner$", rows=[(120,)])
    fake.on(r"DBMS_DATAPUMP\.OPEN", outs={"handle": 7})
    fake.on(r"DBMS_DATAPUMP\.GET_STATUS", sequence=[
        {"state": "EXECUTING", "percent": 40, "errors": None},
        {"state": "COMPLETED", "percent": 100, "errors": None},
    ])
    fake.on(r"FROM dba_tables", rows=[("SITES", 120), ("SERVICES", 300)])
    fake.on(r'COUNT\(\*\) FROM "GOCDB5"\."SITES"', rows=[(120,)])
    fake.on(r"GROUP BY object_type", rows=[("TABLE", 2), ("INDEX", 3)])
    fake.on(r"status = 'INVALID'", rows=[(0,)])


def _ctx(site: dict[str, Path], logs: list[str], **extra: object) -> Context:
    return Context(policy_name="oracle", state_dir=site["work"].parent, step_id="job:import.2",
                   secret=lambda name: site["creds"], log=logs.append, progress={},
                   sleep=lambda seconds: None, previous_output=site["dump"], **extra)


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


def test_registered() -> None:
    assert step_class("import_oracle") is ImportOracle


def test_happy_path_records_calls_in_order(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    logs: list[str] = []
    outcome = _step(fake_oracle, site).apply(_ctx(site, logs))

    sql = fake_oracle.statements()
    directory = _position(fake_oracle, r"CREATE OR REPLACE DIRECTORY \"FAILOVER_DUMP\" AS '")
    assert str(site["work"]) in sql[directory]
    header = _position(fake_oracle, "GET_DUMPFILE_INFO")
    last_good_header = _position(fake_oracle, "GET_DUMPFILE_INFO", header + 1)
    opened = _position(fake_oracle, r"DBMS_DATAPUMP\.OPEN")
    add_dump = _position(fake_oracle, "KU\\$_FILE_TYPE_DUMP_FILE")
    add_log = _position(fake_oracle, "KU\\$_FILE_TYPE_LOG_FILE")
    schema_filter = _position(fake_oracle, "METADATA_FILTER")
    remap = _position(fake_oracle, "METADATA_REMAP")
    exists_action = _position(fake_oracle, "TABLE_EXISTS_ACTION")
    drop = _position(fake_oracle, r'DROP USER "GOCDB5" CASCADE')
    start = _position(fake_oracle, r"DBMS_DATAPUMP\.START_JOB")
    status = _position(fake_oracle, r"DBMS_DATAPUMP\.GET_STATUS")
    detach = _position(fake_oracle, r"DBMS_DATAPUMP\.DETACH")
    stats = _position(fake_oracle, r"DBMS_STATS\.GATHER_SCHEMA_STATS")
    verify = _position(fake_oracle, r"FROM dba_tables")
    # The dump (and the rollback dump) are checked and the job fully defined before the drop.
    assert directory < header < last_good_header < opened < add_dump < add_log \
        < schema_filter < remap < exists_action < drop < start < status < detach < stats < verify
    assert len(fake_oracle.matching(r"DBMS_DATAPUMP\.GET_STATUS")) == 2

    calls = fake_oracle.calls
    assert calls[0].kind == "connect"
    assert calls[0].binds == {"user": "system", "dsn": "localhost:1521/XE", "password_given": True}
    assert fake_oracle.matching("GET_DUMPFILE_INFO")[0].binds == {
        "filename": "goc5dump.dmp", "directory": "FAILOVER_DUMP",
        "filetype": None, "master_present": None, "created": None}
    assert fake_oracle.matching("GET_DUMPFILE_INFO")[1].binds["filename"] == site["last"].name
    assert fake_oracle.matching("GET_DUMPFILE_INFO")[1].binds["directory"] == "FAILOVER_DUMP_LG"
    assert fake_oracle.matching("KU\\$_FILE_TYPE_DUMP_FILE")[0].binds == {
        "handle": 7, "filename": "goc5dump.dmp", "directory": "FAILOVER_DUMP"}
    log_file = fake_oracle.matching("KU\\$_FILE_TYPE_LOG_FILE")[0].binds["filename"]
    assert log_file == "FE_GOCDB5_261126071703.log"
    assert fake_oracle.matching(r"DBMS_DATAPUMP\.OPEN")[0].binds["job_name"] == \
        "FE_GOCDB5_261126071703"
    assert fake_oracle.matching("METADATA_FILTER")[0].binds["value"] == "IN ('GOCDB5')"
    assert fake_oracle.matching("METADATA_REMAP")[0].binds == {
        "handle": 7, "old_value": "GOCDB5", "value": "USERS"}
    assert fake_oracle.matching("TABLE_EXISTS_ACTION")[0].binds["value"] == "REPLACE"
    assert fake_oracle.matching("GATHER_SCHEMA_STATS")[0].binds == {"ownname": "GOCDB5"}
    assert fake_oracle.matching(r'COUNT\(\*\) FROM "GOCDB5"\."SITES"')
    assert [c.kind for c in calls].count("connect") == 1
    assert calls[-1].kind == "close"
    # The password is never recorded, logged or reported.
    assert PASSWORD not in json.dumps([c.binds for c in calls], default=str)
    assert PASSWORD not in "\n".join(logs) + outcome.summary

    assert outcome.changed
    assert outcome.summary == f"imported {site['dump']} into GOCDB5: 2 tables, 420 rows, 5 objects"
    assert outcome.before == {"schema": "GOCDB5", "existed": True, "objects": 120}
    assert outcome.after["tables"] == 2 and outcome.after["dump"] == str(site["dump"])
    assert outcome.after["dump_created"] == "Thu Nov 26 06:00:02 2026"
    assert "import_oracle: FE_GOCDB5_261126071703: 40% done" in logs


def _assert_rolled_back(fake: FakeOracle, site: dict[str, Path]) -> None:
    """The second connection dropped the half-import and re-imported the last good dump."""
    rollback = [c for c in fake.calls if c.connection == 2 and c.kind == "execute"]
    sql = [c.sql for c in rollback]
    assert any('DROP USER "GOCDB5" CASCADE' in s for s in sql)
    adds = [c for c in rollback if "KU$_FILE_TYPE_DUMP_FILE" in c.sql]
    assert adds and adds[0].binds["filename"] == site["last"].name
    assert adds[0].binds["directory"] == "FAILOVER_DUMP_LG"
    opened = [c for c in rollback if "DBMS_DATAPUMP.OPEN" in c.sql]
    assert opened[0].binds["job_name"].startswith("FE_RB_GOCDB5_")
    order = [next(i for i, s in enumerate(sql) if key in s)
             for key in ("DROP USER", "DBMS_DATAPUMP.OPEN", "START_JOB", "GATHER_SCHEMA_STATS")]
    assert order == sorted(order)


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


def test_job_error_lines_fail_the_import_and_are_surfaced(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    errors = ("ORA-31693: Table data object \"GOCDB5\".\"SITES\" failed to load/unload\n"
              "ORA-01653: unable to extend table GOCDB5.SITES by 128 in tablespace USERS\n")
    fake_oracle.on(r"DBMS_DATAPUMP\.GET_STATUS", nth=2,
                   outs={"state": "COMPLETED", "percent": 100, "errors": errors})
    logs: list[str] = []
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, logs))
    message = str(err.value)
    assert "completed with 2 error line(s): ORA-31693" in message and "| ORA-01653" in message
    assert "rolled back" in message
    prefix = "import_oracle: FE_GOCDB5_261126071703: ORA"
    surfaced = [line for line in logs if line.startswith(prefix)]
    assert [line.split(": ")[2] for line in surfaced] == ["ORA-31693", "ORA-01653"]
    _assert_rolled_back(fake_oracle, site)


def test_ignored_error_codes_do_not_fail(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.on(r"DBMS_DATAPUMP\.GET_STATUS", nth=2, outs={
        "state": "COMPLETED", "percent": 100,
        "errors": "ORA-31684: Object type USER:\"GOCDB5\" already exists\n"})
    logs: list[str] = []
    outcome = _step(fake_oracle, site, ignore_errors=["ORA-31684"]).apply(_ctx(site, logs))
    assert outcome.changed and any("ORA-31684" in line for line in logs)


def test_job_log_file_error_lines_are_surfaced(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    # Same host: the job's log file lands in the dump's directory; its ORA- lines count too.
    (site["work"] / "FE_GOCDB5_261126071703.log").write_text(
        "Processing object type SCHEMA_EXPORT/TABLE/TABLE\n"
        "ORA-39083: Object type REF_CONSTRAINT failed to create with error\n")
    logs: list[str] = []
    with pytest.raises(StepError, match=r"1 error line\(s\): ORA-39083.*rolled back"):
        _step(fake_oracle, site).apply(_ctx(site, logs))
    assert "import_oracle: FE_GOCDB5_261126071703.log: ORA-39083: Object type REF_CONSTRAINT " \
           "failed to create with error" in logs


def test_verification_failure_rolls_back(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.on(r'COUNT\(\*\) FROM "GOCDB5"\."SITES"', rows=[(3,)], nth=1)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "table GOCDB5.SITES has 3 rows, expected at least 100" in str(err.value)
    assert "rolled back" in str(err.value)
    _assert_rolled_back(fake_oracle, site)


def test_job_stopped_when_step_must_stop(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    stops = iter([True])
    ctx = _ctx(site, [], should_stop=lambda: next(stops, False))
    with pytest.raises(StepError, match="stopped: the step was asked to stop.*rolled back"):
        _step(fake_oracle, site).apply(ctx)
    assert fake_oracle.matching(r"DBMS_DATAPUMP\.STOP_JOB")[0].binds == {"handle": 7}


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
    fake_oracle.fail(r"DBMS_STATS\.GATHER_SCHEMA_STATS", "ORA-03113: end-of-file on channel",
                     nth=1)
    fake_oracle.fail("connect", "ORA-12541: TNS:no listener", nth=2)
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "failed: ORA-03113" in str(err.value)
    assert "ROLLBACK FAILED too" in str(err.value) and "ORA-12541" in str(err.value)


@pytest.mark.parametrize("damage", ["missing", "empty", "sha256", "header", "no-master"])
def test_bad_dump_drops_nothing(fake_oracle: FakeOracle, site, damage: str) -> None:
    script_happy(fake_oracle)
    dump = site["dump"]
    expected = {"missing": "does not exist; nothing was dropped",
                "empty": "is empty (an interrupted transfer?); nothing was dropped",
                "sha256": "does not match its sha256",
                "header": "is not a Data Pump dump file",
                "no-master": "has no master table"}[damage]
    if damage == "missing":
        dump.unlink()
    elif damage == "empty":
        dump.write_bytes(b"")
    elif damage == "sha256":
        full = hashlib.sha256(dump.read_bytes()).hexdigest()
        dump.with_name(dump.name + ".sha256").write_text(f"{full}  {dump.name}\n")
        dump.write_bytes(dump.read_bytes()[: 4096 * 2])  # cut at 50%
    elif damage == "header":
        fake_oracle.on("GET_DUMPFILE_INFO", nth=1, outs={"filetype": 0, "master_present": None})
    else:
        fake_oracle.on("GET_DUMPFILE_INFO", nth=1, outs={"filetype": 1, "master_present": "0"})
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
    fake_oracle.on("GET_DUMPFILE_INFO", nth=2, outs={"filetype": 1, "master_present": "0"})
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
    # The job defined so far is not left behind.
    assert not fake_oracle.matching(r"DBMS_DATAPUMP\.OPEN")


def test_first_import_without_schema_needs_no_last_good(fake_oracle: FakeOracle, site) -> None:
    script_happy(fake_oracle)
    fake_oracle.on(r"FROM dba_users", rows=[(0,)])
    empty = site["archive"].parent / "empty-archive"
    empty.mkdir()
    outcome = _step(fake_oracle, site, last_good=str(empty)).apply(_ctx(site, []))
    assert outcome.before == {"schema": "GOCDB5", "existed": False, "objects": 0}


def test_drop_refused_by_server_leaves_schema_and_skips_rollback(fake_oracle: FakeOracle,
                                                                 site) -> None:
    script_happy(fake_oracle)
    fake_oracle.fail("DROP USER", "ORA-01940: cannot drop a user that is currently connected")
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "DROP USER GOCDB5 failed: ORA-01940" in str(err.value)
    assert "nothing was dropped" in str(err.value)
    assert not fake_oracle.matching("START_JOB")
    assert fake_oracle.matching(r"DBMS_DATAPUMP\.STOP_JOB")  # the defined job is removed
    assert [c.kind for c in fake_oracle.calls].count("connect") == 1


def test_connect_failure_is_retryable_and_drops_nothing(fake_oracle: FakeOracle, site) -> None:
    fake_oracle.fail("connect", "ORA-12541: TNS:no listener")
    with pytest.raises(StepError) as err:
        _step(fake_oracle, site).apply(_ctx(site, []))
    assert "cannot connect to Oracle localhost:1521/XE as system: ORA-12541" in str(err.value)
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
    assert fake_oracle.calls == []


def test_host_problems(fake_oracle: FakeOracle, site) -> None:
    assert _step(fake_oracle, site).host_problems(_ctx(site, [])) == []
    site["creds"].write_text(f"just-a-password {PASSWORD}\n")
    step = _step(fake_oracle, site, last_good="/nonexistent/dir/archive",
                 directory_path="/nonexistent/work")
    problems = step.host_problems(_ctx(site, []))
    assert len(problems) == 3, problems
    assert problems[0].startswith("import_oracle credentials 'oracle': ")
    assert "could not be rolled back" in problems[1]
    assert "directory_path /nonexistent/work is not a directory here" in problems[2]
    assert PASSWORD not in "\n".join(problems)


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


def test_bad_names_are_refused() -> None:
    with pytest.raises(StepError, match="schema 'gocdb5; drop' is not a plain Oracle name"):
        ImportOracle({"credentials": "o", "schema": "gocdb5; drop", "last_good": "/x"})
    with pytest.raises(StepError, match="table_exists_action"):
        ImportOracle({"credentials": "o", "schema": "G", "last_good": "/x",
                      "table_exists_action": "MERGE"})


def test_schema_fragment() -> None:
    from referencing import Registry, Resource

    schema = json.loads((REPO / "schemas/steps/import_oracle.json").read_text())
    common = json.loads((REPO / "schemas/steps/common.json").read_text())
    registry = Registry().with_resource(common["$id"], Resource.from_contents(common))
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    good = {"credentials": "oracle", "schema": "GOCDB5", "last_good": "/var/lib/x",
            "remap_tablespace": {"GOCDB5": "USERS"}, "table_exists_action": "REPLACE",
            "min_rows": {"SITES": 1}, "ignore_errors": ["ORA-31684"], "poll_interval": "2s",
            "timeout": "2h"}
    assert list(validator.iter_errors(good)) == []
    assert schema["x-secret-refs"] == ["credentials"]
    for bad in ({"schema": "GOCDB5", "last_good": "/x"},
                {**good, "schema": "GOC DB"}, {**good, "password": "x"},
                {**good, "table_exists_action": "replace"}):
        assert list(validator.iter_errors(bad)), bad


# --- the whole job through the engine: fetch (local) → import_oracle → archive ----------


def _job_policy(tmp_path: Path, source: Path) -> Path:
    creds = tmp_path / "oracle.ini"
    creds.write_text(f"[oracle]\nuser = system\npassword = {PASSWORD}\ndsn = localhost/XE\n")
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
          poll_interval: 0s
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
    fake_oracle.on(r"FROM dba_users", rows=[(0,)])  # a fresh standby: no schema yet
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
    fake_oracle.on(r"FROM dba_users", rows=[(1,)])
    fake_oracle.fail(r"DBMS_DATAPUMP\.START_JOB", "ORA-39002: invalid operation", nth=1)
    second = run_job(policy, "import")
    assert not second.ok
    assert "ORA-39002" in second.reason and f"re-imported last good dump {archived[0]}" \
        in second.reason
    rollback_file = fake_oracle.matching("KU\\$_FILE_TYPE_DUMP_FILE")[-1]
    assert rollback_file.binds["filename"] == archived[0].name
    assert sorted((tmp_path / "archive").iterdir()) == archived  # the bad dump is not archived
    lines = (tmp_path / "import.log").read_text().splitlines()
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
