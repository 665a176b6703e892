"""import_oracle: refresh an Oracle schema from a Data Pump dump; the last good dump is the net.

The Oracle path of the standby refresh (the original `1_runDbUpdate.sh`), through
python-oracledb in thin mode (no Oracle client needed) and the DBMS_DATAPUMP PL/SQL API
instead of `sqlplus`/`impdp` with their output grepped for "error":

1. Before anything is dropped: the dump file is checked locally (exists, regular, not empty,
   readable; its sha256 when given or when a `<dump>.sha256` sidecar exists), the Oracle
   directory object is created, and the server reads the dump's header
   (DBMS_DATAPUMP.GET_DUMPFILE_INFO: a Data Pump file whose master table is present, i.e.
   an export that finished). The last good dump gets the same checks. The import job is
   then fully defined (OPEN, ADD_FILE dump and log, schema filter, REMAP_TABLESPACE,
   TABLE_EXISTS_ACTION) so a bad file name or directory fails here too.
2. `DROP USER <schema> CASCADE`, START_JOB, the job status polled (DBMS_DATAPUMP.GET_STATUS)
   until it ends; every error line the job reports (and every `ORA-` line of its log file,
   when the log is readable from here) is logged and fails the step.
3. `DBMS_STATS.GATHER_SCHEMA_STATS`, then verification: at least `min_tables` tables, every
   table in `expect_tables`, exact `COUNT(*)` of each table in `min_rows`. The outcome
   carries `data_completed`: the dump file's mtime (fetch keeps the source's), which the job
   records for `check dump-age --data-age`.

Oracle cannot rename a schema, so there is no staging swap: if anything after the drop
fails, the step re-imports the last good dump (`last_good`: the archived copy of the last
successful import — a file, or a directory whose newest file is used) on a fresh
connection and fails with a line that reports both the failure and the rollback. If the
rollback fails too, the line says the standby schema may be empty and what to do. When the
schema exists and no last good dump can be found, the step refuses to drop it.

Credentials come from a secrets file (mode 0600/0400), never argv or the policy. Either an
INI file

    [oracle]
    user = system
    password = ...
    dsn = localhost:1521/XEPDB1        # or host / port / service_name

or a single line `user/password@dsn` (sqlplus style). The user needs DROP USER,
CREATE ANY DIRECTORY, DATAPUMP_IMP_FULL_DATABASE and SELECT on DBA_USERS/DBA_TABLES/
DBA_OBJECTS. The dump must be readable by the database server's OS user through
`directory_path` (default: the dump's directory as seen from here).

    jobs:
      import:
        schedule: "17 * * * *"
        status_log: /var/log/failover-engine/import.log
        steps:
          - fetch: {source: "someuser@dbhost:/exports/goc5dump.dmp",
                    known_hosts: /etc/gocdb/known_hosts, identity: /root/.ssh/id_ed25519}
          - import_oracle:
              credentials: oracle                      # a key of the policy's `secrets`
              schema: GOCDB5
              last_good: /var/lib/failover-engine/archive
              directory_path: /var/lib/failover-engine/work/import   # as the DB server sees it
              remap_tablespace: {GOCDB5: USERS}
              table_exists_action: REPLACE
              expect_tables: [SITES, SERVICES]
              min_rows: {SITES: 100}
          - archive: {dir: /var/lib/failover-engine/archive, keep: 1}

No Oracle server runs in CI: the tests drive this module through a fake at the DB-API
boundary (tests/fixtures/fake_oracle.py) that records every call and can fail any of them.
"""
from __future__ import annotations

import configparser
import contextlib
import hashlib
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import oracledb

from actions.base import Context, Outcome, Plan
from engine.durations import parse_duration
from engine.errors import StepError


def default_connect(*, user: str, password: str, dsn: str) -> Any:
    """A thin-mode python-oracledb connection (thin is the default: no client libraries)."""
    return oracledb.connect(user=user, password=password, dsn=dsn)


# The one way this module reaches a database: tests replace it (or pass `connect=`).
connect_factory: Callable[..., Any] = default_connect

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_$#]{0,29}$")
_TERMINAL = {"COMPLETED", "STOPPED", "NOT RUNNING"}
_TRANSIENT = ("ORA-12541", "ORA-12514", "ORA-12170", "ORA-03113", "ORA-03135", "ORA-12537",
              "ORA-12528", "ORA-01033", "ORA-01034", "DPY-6005", "DPY-4011", "DPY-6000")
