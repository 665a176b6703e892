"""Oracle Data Pump plumbing for `import_oracle`: credentials, SQL and PL/SQL, job polling.

`Session` wraps one DB-API connection and knows the PL/SQL the import needs
(DBMS_DATAPUMP, DBMS_STATS, directory objects, the dump header check); the step in
actions/import_oracle.py decides what to do and when, including the rollback.
"""
from __future__ import annotations

import configparser
import contextlib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oracledb

from actions.base import Context
from engine.errors import StepError

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_$#]{0,29}$")
_TERMINAL = {"COMPLETED", "STOPPED", "NOT RUNNING"}
_TRANSIENT = ("ORA-12541", "ORA-12514", "ORA-12170", "ORA-03113", "ORA-03135", "ORA-12537",
              "ORA-12528", "ORA-01033", "ORA-01034", "DPY-6005", "DPY-4011", "DPY-6000")
# Unable to open/read/write a file through a directory object: usually OS permissions.
FILE_ACCESS = ("ORA-29283", "ORA-31640", "ORA-39087", "ORA-39070", "ORA-27037")
_MAX_SURFACED = 10

_HEADER_BLOCK = """
DECLARE
  info ku$_dumpfile_info;
  ftype NUMBER;
BEGIN
  DBMS_DATAPUMP.GET_DUMPFILE_INFO(filename => :filename, directory => :directory,
                                  info_table => info, filetype => ftype);
  :filetype := ftype;
  IF info IS NOT NULL AND info.COUNT > 0 THEN
    FOR i IN info.FIRST .. info.LAST LOOP
      IF info(i).item_code = DBMS_DATAPUMP.KU$_DFHDR_MASTER_PRESENT THEN
        :master_present := info(i).value;
      ELSIF info(i).item_code = DBMS_DATAPUMP.KU$_DFHDR_CREATION_DATE THEN
        :created := info(i).value;
      END IF;
    END LOOP;
  END IF;
END;"""

_STATUS_BLOCK = """
DECLARE
  sts ku$_Status;
  job_state VARCHAR2(30);
  lines VARCHAR2(32767);
BEGIN
  DBMS_DATAPUMP.GET_STATUS(:handle,
      DBMS_DATAPUMP.KU$_STATUS_JOB_ERROR + DBMS_DATAPUMP.KU$_STATUS_JOB_STATUS,
      0, job_state, sts);
  :state := job_state;
  IF BITAND(sts.mask, DBMS_DATAPUMP.KU$_STATUS_JOB_ERROR) != 0 AND sts.error IS NOT NULL
     AND sts.error.COUNT > 0 THEN
    FOR i IN sts.error.FIRST .. sts.error.LAST LOOP
      lines := SUBSTR(lines || sts.error(i).LogText || CHR(10), 1, 32000);
    END LOOP;
  END IF;
  :errors := lines;
  IF BITAND(sts.mask, DBMS_DATAPUMP.KU$_STATUS_JOB_STATUS) != 0 THEN
    :percent := sts.job_status.percent_done;
  END IF;
END;"""


class ImportFailed(Exception):
    """A failure found by this module (job errors, verification), as one line."""


@dataclass(frozen=True)
class Credentials:
    """Who to connect as. `repr` never shows the password."""

    user: str
    password: str = field(repr=False)
    dsn: str


