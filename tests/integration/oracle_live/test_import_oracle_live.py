"""import_oracle against a real Oracle database: the fake's scenarios, for anyone who has one.

Opt-in (marker `oracle_live`, deselected unless FAILOVER_ORACLE_DSN is set). It needs:

- FAILOVER_ORACLE_DSN: the pluggable database's service on loopback, e.g.
  `127.0.0.1:1521/FREEPDB1` (the tests talk only to 127.0.0.0/8 or ::1);
- FAILOVER_ORACLE_CREDENTIALS: a credentials file (mode 0600) in the step's format whose
  user has the privileges docs/operations.md lists (the tests also create and drop a
  schema FELIVE…, so CREATE USER too);
- FAILOVER_ORACLE_SHARED_DIR: a directory under /tmp that the database server sees at the
  same path, writable by its OS user (Data Pump reads and writes files there).

With Oracle Free in a container, for example:

    mkdir -m 0777 /tmp/oracle-share
    docker run -d --name ofree -p 127.0.0.1:1521:1521 -e ORACLE_PASSWORD=... \\
        -v /tmp/oracle-share:/tmp/oracle-share gvenzl/oracle-free:23-slim
    # as SYSTEM in FREEPDB1: CREATE USER feadmin IDENTIFIED BY ...;
    #   GRANT CREATE SESSION, CREATE USER, DROP USER, CREATE ANY DIRECTORY, ANALYZE ANY,
    #         SELECT ANY TABLE, SELECT ANY DICTIONARY, UNLIMITED TABLESPACE,
    #         DATAPUMP_EXP_FULL_DATABASE, DATAPUMP_IMP_FULL_DATABASE TO feadmin;
    printf '[oracle]\\nuser = feadmin\\npassword = ...\\ndsn = 127.0.0.1:1521/FREEPDB1\\n' \\
        > /tmp/oracle.ini && chmod 600 /tmp/oracle.ini
    FAILOVER_ORACLE_DSN=127.0.0.1:1521/FREEPDB1 FAILOVER_ORACLE_CREDENTIALS=/tmp/oracle.ini \\
        FAILOVER_ORACLE_SHARED_DIR=/tmp/oracle-share \\
        .venv/bin/python -m pytest tests/integration/oracle_live -v

These tests have not run in this project's CI (no Oracle server can run there).
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import oracledb
import pytest

import actions.oracle_datapump as datapump
from actions.base import Context
from actions.import_oracle import ImportOracle
from actions.oracle_datapump import read_credentials
from engine.errors import StepError
from tests.support import step_context

pytestmark = pytest.mark.oracle_live

ROWS = 150


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(f"{name} is not set: see tests/integration/oracle_live/"
                    "test_import_oracle_live.py for what the live tests need")
    return value


def _loopback(dsn: str) -> None:
    host = dsn.split("/")[0].rsplit(":", 1)[0].strip("[]") or "localhost"
    addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        pytest.fail(f"FAILOVER_ORACLE_DSN {dsn}: the tests talk only to loopback addresses")


@pytest.fixture(scope="module")
def live() -> Iterator[dict[str, Any]]:
    """A schema FELIVE…, exported once with DBMS_DATAPUMP into the shared directory."""
    dsn = _env("FAILOVER_ORACLE_DSN")
    _loopback(dsn)
    creds = read_credentials(Path(_env("FAILOVER_ORACLE_CREDENTIALS")))
    shared = Path(_env("FAILOVER_ORACLE_SHARED_DIR"))
    schema = f"FELIVE{secrets.token_hex(3).upper()}"
    base = shared / schema.lower()
    for sub in ("export", "work", "archive"):
        (base / sub).mkdir(parents=True)
        (base / sub).chmod(0o777)   # the database's OS user writes its files here
    connection = oracledb.connect(user=creds.user, password=creds.password, dsn=dsn)
    cursor = connection.cursor()
    password = secrets.token_urlsafe(12)
    cursor.execute(f'CREATE USER "{schema}" IDENTIFIED BY "{password}" QUOTA UNLIMITED ON USERS '
                   "DEFAULT TABLESPACE USERS")
    cursor.execute(f'CREATE TABLE "{schema}"."SITES" (id NUMBER PRIMARY KEY, name VARCHAR2(40))')
    cursor.executemany(f'INSERT INTO "{schema}"."SITES" VALUES (:1, :2)',
                       [(i, f"site {i}") for i in range(ROWS)])
    connection.commit()
    cursor.execute(f"CREATE OR REPLACE DIRECTORY \"{schema}_EXP\" AS '{base / 'export'}'")
    out = cursor.var(str)
    cursor.execute("""
DECLARE
  h NUMBER;
