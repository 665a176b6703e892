"""The fake Oracle rejects what python-oracledb or the server would (issue 17, finding 11).

Each test runs a mistake the old fake accepted silently and shows the error the strict one
raises, shaped as python-oracledb shapes it (`args[0].full_code`, `.code`, multi-line text).
"""
from __future__ import annotations

from typing import Any

import oracledb
import pytest

from tests.fixtures.fake_oracle import FakeOracle, Status, placeholders


def _run(connection: Any, sql: str, binds: dict[str, Any] | None = None,
         outs: dict[str, Any] | None = None) -> dict[str, Any]:
    with connection.cursor() as cursor:
        variables = {name: cursor.var(typ) for name, typ in (outs or {}).items()}
        cursor.execute(sql, {**(binds or {}), **variables})
        return {name: var.getvalue() for name, var in variables.items()}


def _open(connection: Any, name: str = "FE_X_1") -> int:
    out = _run(connection, "BEGIN :handle := DBMS_DATAPUMP.OPEN(operation => 'IMPORT', "
                           "job_mode => 'SCHEMA', job_name => :job_name); END;",
               {"job_name": name}, {"handle": int})
    return int(out["handle"])


def _code(error: pytest.ExceptionInfo[BaseException]) -> str:
    return str(error.value.args[0].full_code)


@pytest.fixture
def fake() -> FakeOracle:
    return FakeOracle()


# --- mistake 1: misspelt parameter names and package constants ----------------------------