def read_credentials(path: Path) -> Credentials:
    """Parse an INI (`[oracle]` user/password/dsn or host/port/service_name) or `user/pw@dsn`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise StepError(f"cannot read Oracle credentials {path}: "
                        f"{error.strerror or error}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip()[0] not in "#;"]
    if any(ln.startswith("[") for ln in lines):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as error:
            raise StepError(f"{path}: not a valid INI file ({type(error).__name__})") from None
        name = "oracle" if parser.has_section("oracle") else (parser.sections() or [""])[0]
        section = parser[name] if name else {}
        dsn = section.get("dsn") or ""
        if not dsn and section.get("host"):
            dsn = (f"{section.get('host')}:{section.get('port', '1521')}/"
                   f"{section.get('service_name', '')}")
        user, password = section.get("user", ""), section.get("password", "")
    elif len(lines) == 1 and (match := re.match(r"^([^/@\s]+)/(.*)@(\S+)$", lines[0])):
        user, password, dsn = match.groups()
    else:
        raise StepError(f"{path}: expected an INI file with [oracle] user, password, dsn, or one "
                        "line user/password@dsn")
    missing = [k for k, v in (("user", user), ("password", password), ("dsn", dsn)) if not v]
    if missing:
        raise StepError(f"{path}: Oracle credentials lack {', '.join(missing)}")
    return Credentials(user, password, dsn)


def ident(value: str, what: str) -> str:
    if not _IDENT.match(value or ""):
        raise StepError(f"import_oracle: {what} {value!r} is not a plain Oracle name "
                        "(letters, digits, _ $ #, at most 30, starting with a letter)")
    return value.upper()


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def is_transient(error: BaseException) -> bool:
    return any(code in str(error) for code in _TRANSIENT)


@dataclass
class Verified:
    tables: int
    rows: int
    objects: dict[str, int]
    invalid: int


class Session:
    """The SQL and PL/SQL of one connection; every statement goes through `_run`."""

    def __init__(self, connection: Any, ctx: Context) -> None:
        self.connection = connection
        self.ctx = ctx

    def _run(self, sql: str, binds: Mapping[str, Any] | None = None,
             outs: Mapping[str, type] | None = None) -> tuple[Any, dict[str, Any]]:
        with self.connection.cursor() as cursor:
            variables = {name: cursor.var(typ, 32767 if typ is str else 0)
                         for name, typ in (outs or {}).items()}
            cursor.execute(sql, {**(binds or {}), **variables})
            rows = cursor.fetchall() if sql.lstrip().upper().startswith("SELECT") else []
            return rows, {name: var.getvalue() for name, var in variables.items()}

    def count(self, sql: str, binds: Mapping[str, Any]) -> int:
        rows, _ = self._run(sql, binds)
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def create_directory(self, name: str, path: str) -> None:
        if any(c in path for c in "\n\r\0") or not path.startswith("/"):
            raise StepError(f"import_oracle: directory path {path!r} must be an absolute path")
        quoted = path.replace("'", "''")
        self._run(f"CREATE OR REPLACE DIRECTORY \"{name}\" AS '{quoted}'")

    def check_header(self, filename: str, directory: str, what: str, path: Path) -> str | None:
        _, out = self._run(_HEADER_BLOCK, {"filename": filename, "directory": directory},
                           {"filetype": int, "master_present": str, "created": str})
        filetype = out.get("filetype")
        if filetype is None or int(filetype) != 1:
            kind = "a classic exp file" if filetype == 2 else "not a Data Pump dump file"
            raise ImportFailed(f"{what} {path} is {kind} (the server read its header as "
                                f"type {filetype}): truncated or corrupt?")
        if str(out.get("master_present") or "").strip().upper() not in {"1", "Y", "YES", "TRUE"}:
            raise ImportFailed(f"{what} {path} has no master table: the export that wrote it "
                                "did not finish (incomplete dump)")
        created = out.get("created")
        return str(created) if created else None

    def schema_state(self, schema: str) -> tuple[bool, int]:
        exists = self.count("SELECT COUNT(*) FROM dba_users WHERE username = :username",
                            {"username": schema}) > 0
        objects = self.count("SELECT COUNT(*) FROM dba_objects WHERE owner = :owner",
                             {"owner": schema}) if exists else 0
        return exists, objects

    def drop_user(self, schema: str, missing_ok: bool = False) -> None:
        try:
            self._run(f'DROP USER "{schema}" CASCADE')
        except oracledb.Error as error:
            if missing_ok and "ORA-01918" in str(error):  # user does not exist: already gone
                return
            raise

    def define_import(self, step: Any, filename: str, directory: str,
                      job_name: str) -> int:
        _, out = self._run("BEGIN :handle := DBMS_DATAPUMP.OPEN(operation => 'IMPORT', "
                           "job_mode => 'SCHEMA', job_name => :job_name); END;",
                           {"job_name": job_name}, {"handle": int})
        handle = out.get("handle")
        if handle is None:
            raise ImportFailed(f"DBMS_DATAPUMP.OPEN returned no handle for job {job_name}")
        handle = int(handle)
        try:
            self._run("BEGIN DBMS_DATAPUMP.ADD_FILE(handle => :handle, filename => :filename, "
                      "directory => :directory, filetype => DBMS_DATAPUMP.KU$_FILE_TYPE_DUMP_FILE);"
                      " END;", {"handle": handle, "filename": filename, "directory": directory})
            self._run("BEGIN DBMS_DATAPUMP.ADD_FILE(handle => :handle, filename => :filename, "
                      "directory => :directory, filetype => DBMS_DATAPUMP.KU$_FILE_TYPE_LOG_FILE,"
                      " reusefile => 1); END;",
                      {"handle": handle, "filename": f"{job_name}.log", "directory": directory})
            self._run("BEGIN DBMS_DATAPUMP.METADATA_FILTER(handle => :handle, "
                      "name => 'SCHEMA_EXPR', value => :value); END;",
                      {"handle": handle, "value": f"IN ('{step.schema}')"})
            for old, new in step.remap_tablespace.items():
                self._run("BEGIN DBMS_DATAPUMP.METADATA_REMAP(handle => :handle, "
                          "name => 'REMAP_TABLESPACE', old_value => :old_value, value => :value);"
                          " END;", {"handle": handle, "old_value": old, "value": new})
            self._run("BEGIN DBMS_DATAPUMP.SET_PARAMETER(handle => :handle, "
                      "name => 'TABLE_EXISTS_ACTION', value => :value); END;",
                      {"handle": handle, "value": step.table_exists_action})
        except Exception:
            self.stop_job(handle)
            raise
        return handle

    def stop_job(self, handle: int) -> None:
        # Best effort: a job that is defined but failed must not linger with its master table.
        with contextlib.suppress(Exception):
            self._run("BEGIN DBMS_DATAPUMP.STOP_JOB(handle => :handle, immediate => 1, "
                      "keep_master => 0); END;", {"handle": handle})

    def run_job(self, step: Any, handle: int, job_name: str,
                log_dir: str) -> list[str]:
        """Start the job, poll it to its end; return its error lines (raise if it failed)."""
        self._run("BEGIN DBMS_DATAPUMP.START_JOB(handle => :handle); END;", {"handle": handle})
        errors: list[str] = []
        last_percent = -1
        while True:
            _, out = self._run(_STATUS_BLOCK, {"handle": handle},
                               {"state": str, "errors": str, "percent": int})
            for line in str(out.get("errors") or "").splitlines():
                if line.strip() and line.strip() not in errors:
                    errors.append(line.strip())
                    self.ctx.log(f"import_oracle: {job_name}: {line.strip()}")
            percent = out.get("percent")
            if percent is not None and int(percent) != last_percent:
                last_percent = int(percent)
                self.ctx.log(f"import_oracle: {job_name}: {last_percent}% done")
            state = str(out.get("state") or "").upper()
            if state in _TERMINAL:
                break
            if self.ctx.should_stop():
                self.stop_job(handle)
                raise ImportFailed(f"Data Pump job {job_name} stopped: the step was asked to "
                                    "stop (timeout or shutdown)")
            self.ctx.sleep(step.poll_interval)
        with contextlib.suppress(Exception):
            self._run("BEGIN DBMS_DATAPUMP.DETACH(handle => :handle); END;", {"handle": handle})
        for line in log_file_errors(Path(log_dir) / f"{job_name}.log"):
            if line not in errors:
                errors.append(line)
                self.ctx.log(f"import_oracle: {job_name}.log: {line}")
        bad = [line for line in errors if not any(code in line for code in step.ignore_errors)]
        if state != "COMPLETED" or bad:
            shown = " | ".join(bad[:_MAX_SURFACED])
            more = f" (and {len(bad) - _MAX_SURFACED} more)" if len(bad) > _MAX_SURFACED else ""
            ended = "completed" if state == "COMPLETED" else f"ended {state or 'in no state'}"
            raise ImportFailed(f"Data Pump job {job_name} {ended} with {len(bad)} error "
                                f"line(s): {shown or 'no error text'}{more}")
        return errors

    def gather_stats(self, schema: str) -> None:
        self._run("BEGIN DBMS_STATS.GATHER_SCHEMA_STATS(ownname => :ownname); END;",
                  {"ownname": schema})

    def verify(self, step: Any) -> Verified:
        schema = step.schema
        rows, _ = self._run("SELECT table_name, num_rows FROM dba_tables WHERE owner = :owner",
                            {"owner": schema})
        tables = {str(name).upper(): int(num or 0) for name, num in rows}
        if len(tables) < step.min_tables:
            raise ImportFailed(f"schema {schema} has {len(tables)} table(s) after the import, "
                                f"expected at least {step.min_tables}")
        missing = [t for t in step.expect_tables if t not in tables]
        if missing:
            raise ImportFailed(f"schema {schema} lacks expected table(s) {', '.join(missing)}")
        for name, minimum in step.min_rows.items():
            found = self.count(f'SELECT COUNT(*) FROM "{schema}"."{name}"', {})
            if found < minimum:
                raise ImportFailed(f"table {schema}.{name} has {found} rows, expected at least "
                                    f"{minimum}")
        kinds, _ = self._run("SELECT object_type, COUNT(*) FROM dba_objects WHERE owner = :owner "
                             "GROUP BY object_type", {"owner": schema})
        invalid = self.count("SELECT COUNT(*) FROM dba_objects WHERE owner = :owner AND "
                             "status = 'INVALID'", {"owner": schema})
        return Verified(len(tables), sum(tables.values()),
                         {str(k): int(v) for k, v in kinds}, invalid)


def log_file_errors(path: Path) -> list[str]:
    """`ORA-` lines of the job's log file when it is readable from here (same host)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.strip() for line in handle if "ORA-" in line]
    except OSError:
        return []


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