BEGIN
  h := DBMS_DATAPUMP.OPEN(operation => 'EXPORT', job_mode => 'SCHEMA', job_name => :job);
  DBMS_DATAPUMP.ADD_FILE(handle => h, filename => 'good.dmp', directory => :dir,
                         filetype => DBMS_DATAPUMP.KU$_FILE_TYPE_DUMP_FILE);
  DBMS_DATAPUMP.ADD_FILE(handle => h, filename => 'export.log', directory => :dir,
                         filetype => DBMS_DATAPUMP.KU$_FILE_TYPE_LOG_FILE);
  DBMS_DATAPUMP.METADATA_FILTER(handle => h, name => 'SCHEMA_EXPR', value => :expr);
  DBMS_DATAPUMP.START_JOB(handle => h);
  DBMS_DATAPUMP.WAIT_FOR_JOB(handle => h, job_state => :state);
END;""", {"job": f"{schema}_EXP", "dir": f"{schema}_EXP", "expr": f"IN ('{schema}')",
          "state": out})
    assert out.getvalue() == "COMPLETED", out.getvalue()
    good = base / "export" / "good.dmp"
    shutil.copy2(good, base / "archive" / "good.dmp")
    ini = base / "oracle.ini"
    ini.write_text(f"[oracle]\nuser = {creds.user}\npassword = {creds.password}\ndsn = {dsn}\n")
    ini.chmod(0o600)
    try:
        yield {"schema": schema, "base": base, "good": good, "creds": ini,
               "connection": connection}
    finally:
        with contextlib.suppress(oracledb.Error):
            cursor.execute(f'DROP USER "{schema}" CASCADE')
        for name in (f"{schema}_EXP", "FELIVE_D", "FELIVE_D_LG"):
            with contextlib.suppress(oracledb.Error):
                cursor.execute(f'DROP DIRECTORY "{name}"')
        connection.close()
        shutil.rmtree(base, ignore_errors=True)


def _ctx(live: dict[str, Any], tmp_path: Path, dump: Path, logs: list[str]) -> Context:
    return step_context(tmp_path, secret=live["creds"], policy_name="oracle-live",
                        step_id="job:live.1", log=logs.append, previous_output=dump,
                        swap_guard=lambda name: contextlib.nullcontext())


def _step(live: dict[str, Any], **params: Any) -> ImportOracle:
    base = {"credentials": "oracle", "schema": live["schema"],
            "last_good": str(live["base"] / "archive"), "directory": "FELIVE_D",
            "expect_tables": ["SITES"], "min_rows": {"SITES": ROWS}, "poll_interval": "1s",
            "timeout": "10m"}
    base.update(params)
    return ImportOracle(base, now=lambda: datetime.now(UTC))


def _rows(live: dict[str, Any]) -> int:
    cursor = live["connection"].cursor()
    cursor.execute(f'SELECT COUNT(*) FROM "{live["schema"]}"."SITES"')
    return int(cursor.fetchone()[0])


def _work_copy(live: dict[str, Any], name: str, data: bytes | None = None) -> Path:
    path = live["base"] / "work" / name
    if data is None:
        shutil.copy2(live["good"], path)
    else:
        path.write_bytes(data)
    path.chmod(0o644)
    return path


def test_live_host_checks(live: dict[str, Any], tmp_path: Path) -> None:
    ctx = _ctx(live, tmp_path, live["good"], [])
    assert _step(live).host_problems(ctx) == []


def test_live_import_replaces_the_schema(live: dict[str, Any], tmp_path: Path) -> None:
    logs: list[str] = []
    dump = _work_copy(live, "new.dmp")
    outcome = _step(live).apply(_ctx(live, tmp_path, dump, logs))
    assert outcome.after["tables"] >= 1 and outcome.after["statistics"] is True
    assert _rows(live) == ROWS
    assert outcome.facts["data_completed"]


def test_live_failed_verification_rolls_back(live: dict[str, Any], tmp_path: Path) -> None:
    dump = _work_copy(live, "new.dmp")
    with pytest.raises(StepError) as err:
        _step(live, min_rows={"SITES": ROWS * 10}).apply(_ctx(live, tmp_path, dump, []))
    assert "rolled back: re-imported last good dump" in str(err.value)
    assert _rows(live) == ROWS


def test_live_not_a_dump_drops_nothing(live: dict[str, Any], tmp_path: Path) -> None:
    dump = _work_copy(live, "junk.dmp", os.urandom(64 * 1024))
    with pytest.raises(StepError) as err:
        _step(live).apply(_ctx(live, tmp_path, dump, []))
    assert "nothing was dropped" in str(err.value)
    assert _rows(live) == ROWS


def test_live_lost_session_stops_the_job_before_the_rollback(live: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """The client drops its connection while the job runs: the rollback attaches to the job
    by name, stops it, waits until it has left DBA_DATAPUMP_JOBS, then re-imports."""
    dump = _work_copy(live, "new.dmp")
    real_status = datapump.Session.status
    calls = {"n": 0}

    def cut_once(self: Any, handle: int) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            self.connection.close()     # as if the network had gone, at the first poll
        return real_status(self, handle)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datapump.Session, "status", cut_once)
        with pytest.raises(StepError) as err:
            _step(live).apply(_ctx(live, tmp_path, dump, []))
    assert "rolled back" in str(err.value)
    assert _rows(live) == ROWS
