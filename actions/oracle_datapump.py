"""Oracle Data Pump plumbing for `import_oracle`: credentials, SQL and PL/SQL, job control.

`Session` wraps one DB-API connection and knows the SQL and PL/SQL the import needs
(DBMS_DATAPUMP, DBMS_STATS, directory objects, the dump header, the dictionary views);
the step in actions/import_oracle.py decides what to do and when, including the rollback.

Every DBMS_DATAPUMP call names its parameters as the package specification (dbmsdp.sql)
does, so a misspelt name fails to compile instead of binding to the wrong parameter.
Errors are matched by number (`error.args[0].full_code` and the `ORA-nnnnn` lines of the
message stack), never by substring of the text.
"""
from __future__ import annotations

import configparser
import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oracledb

from actions.base import Context
from engine.errors import StepError

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_$#]{0,29}$")
_CODE = re.compile(r"\b((?:ORA|DPY|PLS|DPI)-\d{4,5})\b")
# Connection-level failures: the network, the listener, an instance starting or going down.
TRANSIENT = frozenset({"ORA-12541", "ORA-12514", "ORA-12170", "ORA-03113", "ORA-03135",
                       "ORA-12537", "ORA-12528", "ORA-01033", "ORA-01034", "ORA-01089",
                       "DPY-6005", "DPY-4011", "DPY-6000", "DPY-4024"})
# The client lost the session: a job it started may still be running in the server.
SESSION_LOST = frozenset({"DPY-4011", "DPY-1001", "ORA-03113", "ORA-03135", "DPY-4024",
                          "ORA-01013"})
# Unable to open/read/write a file through a directory object: usually OS permissions.
FILE_ACCESS = frozenset({"ORA-29283", "ORA-31640", "ORA-39087", "ORA-39070", "ORA-27037",
                         "ORA-31641", "ORA-39000"})
NO_SUCH_JOB = "ORA-31626"
USER_MISSING = "ORA-01918"
# Data Pump wraps the real cause in these: ask GET_STATUS for the detail.
GENERIC_DATAPUMP = frozenset({"ORA-39001", "ORA-39002", "ORA-39005", "ORA-39006",
                              "ORA-31627"})

# Item codes of DBMS_DATAPUMP.GET_DUMPFILE_INFO (KU$_DFHDR_* in dbmsdp.sql).
DFHDR_MASTER_PRESENT = 2
DFHDR_FILE_NUMBER = 4
DFHDR_CREATION_DATE = 6
DFHDR_DB_VERSION = 15
DFHDR_MASTER_PIECE_COUNT = 16
DFHDR_METADATA_ENCRYPTED = 19
DFHDR_DATA_ENCRYPTED = 20
DFHDR_COLUMNS_ENCRYPTED = 21
DFHDR_ENCRYPTION_MODE = 22
# KU$_DFHDR_ENCMODE_PASSWORD, _DUAL, _TRANS (1 is UNKNOWN and 2 NONE: not a reason to refuse).
ENCRYPTED_MODES = frozenset({3, 4, 5})

# Job states (DBA_DATAPUMP_JOBS.STATE, GET_STATUS job_state) in which no worker runs.
TERMINAL = frozenset({"COMPLETED", "STOPPED", "NOT RUNNING"})
MAX_ENTRIES = 200           # error entries read per GET_STATUS call (the rest are counted)
MAX_ENTRY_TEXT = 2000       # ku$_LogLine1010.LogText is VARCHAR2(2000)

# The roles and privileges the step needs, as SESSION_ROLES / SESSION_PRIVS show them.
REQUIRED_ROLES = ("DATAPUMP_IMP_FULL_DATABASE",)
REQUIRED_PRIVS = ("CREATE ANY DIRECTORY", "DROP USER", "ANALYZE ANY", "SELECT ANY TABLE",
                  "SELECT ANY DICTIONARY")
KILL_PRIVS = ("ALTER USER", "ALTER SYSTEM")
MIN_VERSION = (19, 0)       # the oldest release whose package spec this module was checked on

_HEADER_BLOCK = """
DECLARE
  info ku$_dumpfile_info;
  ftype NUMBER;
BEGIN
  DBMS_DATAPUMP.GET_DUMPFILE_INFO(filename => :filename, directory => :directory,
                                  info_table => info, filetype => ftype);
  :filetype := ftype;
  OPEN :items FOR SELECT i.item_code, i.value FROM TABLE(info) i;
END;"""