def test_misspelt_parameter_name_is_refused(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    handle = _open(connection)
    with pytest.raises(oracledb.DatabaseError) as error:
        _run(connection, "BEGIN DBMS_DATAPUMP.ADD_FILE(handle => :handle, file_name => :f, "
                         "directory => 'D'); END;", {"handle": handle, "f": "x.dmp"})
    assert _code(error) == "ORA-06550"
    assert "PLS-00306: wrong number or types of arguments in call to 'ADD_FILE'" \
        in str(error.value)


def test_misspelt_constant_is_refused(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    handle = _open(connection)
    with pytest.raises(oracledb.DatabaseError) as error:
        _run(connection, "BEGIN DBMS_DATAPUMP.ADD_FILE(handle => :handle, filename => 'x.dmp', "
                         "directory => 'D', filetype => DBMS_DATAPUMP.KU$_FILE_TYPE_DUMPFILE); "
                         "END;", {"handle": handle})
    assert "PLS-00302: component 'KU$_FILE_TYPE_DUMPFILE' must be declared" in str(error.value)


def test_missing_required_parameter_and_unknown_procedure(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError, match="PLS-00306.*'OPEN'"):
        _run(connection, "BEGIN :h := DBMS_DATAPUMP.OPEN(operation => 'IMPORT'); END;",
             outs={"h": int})
    with pytest.raises(oracledb.DatabaseError, match="PLS-00302: component 'GATHER_STATS'"):
        _run(connection, "BEGIN DBMS_STATS.GATHER_STATS(ownname => 'X'); END;")


# --- mistake 2: bind names the statement does not have ----------------------------------


def test_bind_name_not_in_the_statement_is_dpy_4008(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError) as error:
        _run(connection, "SELECT COUNT(*) FROM dba_users WHERE username = :username",
             {"user_name": "GOCDB5"})
    assert _code(error) == "DPY-4008"
    assert 'no bind placeholder named ":USER_NAME" was found in the SQL text' in str(error.value)


def test_placeholder_without_a_value_is_ora_01008(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError) as error:
        _run(connection, "SELECT COUNT(*) FROM dba_users WHERE username = :username")
    assert _code(error) == "ORA-01008" and error.value.args[0].code == 1008
    assert "Help: https://docs.oracle.com/error-help/db/ora-01008/" in str(error.value)


def test_placeholders_are_parsed_as_the_driver_does() -> None:
    sql = ("BEGIN :a := 'x :not_a_bind'; /* :nor_this */ -- :nor_that\n"
           ":B := q'[it's :quoted]'; \"COL:X\" := :a; :\"Mixed\" := :1; END;")
    assert placeholders(sql) == ["A", "B", "Mixed", "1"]


# --- mistake 3: OUT variables of the wrong type or size ---------------------------------


def test_out_variable_of_the_wrong_type_is_refused(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError) as error:
        _run(connection, "BEGIN :handle := DBMS_DATAPUMP.OPEN(operation => 'IMPORT', "
                         "job_mode => 'SCHEMA', job_name => 'FE_X_1'); END;",
             outs={"handle": str})
    assert _code(error) == "ORA-06502"
    assert ":handle is a VARCHAR2 variable but is assigned a NUMBER" in str(error.value)


def test_string_longer_than_its_variable_is_refused(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    with connection.cursor() as cursor:
        var = cursor.var(str, 3)
        with pytest.raises(oracledb.DatabaseError, match="character string buffer too small"):
            cursor.execute("BEGIN :s := :v; END;", {"s": var, "v": "too long"})


def test_assigning_to_a_plain_value_is_refused(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError, match="was not bound with cursor.var"):
        _run(connection, "BEGIN :handle := DBMS_DATAPUMP.OPEN(operation => 'IMPORT', "
                         "job_mode => 'SCHEMA', job_name => 'FE_X_1'); END;", {"handle": None})


# --- mistake 4: Data Pump calls in the wrong order or on the wrong session --------------


def test_definition_after_start_is_ora_39004(fake: FakeOracle, tmp_path) -> None:
    (tmp_path / "x.dmp").write_bytes(b"x")
    connection = fake.connect(user="system", password="x", dsn="d")
    _run(connection, f"CREATE OR REPLACE DIRECTORY \"D\" AS '{tmp_path}'")
    handle = _open(connection)
    _run(connection, "BEGIN DBMS_DATAPUMP.ADD_FILE(handle => :handle, filename => 'x.dmp', "
                     "directory => 'D'); END;", {"handle": handle})
    _run(connection, "BEGIN DBMS_DATAPUMP.START_JOB(handle => :handle); END;",
         {"handle": handle})
    with pytest.raises(oracledb.DatabaseError) as error:
        _run(connection, "BEGIN DBMS_DATAPUMP.SET_PARAMETER(handle => :handle, "
                         "name => 'TABLE_EXISTS_ACTION', value => 'REPLACE'); END;",
             {"handle": handle})
    assert _code(error) == "ORA-39004"
    assert 'ORA-06512: at "SYS.DBMS_DATAPUMP"' in str(error.value)
    with pytest.raises(oracledb.DatabaseError, match="ORA-39004"):
        _run(connection, "BEGIN DBMS_DATAPUMP.START_JOB(handle => :handle); END;",
             {"handle": handle})


def test_start_without_a_dump_file_and_duplicate_names(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    handle = _open(connection)
    with pytest.raises(oracledb.DatabaseError, match="ORA-39002"):
        _run(connection, "BEGIN DBMS_DATAPUMP.START_JOB(handle => :handle); END;",
             {"handle": handle})
    with pytest.raises(oracledb.DatabaseError, match="ORA-31634: job already exists"):
        _open(connection)
    with pytest.raises(oracledb.DatabaseError, match="ORA-39001"):
        _open(connection, "FR_GOCDB5_STANDBYX_261126071703")  # 31 bytes, COMPATIBLE 12.1


def test_handles_belong_to_their_session_and_jobs_outlive_it(fake: FakeOracle,
                                                             tmp_path) -> None:
    (tmp_path / "x.dmp").write_bytes(b"x")
    first = fake.connect(user="system", password="x", dsn="d")
    _run(first, f"CREATE OR REPLACE DIRECTORY \"D\" AS '{tmp_path}'")
    handle = _open(first, "FE_RUNNING")
    _run(first, "BEGIN DBMS_DATAPUMP.ADD_FILE(handle => :handle, filename => 'x.dmp', "
                "directory => 'D'); END;", {"handle": handle})
    _run(first, "BEGIN DBMS_DATAPUMP.START_JOB(handle => :handle); END;", {"handle": handle})
    _open(first, "FE_DEFINING")
    second = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError, match="ORA-31623"):
        _run(second, "BEGIN DBMS_DATAPUMP.DETACH(handle => :handle); END;", {"handle": handle})
    first.close()
    # The started job runs on; the one still DEFINING went with its session.
    assert list(fake.jobs) == ["FE_RUNNING"]
    out = _run(second, "BEGIN :h := DBMS_DATAPUMP.ATTACH(job_name => :job_name); END;",
               {"job_name": "FE_RUNNING"}, {"h": int})
    assert isinstance(out["h"], int)
    with pytest.raises(oracledb.DatabaseError, match="ORA-31626: job does not exist"):
        _run(second, "BEGIN :h := DBMS_DATAPUMP.ATTACH(job_name => :job_name); END;",
             {"job_name": "FE_DEFINING"}, {"h": int})


def test_lost_connection_is_dpy_4011_and_the_session_is_dead(fake: FakeOracle) -> None:
    fake.fail("FROM dual", "ORA-03113: end-of-file on communication channel")
    connection = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError) as error:
        _run(connection, "SELECT SYS_CONTEXT('USERENV', 'CON_NAME') FROM dual")
    assert _code(error) == "DPY-4011" and error.value.args[0].isrecoverable
    assert str(error.value).splitlines()[:2] == [
        "DPY-4011: the database or network closed the connection",
        "ORA-03113: end-of-file on communication channel"]
    with pytest.raises(oracledb.InterfaceError) as dead:
        _run(connection, "SELECT privilege FROM session_privs")
    assert _code(dead) == "DPY-1001"


def test_status_is_modelled_not_null(fake: FakeOracle, tmp_path) -> None:
    (tmp_path / "x.dmp").write_bytes(b"x")
    fake.script_job("^FE_", [Status("EXECUTING", 10, errors=[(39082, "ORA-39082: warn")]),
                             Status("COMPLETED", 100)])
    connection = fake.connect(user="system", password="x", dsn="d")
    _run(connection, f"CREATE OR REPLACE DIRECTORY \"D\" AS '{tmp_path}'")
    handle = _open(connection)
    _run(connection, "BEGIN DBMS_DATAPUMP.ADD_FILE(handle => :handle, filename => 'x.dmp', "
                     "directory => 'D'); END;", {"handle": handle})
    _run(connection, "BEGIN DBMS_DATAPUMP.START_JOB(handle => :handle); END;",
         {"handle": handle})
    block = ("DECLARE sts ku$_Status; job_state VARCHAR2(30); BEGIN "
             "DBMS_DATAPUMP.GET_STATUS(handle => :handle, mask => "
             "DBMS_DATAPUMP.KU$_STATUS_JOB_ERROR + DBMS_DATAPUMP.KU$_STATUS_JOB_STATUS, "
             "timeout => 0, job_state => job_state, status => sts); :state := job_state; "
             ":percent := sts.job_status.percent_done; "
             "OPEN :entries FOR SELECT e.errorNumber, e.LogText FROM TABLE(sts.error) e; END;")
    outs = {"state": str, "percent": int, "entries": oracledb.DB_TYPE_CURSOR}
    first = _run(connection, block, {"handle": handle}, outs)
    assert (first["state"], first["percent"]) == ("EXECUTING", 10)
    assert first["entries"].fetchall() == [(39082, "ORA-39082: warn")]
    second = _run(connection, block, {"handle": handle}, outs)
    assert (second["state"], second["entries"].fetchall()) == ("COMPLETED", [])


# --- the rest of the server ---------------------------------------------------------------


def test_unscripted_statements_are_denied(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError, match="ORA-00942"):
        _run(connection, "SELECT table_name FROM dba_tables")
    with pytest.raises(oracledb.DatabaseError, match="PLS-00103"):
        _run(connection, "BEGIN NULL; END;")
    assert fake.unscripted == ["SELECT table_name FROM dba_tables", "NULL"]


def test_users_are_modelled(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    with pytest.raises(oracledb.DatabaseError) as error:
        _run(connection, 'DROP USER "GOCDB5" CASCADE')
    assert _code(error) == "ORA-01918"
    fake.users.add("GOCDB5")
    fake.sessions["GOCDB5"] = [(1, 2, 1)]
    with pytest.raises(oracledb.DatabaseError, match="ORA-01940"):
        _run(connection, 'DROP USER "GOCDB5" CASCADE')
    fake.sessions.clear()
    _run(connection, 'DROP USER "GOCDB5" CASCADE')
    assert fake.users == set()


def test_connection_attributes(fake: FakeOracle) -> None:
    connection = fake.connect(user="system", password="x", dsn="d")
    connection.call_timeout = 1000
    connection.module = "failover-engine"
    assert connection.version == "19.3.0.0.0"
    with pytest.raises(TypeError):
        connection.call_timeout = 1.5