# Unable to open/read/write a file through a directory object: usually OS permissions.
_FILE_ACCESS = ("ORA-29283", "ORA-31640", "ORA-39087", "ORA-39070", "ORA-27037")
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


class _ImportFailed(Exception):
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


def _ident(value: str, what: str) -> str:
    if not _IDENT.match(value or ""):
        raise StepError(f"import_oracle: {what} {value!r} is not a plain Oracle name "
                        "(letters, digits, _ $ #, at most 30, starting with a letter)")
    return value.upper()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _transient(error: BaseException) -> bool:
    return any(code in str(error) for code in _TRANSIENT)


@dataclass
class _Verified:
    tables: int
    rows: int
    objects: dict[str, int]
    invalid: int


class _Session:
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
            raise _ImportFailed(f"{what} {path} is {kind} (the server read its header as "
                                f"type {filetype}): truncated or corrupt?")
        if str(out.get("master_present") or "").strip().upper() not in {"1", "Y", "YES", "TRUE"}:
            raise _ImportFailed(f"{what} {path} has no master table: the export that wrote it "
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

    def define_import(self, step: ImportOracle, filename: str, directory: str,
                      job_name: str) -> int:
        _, out = self._run("BEGIN :handle := DBMS_DATAPUMP.OPEN(operation => 'IMPORT', "
                           "job_mode => 'SCHEMA', job_name => :job_name); END;",
                           {"job_name": job_name}, {"handle": int})
        handle = out.get("handle")
        if handle is None:
            raise _ImportFailed(f"DBMS_DATAPUMP.OPEN returned no handle for job {job_name}")
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

    def run_job(self, step: ImportOracle, handle: int, job_name: str,
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
                raise _ImportFailed(f"Data Pump job {job_name} stopped: the step was asked to "
                                    "stop (timeout or shutdown)")
            self.ctx.sleep(step.poll_interval)
        with contextlib.suppress(Exception):
            self._run("BEGIN DBMS_DATAPUMP.DETACH(handle => :handle); END;", {"handle": handle})
        for line in _log_file_errors(Path(log_dir) / f"{job_name}.log"):
            if line not in errors:
                errors.append(line)
                self.ctx.log(f"import_oracle: {job_name}.log: {line}")
        bad = [line for line in errors if not any(code in line for code in step.ignore_errors)]
        if state != "COMPLETED" or bad:
            shown = " | ".join(bad[:_MAX_SURFACED])
            more = f" (and {len(bad) - _MAX_SURFACED} more)" if len(bad) > _MAX_SURFACED else ""
            ended = "completed" if state == "COMPLETED" else f"ended {state or 'in no state'}"
            raise _ImportFailed(f"Data Pump job {job_name} {ended} with {len(bad)} error "
                                f"line(s): {shown or 'no error text'}{more}")
        return errors

    def gather_stats(self, schema: str) -> None:
        self._run("BEGIN DBMS_STATS.GATHER_SCHEMA_STATS(ownname => :ownname); END;",
                  {"ownname": schema})

    def verify(self, step: ImportOracle) -> _Verified:
        schema = step.schema
        rows, _ = self._run("SELECT table_name, num_rows FROM dba_tables WHERE owner = :owner",
                            {"owner": schema})
        tables = {str(name).upper(): int(num or 0) for name, num in rows}
        if len(tables) < step.min_tables:
            raise _ImportFailed(f"schema {schema} has {len(tables)} table(s) after the import, "
                                f"expected at least {step.min_tables}")
        missing = [t for t in step.expect_tables if t not in tables]
        if missing:
            raise _ImportFailed(f"schema {schema} lacks expected table(s) {', '.join(missing)}")
        for name, minimum in step.min_rows.items():
            found = self.count(f'SELECT COUNT(*) FROM "{schema}"."{name}"', {})
            if found < minimum:
                raise _ImportFailed(f"table {schema}.{name} has {found} rows, expected at least "
                                    f"{minimum}")
        kinds, _ = self._run("SELECT object_type, COUNT(*) FROM dba_objects WHERE owner = :owner "
                             "GROUP BY object_type", {"owner": schema})
        invalid = self.count("SELECT COUNT(*) FROM dba_objects WHERE owner = :owner AND "
                             "status = 'INVALID'", {"owner": schema})
        return _Verified(len(tables), sum(tables.values()),
                         {str(k): int(v) for k, v in kinds}, invalid)


def _log_file_errors(path: Path) -> list[str]:
    """`ORA-` lines of the job's log file when it is readable from here (same host)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.strip() for line in handle if "ORA-" in line]
    except OSError:
        return []


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ImportOracle:
    """Replace an Oracle schema from a Data Pump dump; re-import the last good dump on failure."""

    kind: ClassVar[str] = "import_oracle"

    def __init__(self, params: Mapping[str, Any], *, connect: Callable[..., Any] | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.credentials = str(params["credentials"])
        self.schema = _ident(str(params["schema"]), "schema")
        self.dump = Path(params["dump"]) if params.get("dump") else None
        self.last_good = Path(params["last_good"])
        self.directory = _ident(str(params.get("directory", "FAILOVER_DUMP")), "directory")
        self.last_good_directory = _ident(str(params.get("last_good_directory",
                                                         f"{self.directory[:27]}_LG")),
                                          "last_good_directory")
        self.directory_path = params.get("directory_path")
        self.last_good_directory_path = params.get("last_good_directory_path")
        self.remap_tablespace = {_ident(str(k), "tablespace"): _ident(str(v), "tablespace")
                                 for k, v in dict(params.get("remap_tablespace") or {}).items()}
        self.table_exists_action = str(params.get("table_exists_action", "REPLACE")).upper()
        if self.table_exists_action not in {"SKIP", "APPEND", "TRUNCATE", "REPLACE"}:
            raise StepError(f"import_oracle: table_exists_action {self.table_exists_action!r} "
                            "must be SKIP, APPEND, TRUNCATE or REPLACE")
        self.expect_tables = [_ident(str(t), "expect_tables entry")
                              for t in params.get("expect_tables") or []]
        self.min_rows = {_ident(str(k), "min_rows table"): int(v)
                         for k, v in dict(params.get("min_rows") or {}).items()}
        self.min_tables = int(params.get("min_tables", 1))
        self.ignore_errors = [str(code) for code in params.get("ignore_errors") or []]
        self.poll_interval = parse_duration(params.get("poll_interval", "5s"))
        self.sha256 = str(params["sha256"]).lower() if params.get("sha256") else None
        self._connect = connect
        self._now = now or (lambda: datetime.now(UTC))

    # --- local checks (read-only: plan and apply share them) ----------------------------

    def _dump_path(self, ctx: Context) -> Path:
        dump = self.dump or ctx.input_file
        if dump is None:
            raise StepError("import_oracle: no dump file: set `dump`, or put a fetch/unzip step "
                            "before this one")
        return Path(dump)

    def _check_file(self, path: Path, what: str) -> int:
        try:
            info = path.stat()
        except FileNotFoundError:
            raise StepError(f"{what} {path} does not exist; nothing was dropped") from None
        except OSError as error:
            raise StepError(f"cannot stat {what} {path}: {error.strerror}; nothing was "
                            "dropped") from None
        if not stat.S_ISREG(info.st_mode):
            raise StepError(f"{what} {path} is not a regular file; nothing was dropped")
        if info.st_size == 0:
            raise StepError(f"{what} {path} is empty (an interrupted transfer?); nothing was "
                            "dropped")
        try:
            with open(path, "rb") as handle:
                handle.read(4096)
        except OSError as error:
            raise StepError(f"cannot read {what} {path}: {error.strerror}; nothing was "
                            "dropped") from None
        return info.st_size

    def _check_digest(self, dump: Path) -> None:
        expected = self.sha256
        sidecar = dump.with_name(dump.name + ".sha256")
        if expected is None and sidecar.is_file():
            words = sidecar.read_text(encoding="utf-8", errors="replace").split()
            expected = words[0].lower() if words else ""
        if expected is None:
            return
        actual = _sha256(dump)
        if actual != expected:
            raise StepError(f"dump {dump} does not match its sha256 ({actual[:12]}… ≠ "
                            f"{expected[:12]}…): truncated or corrupt; nothing was dropped — "
                            "fetch it again")

    def _find_last_good(self, dump: Path) -> Path | None:
        target = self.last_good
        if target.is_file():
            return target
        if not target.is_dir():
            return None
        candidates = [p for p in target.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p != dump
                      and not p.name.endswith((".sha256", ".log", ".tmp"))]
        return max(candidates, key=lambda p: p.stat().st_mtime, default=None)

    def _server_dir(self, configured: Any, local: Path) -> str:
        return str(configured) if configured else str(local.parent)

    # --- the contract -------------------------------------------------------------------

    def host_problems(self, ctx: Context) -> list[str]:
        """For `validate --host`: the credentials parse, the directories exist."""
        problems: list[str] = []
        try:
            read_credentials(Path(ctx.secret(self.credentials)))
        except Exception as error:  # noqa: BLE001 - SecretError or StepError: report, go on
            problems.append(f"import_oracle credentials {self.credentials!r}: "
                            f"{_first_line(error)}")
        if not self.last_good.exists() and not self.last_good.parent.is_dir():
            problems.append(f"import_oracle last_good {self.last_good}: neither it nor its "
                            "directory exists, so a failed import could not be rolled back")
        for key in ("directory_path", "last_good_directory_path"):
            value = getattr(self, key)
            if value and not Path(value).is_dir():
                problems.append(f"import_oracle {key} {value} is not a directory here")
        return problems

    def plan(self, ctx: Context) -> Plan:
        """Local checks only: a dry-run must not create directory objects or define jobs."""
        try:
            dump = self._dump_path(ctx)
            size = self._check_file(dump, "dump")
            last_good = self._find_last_good(dump)
            if last_good is not None:
                self._check_file(last_good, "last good dump")
            ctx.secret(self.credentials)
        except (StepError, OSError) as error:
            return Plan(summary=f"replace schema {self.schema}: cannot start",
                        problem=_first_line(error))
        net = (f"rollback dump {last_good}" if last_good else
               f"NO last good dump under {self.last_good} (refused if {self.schema} exists)")
        return Plan(summary=f"replace schema {self.schema} with {dump} ({size} bytes) via "
                            f"DBMS_DATAPUMP; {net}",
                    before={"schema": self.schema}, after={"schema": self.schema,
                                                           "dump": str(dump)})

    def apply(self, ctx: Context) -> Outcome:
        dump = self._dump_path(ctx)
        size = self._check_file(dump, "dump")
        self._check_digest(dump)
        # fetch keeps the source's mtime, so this is when the export finished writing it:
        # the data's own age, recorded by the job as `data_completed`.
        written = datetime.fromtimestamp(dump.stat().st_mtime, UTC).isoformat(timespec="seconds")
        last_good = self._find_last_good(dump)
        if last_good is not None:
            self._check_file(last_good, "last good dump")
        creds = read_credentials(Path(ctx.secret(self.credentials)))
        stamp = self._now().astimezone(UTC).strftime("%y%m%d%H%M%S")
        job = f"FE_{self.schema[:12]}_{stamp}"
        dump_dir = self._server_dir(self.directory_path, dump)

        session = self._open(creds, ctx)
        try:
            session.create_directory(self.directory, dump_dir)
            created = session.check_header(dump.name, self.directory, "dump", dump)
            if last_good is not None:
                session.create_directory(self.last_good_directory,
                                         self._server_dir(self.last_good_directory_path,
                                                          last_good))
                session.check_header(last_good.name, self.last_good_directory,
                                     "last good dump", last_good)
            existed, objects_before = session.schema_state(self.schema)
            if existed and last_good is None:
                raise _ImportFailed(f"no last good dump under {self.last_good}: refusing to drop "
                                    f"schema {self.schema} (a failed import would leave the "
                                    "standby empty); put a known good dump there")
            handle = session.define_import(self, dump.name, self.directory, job)
        except (_ImportFailed, oracledb.Error) as error:
            self._close(session)
            hint = ""
            if any(code in str(error) for code in _FILE_ACCESS):
                hint = f" (can the database server's OS user read and write {dump_dir}?)"
            raise StepError(f"import_oracle {self.schema}: {_first_line(error)}{hint}; nothing "
                            "was dropped", retryable=_transient(error)) from None
        except BaseException:
            self._close(session)
            raise

        # Point of no return: from here on the schema may be gone, so every failure —
        # an Oracle error, a verification, even a bug — goes through the rollback.
        ctx.log(f"import_oracle: dropping {self.schema} ({objects_before} objects) and "
                f"importing {dump}")
        try:
            session.drop_user(self.schema, missing_ok=True)
        except Exception as error:  # noqa: BLE001 - decide below whether anything was lost
            if self._unchanged(session, existed, objects_before):
                session.stop_job(handle)
                self._close(session)
                raise StepError(f"import_oracle: DROP USER {self.schema} failed: "
                                f"{_first_line(error)}; nothing was dropped (are sessions still "
                                "connected as that user?)") from None
            self._close(session)
            self._rollback(ctx, creds, dump, last_good, f"DROP USER failed: "
                           f"{_first_line(error)}")
        try:
            session.run_job(self, handle, job, dump_dir)
            session.gather_stats(self.schema)
            verified = session.verify(self)
        except Exception as error:  # noqa: BLE001 - any failure after the drop rolls back
            self._close(session)
            self._rollback(ctx, creds, dump, last_good, _first_line(error))
        self._close(session)
        if verified.invalid:
            ctx.log(f"import_oracle: {verified.invalid} invalid object(s) in {self.schema}")
        summary = (f"imported {dump} into {self.schema}: {verified.tables} tables, "
                   f"{verified.rows} rows, {sum(verified.objects.values())} objects")
        return Outcome(summary=summary,
                       before={"schema": self.schema, "existed": existed,
                               "objects": objects_before},
                       after={"schema": self.schema, "dump": str(dump), "bytes": size,
                              "tables": verified.tables, "rows": verified.rows,
                              "objects": verified.objects, "invalid": verified.invalid,
                              "dump_created": created, "data_completed": written})

    # --- plumbing -----------------------------------------------------------------------

    def _open(self, creds: Credentials, ctx: Context) -> _Session:
        connect = self._connect or connect_factory
        try:
            connection = connect(user=creds.user, password=creds.password, dsn=creds.dsn)
        except oracledb.Error as error:
            raise StepError(f"cannot connect to Oracle {creds.dsn} as {creds.user}: "
                            f"{_first_line(error)}; nothing was dropped",
                            retryable=_transient(error)) from None
        return _Session(connection, ctx)

    @staticmethod
    def _close(session: _Session) -> None:
        with contextlib.suppress(Exception):
            session.connection.close()

    def _unchanged(self, session: _Session, existed: bool, objects_before: int) -> bool:
        try:
            return session.schema_state(self.schema) == (existed, objects_before)
        except Exception:  # noqa: BLE001 - cannot tell: assume the worst and roll back
            return False

    def _rollback(self, ctx: Context, creds: Credentials, dump: Path, last_good: Path | None,
                  failure: str) -> NoReturn:
        head = f"import of {dump} into {self.schema} failed: {failure}"
        if last_good is None:
            raise StepError(f"{head}; there was no schema before and no last good dump, so "
                            "there is nothing to roll back to — fix the cause and rerun the job")
        ctx.log(f"import_oracle: {head}; re-importing last good dump {last_good}")
        stamp = self._now().astimezone(UTC).strftime("%y%m%d%H%M%S")
        job = f"FE_RB_{self.schema[:12]}_{stamp}"
        lg_dir = self._server_dir(self.last_good_directory_path, last_good)
        session: _Session | None = None
        try:
            session = self._open(creds, ctx)
            session.create_directory(self.last_good_directory, lg_dir)
            session.drop_user(self.schema, missing_ok=True)
            handle = session.define_import(self, last_good.name, self.last_good_directory, job)
            session.run_job(self, handle, job, lg_dir)
            session.gather_stats(self.schema)
            verified = session.verify(self)
        except Exception as error:  # noqa: BLE001 - whatever broke the rollback, say so plainly
            raise StepError(
                f"{head}; ROLLBACK FAILED too: re-importing last good dump {last_good}: "
                f"{_first_line(error)} — the standby schema {self.schema} may be EMPTY or partial:"
                f" do not engage the failover; re-import a good dump by hand (impdp "
                f"schemas={self.schema} directory={self.last_good_directory} "
                f"dumpfile={last_good.name}) and rerun the job") from None
        finally:
            if session is not None:
                self._close(session)
        raise StepError(f"{head}; rolled back: re-imported last good dump {last_good} "
                        f"({verified.tables} tables, {verified.rows} rows) — the standby still "
                        "serves the previous data")