# One GET_STATUS (immediate return): the job's state, its progress and its error entries,
# each entry with its number and its whole (possibly multi-line) text.
_STATUS_BLOCK = """
DECLARE
  sts ku$_Status;
  job_state VARCHAR2(30);
BEGIN
  DBMS_DATAPUMP.GET_STATUS(handle => :handle,
      mask => DBMS_DATAPUMP.KU$_STATUS_JOB_ERROR + DBMS_DATAPUMP.KU$_STATUS_JOB_STATUS,
      timeout => 0, job_state => job_state, status => sts);
  :state := job_state;
  :percent := sts.job_status.percent_done;
  OPEN :entries FOR SELECT e.errorNumber, e.LogText FROM TABLE(sts.error) e;
END;"""

_ERROR_BLOCK = """
DECLARE
  sts ku$_Status;
  job_state VARCHAR2(30);
BEGIN
  DBMS_DATAPUMP.GET_STATUS(handle => :handle, mask => DBMS_DATAPUMP.KU$_STATUS_JOB_ERROR,
      timeout => 0, job_state => job_state, status => sts);
  OPEN :entries FOR SELECT e.errorNumber, e.LogText FROM TABLE(sts.error) e;
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
    from engine.safefile import FileRefused, read_limited

    try:  # a regular file of at most 64 KiB (engine/safefile.py)
        text = read_limited(path, "secret").decode("utf-8", errors="replace")
    except FileRefused as error:
        raise StepError(f"cannot read Oracle credentials: {error}") from None
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
    """An Oracle name safe to quote into SQL (upper-cased), or a StepError."""
    if not _IDENT.match(value or ""):
        raise StepError(f"import_oracle: {what} {value!r} is not a plain Oracle name "
                        "(letters, digits, _ $ #, at most 30, starting with a letter)")
    return value.upper()


def codes(error: BaseException) -> list[str]:
    """Every error code of an exception: python-oracledb's `full_code` first, then each
    `ORA-`/`DPY-`/`PLS-` code of its message stack, in order, without repeats."""
    found: list[str] = []
    first = error.args[0] if error.args else None
    full_code = getattr(first, "full_code", "") or ""
    if full_code:
        found.append(full_code)
    for code in _CODE.findall(str(first if first is not None else error)):
        if code not in found:
            found.append(code)
    return found


def has_code(error: BaseException, wanted: Iterable[str]) -> bool:
    """Whether any of the exception's codes is in `wanted`."""
    wanted = set(wanted)
    return any(code in wanted for code in codes(error))


def describe(error: BaseException, limit: int = 600) -> str:
    """An error on one line: every line of its stack except PL/SQL call sites and help links."""
    first = error.args[0] if error.args else error
    text = str(first).strip() or type(error).__name__
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.strip().startswith(("ORA-06512", "Help:"))]
    joined = " | ".join(lines) or text.splitlines()[0]
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def first_line(error: BaseException) -> str:
    """The first line of an error (for errors whose first line says it all)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def is_transient(error: BaseException) -> bool:
    """A connection-level failure worth retrying (the network, the listener, a restart)."""
    return has_code(error, TRANSIENT)


@dataclass
class Entry:
    """One error entry of a Data Pump job: its number and its whole text (may be several lines)."""

    number: int | None
    text: str

    @property
    def codes(self) -> list[str]:
        found = [f"ORA-{self.number:05d}"] if self.number else []
        for code in _CODE.findall(self.text):
            if code not in found:
                found.append(code)
        return found

    @property
    def cause(self) -> str | None:
        """The innermost error this entry reports (the last code in its text)."""
        return self.codes[-1] if self.codes else None

    def one_line(self, limit: int = 300) -> str:
        joined = " | ".join(ln.strip() for ln in self.text.splitlines() if ln.strip())
        return joined if len(joined) <= limit else joined[: limit - 1] + "…"


@dataclass
class Status:
    """One GET_STATUS answer."""

    state: str
    percent: int | None
    entries: list[Entry]
    dropped: int = 0


@dataclass
class Header:
    """What the server read from a dump file's header (GET_DUMPFILE_INFO)."""

    filetype: int | None
    items: dict[int, str]

    def flag(self, code: int) -> bool:
        return str(self.items.get(code) or "").strip().upper() in {"1", "Y", "YES", "TRUE"}


@dataclass
class Job:
    """A row of DBA_DATAPUMP_JOBS."""

    name: str
    state: str
    attached: int


@dataclass
class Verified:
    """What the schema holds after an import."""

    tables: int
    rows: int
    objects: dict[str, int]
    invalid: int


def version_tuple(text: str | None) -> tuple[int, ...]:
    """'19.3.0.0.0' or '19.00.00.00.00' → (19, 3, 0, 0, 0); unknown → ()."""
    parts = re.findall(r"\d+", text or "")
    return tuple(int(p) for p in parts)


def resolved_dir(path: str | Path) -> str:
    """A directory path with symlinks resolved: Oracle 18c+ refuses directory objects whose
    path goes through a symlink (ORA-29283 at the first file access)."""
    return os.path.realpath(str(path))


class Session:
    """The SQL and PL/SQL of one connection; every statement goes through `_run`."""

    def __init__(self, connection: Any, ctx: Context, *, action: str = "import") -> None:
        self.connection = connection
        self.ctx = ctx
        # Shown in V$SESSION (MODULE, ACTION) so a DBA sees who holds the session and why.
        for name, value in (("module", "failover-engine"), ("action", f"import_oracle {action}"),
                            ("client_identifier", ctx.policy_name)):
            with contextlib.suppress(AttributeError, oracledb.Error):  # tags are cosmetic
                setattr(connection, name, value[:48])

    def set_call_timeout(self, seconds: float) -> None:
        """Bound every round trip (python-oracledb's `call_timeout`, in milliseconds)."""
        self.connection.call_timeout = max(1000, int(seconds * 1000))

    def _run(self, sql: str, binds: Mapping[str, Any] | None = None,
             outs: Mapping[str, Any] | None = None,
             max_rows: int | None = None) -> tuple[list[Any], dict[str, Any]]:
        """Execute one statement; `outs` maps OUT bind names to str, int or "cursor"."""
        with self.connection.cursor() as cursor:
            variables: dict[str, Any] = {}
            for name, kind in (outs or {}).items():
                if kind == "cursor":
                    variables[name] = cursor.var(oracledb.DB_TYPE_CURSOR)
                elif kind is str:
                    variables[name] = cursor.var(str, 4000)
                else:
                    variables[name] = cursor.var(int)
            cursor.execute(sql, {**(binds or {}), **variables})
            rows = cursor.fetchall() if sql.lstrip().upper().startswith("SELECT") else []
            values: dict[str, Any] = {}
            for name, var in variables.items():
                value = var.getvalue()
                if outs and outs[name] == "cursor":
                    value = _drain(value, max_rows or MAX_ENTRIES)
                values[name] = value
            return rows, values

    def count(self, sql: str, binds: Mapping[str, Any] | None = None) -> int:
        rows, _ = self._run(sql, binds)
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    # --- the database we are connected to ----------------------------------------------

    def container(self) -> str:
        rows, _ = self._run("SELECT SYS_CONTEXT('USERENV', 'CON_NAME') FROM dual")
        return str(rows[0][0]) if rows and rows[0][0] is not None else ""

    def version(self) -> str:
        return str(getattr(self.connection, "version", "") or "")

    def privileges(self) -> tuple[set[str], set[str]]:
        privs, _ = self._run("SELECT privilege FROM session_privs")
        roles, _ = self._run("SELECT role FROM session_roles")
        return ({str(p[0]).upper() for p in privs}, {str(r[0]).upper() for r in roles})

    def server_problems(self, *, kill_sessions: bool, schema: str) -> list[str]:
        """What makes this database unfit for the step: the container root, an old release,
        missing privileges. One line each."""
        problems: list[str] = []
        container = self.container()
        if container.upper() == "CDB$ROOT":
            problems.append("connected to the container root CDB$ROOT, not the pluggable "
                            f"database that holds {schema}: the dsn must name the PDB's "
                            "service (e.g. localhost:1521/FREEPDB1 or XEPDB1)")
        version = self.version()
        if version and version_tuple(version)[:2] < MIN_VERSION:
            problems.append(f"Oracle {version} is older than {MIN_VERSION[0]}c, the oldest "
                            "release this step's PL/SQL was checked against")
        privs, roles = self.privileges()
        wanted = REQUIRED_PRIVS + (KILL_PRIVS if kill_sessions else ())
        if "SELECT_CATALOG_ROLE" in roles:   # the dictionary views through the role: as good
            privs = privs | {"SELECT ANY DICTIONARY"}
        missing = [p for p in wanted if p not in privs]
        missing += [f"role {r}" for r in REQUIRED_ROLES if r not in roles]
        if missing:
            problems.append(f"the Oracle user lacks {', '.join(missing)} (see "
                            "docs/operations.md, Oracle standby)")
        return problems

    # --- files and directory objects ---------------------------------------------------

    def create_directory(self, name: str, path: str) -> None:
        if any(c in path for c in "\n\r\0'") or not path.startswith("/"):
            raise StepError(f"import_oracle: directory path {path!r} must be an absolute path "
                            "without quotes")
        self._run(f"CREATE OR REPLACE DIRECTORY \"{name}\" AS '{path}'")

    def read_header(self, filename: str, directory: str) -> Header:
        _, out = self._run(_HEADER_BLOCK, {"filename": filename, "directory": directory},
                           {"filetype": int, "items": "cursor"}, max_rows=64)
        items = {int(code): ("" if value is None else str(value))
                 for code, value in out.get("items") or [] if code is not None}
        filetype = out.get("filetype")
        return Header(None if filetype is None else int(filetype), items)

    # --- the schema --------------------------------------------------------------------

    def schema_state(self, schema: str) -> tuple[bool, int]:
        exists = self.count("SELECT COUNT(*) FROM dba_users WHERE username = :username",
                            {"username": schema}) > 0
        objects = self.count("SELECT COUNT(*) FROM dba_objects WHERE owner = :owner",
                             {"owner": schema}) if exists else 0
        return exists, objects

    def lock_and_kill(self, schema: str) -> int:
        """Lock the schema's account and kill its sessions (so DROP USER is not refused with
        ORA-01940); returns how many sessions were killed."""
        self._run(f'ALTER USER "{schema}" ACCOUNT LOCK')
        rows, _ = self._run("SELECT sid, serial#, inst_id FROM gv$session WHERE username = "
                            ":username", {"username": schema})
        for sid, serial, instance in rows:
            self._run(f"ALTER SYSTEM KILL SESSION '{int(sid)},{int(serial)},@{int(instance)}' "
                      "IMMEDIATE")
        return len(rows)

    def unlock(self, schema: str) -> None:
        self._run(f'ALTER USER "{schema}" ACCOUNT UNLOCK')

    def drop_user(self, schema: str, missing_ok: bool = False) -> None:
        # Wait for other sessions' locks on the schema's tables instead of failing half-way.
        self._run("ALTER SESSION SET DDL_LOCK_TIMEOUT = 60")
        try:
            self._run(f'DROP USER "{schema}" CASCADE')
        except oracledb.Error as error:
            if missing_ok and has_code(error, {USER_MISSING}):  # already gone
                return
            raise

    # --- Data Pump jobs ----------------------------------------------------------------

    def jobs(self) -> list[Job]:
        """The Data Pump jobs this session's user owns (DBA_DATAPUMP_JOBS)."""
        rows, _ = self._run("SELECT job_name, state, attached_sessions FROM dba_datapump_jobs "
                            "WHERE owner_name = SYS_CONTEXT('USERENV', 'SESSION_USER')")
        return [Job(str(name), str(state or "").upper(), int(attached or 0))
                for name, state, attached in rows]

    def job_exists(self, name: str) -> bool:
        return self.count("SELECT COUNT(*) FROM dba_datapump_jobs WHERE owner_name = "
                          "SYS_CONTEXT('USERENV', 'SESSION_USER') AND job_name = :job_name",
                          {"job_name": name}) > 0

    def attach(self, name: str) -> int | None:
        """A handle on our job `name`, or None when the job no longer exists (ORA-31626)."""
        try:
            _, out = self._run("BEGIN :handle := DBMS_DATAPUMP.ATTACH(job_name => :job_name); "
                               "END;", {"job_name": name}, {"handle": int})
        except oracledb.Error as error:
            if has_code(error, {NO_SUCH_JOB}):
                return None
            raise
        return None if out.get("handle") is None else int(out["handle"])

    def stop_job(self, handle: int, *, immediate: bool = True) -> None:
        """STOP_JOB and drop its master table (keep_master => 0); the handle is detached."""
        self._run("BEGIN DBMS_DATAPUMP.STOP_JOB(handle => :handle, immediate => :immediate, "
                  "keep_master => 0, delay => 0); END;",
                  {"handle": handle, "immediate": 1 if immediate else 0})

    def drop_master(self, name: str) -> None:
        """The documented last resort for an orphaned job: drop its master table."""
        self._run(f'DROP TABLE "{name}" PURGE')

    def stop_and_forget(self, name: str, *, wait: float,
                        sleep: Callable[[float], None], interval: float) -> bool:
        """Attach to our job `name`, stop it, and wait (up to `wait` seconds of `interval`
        polls) until it has left DBA_DATAPUMP_JOBS. True when it is gone."""
        handle = self.attach(name)
        if handle is not None:
            try:
                self.stop_job(handle)
            except oracledb.Error as error:
                if not has_code(error, {NO_SUCH_JOB, "ORA-31623", "ORA-39004"}):
                    raise
        waited = 0.0
        while self.job_exists(name):
            if waited >= wait:
                return False
            sleep(interval)
            waited += interval
        return True

    def define_import(self, step: Any, filename: str, directory: str, log_directory: str,
                      job_name: str) -> int:
        """OPEN and fully define a schema import (nothing runs until START_JOB)."""
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
                      {"handle": handle, "filename": f"{job_name}.log",
                       "directory": log_directory})
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
        except Exception as error:
            detail = self.error_detail(handle) if isinstance(error, oracledb.Error) else []
            self.discard(handle)
            if detail:
                raise ImportFailed(f"{describe(error)} — {'; '.join(detail)}") from None
            raise
        return handle

    def discard(self, handle: int) -> None:
        """Best effort: a defined job that will not run must not linger with its master table.
        A job still DEFINING is removed entirely when its last session detaches (the Data
        Pump API's documented way to drop a job that never started)."""
        with contextlib.suppress(Exception):  # the job may be gone already
            self._run("BEGIN DBMS_DATAPUMP.DETACH(handle => :handle); END;", {"handle": handle})

    def start_job(self, handle: int) -> None:
        try:
            self._run("BEGIN DBMS_DATAPUMP.START_JOB(handle => :handle); END;",
                      {"handle": handle})
        except oracledb.Error as error:
            detail = [] if has_code(error, SESSION_LOST) else self.error_detail(handle)
            if detail:
                raise ImportFailed(f"{describe(error)} — {'; '.join(detail)}") from None
            raise

    def status(self, handle: int) -> Status:
        _, out = self._run(_STATUS_BLOCK, {"handle": handle},
                           {"state": str, "percent": int, "entries": "cursor"})
        entries, dropped = _entries(out.get("entries") or [])
        percent = out.get("percent")
        return Status(str(out.get("state") or "").upper(),
                      None if percent is None else int(percent), entries, dropped)

    def error_detail(self, handle: int) -> list[str]:
        """The job's own error entries (GET_STATUS with KU$_STATUS_JOB_ERROR), one line each:
        the detail behind a generic ORA-39001/ORA-39002."""
        try:
            _, out = self._run(_ERROR_BLOCK, {"handle": handle}, {"entries": "cursor"})
        except Exception:  # noqa: BLE001 - the detail is a bonus; the caller has the error
            return []
        entries, _ = _entries(out.get("entries") or [])
        return [entry.one_line() for entry in entries[:5]]

    def detach(self, handle: int) -> None:
        # A COMPLETED job may have released the handle already.
        with contextlib.suppress(Exception):
            self._run("BEGIN DBMS_DATAPUMP.DETACH(handle => :handle); END;", {"handle": handle})

    # --- after the import --------------------------------------------------------------

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
            found = self.count(f'SELECT COUNT(*) FROM "{schema}"."{name}"')
            if found < minimum:
                raise ImportFailed(f"table {schema}.{name} has {found} rows, expected at least "
                                   f"{minimum}")
        kinds, _ = self._run("SELECT object_type, COUNT(*) FROM dba_objects WHERE owner = :owner "
                             "GROUP BY object_type", {"owner": schema})
        invalid = self.count("SELECT COUNT(*) FROM dba_objects WHERE owner = :owner AND "
                             "status = 'INVALID'", {"owner": schema})
        return Verified(len(tables), sum(tables.values()),
                        {str(k): int(v) for k, v in kinds}, invalid)


def _drain(cursor: Any, limit: int) -> list[tuple[Any, ...]]:
    """Up to `limit` rows of a REF CURSOR OUT bind, then one more to know whether there are more."""
    if cursor is None:
        return []
    rows = list(cursor.fetchmany(limit + 1))
    return rows


def _entries(rows: list[tuple[Any, ...]]) -> tuple[list[Entry], int]:
    entries = [Entry(None if number is None else int(number), str(text or "")[:MAX_ENTRY_TEXT])
               for number, text in rows[:MAX_ENTRIES]]
    return [e for e in entries if e.text.strip() or e.number], max(0, len(rows) - MAX_ENTRIES)


def log_file_errors(path: Path, limit: int = 50) -> list[str]:
    """`ORA-` lines of the job's log file when it is readable from here (same host)."""
    found: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if "ORA-" in line and len(found) < limit:
                    found.append(line.strip()[:MAX_ENTRY_TEXT])
    except OSError:
        return []
    return found


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
