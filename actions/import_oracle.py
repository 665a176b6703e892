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

import contextlib
import stat
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import oracledb

from actions.base import Context, Outcome, Plan
from actions.oracle_datapump import (
    FILE_ACCESS,
    Credentials,
    ImportFailed,
    Session,
    first_line,
    ident,
    is_transient,
    read_credentials,
    sha256_of,
)
from engine.durations import parse_duration
from engine.errors import StepError


def default_connect(*, user: str, password: str, dsn: str) -> Any:
    """A thin-mode python-oracledb connection (thin is the default: no client libraries)."""
    return oracledb.connect(user=user, password=password, dsn=dsn)


# The one way this module reaches a database: tests replace it (or pass `connect=`).
connect_factory: Callable[..., Any] = default_connect

class ImportOracle:
    """Replace an Oracle schema from a Data Pump dump; re-import the last good dump on failure."""

    kind: ClassVar[str] = "import_oracle"

    def __init__(self, params: Mapping[str, Any], *, connect: Callable[..., Any] | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.credentials = str(params["credentials"])
        self.schema = ident(str(params["schema"]), "schema")
        self.dump = Path(params["dump"]) if params.get("dump") else None
        self.last_good = Path(params["last_good"])
        self.directory = ident(str(params.get("directory", "FAILOVER_DUMP")), "directory")
        self.last_good_directory = ident(str(params.get("last_good_directory",
                                                         f"{self.directory[:27]}_LG")),
                                          "last_good_directory")
        self.directory_path = params.get("directory_path")
        self.last_good_directory_path = params.get("last_good_directory_path")
        self.remap_tablespace = {ident(str(k), "tablespace"): ident(str(v), "tablespace")
                                 for k, v in dict(params.get("remap_tablespace") or {}).items()}
        self.table_exists_action = str(params.get("table_exists_action", "REPLACE")).upper()
        if self.table_exists_action not in {"SKIP", "APPEND", "TRUNCATE", "REPLACE"}:
            raise StepError(f"import_oracle: table_exists_action {self.table_exists_action!r} "
                            "must be SKIP, APPEND, TRUNCATE or REPLACE")
        self.expect_tables = [ident(str(t), "expect_tables entry")
                              for t in params.get("expect_tables") or []]
        self.min_rows = {ident(str(k), "min_rows table"): int(v)
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
        actual = sha256_of(dump)
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
                            f"{first_line(error)}")
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
                        problem=first_line(error))
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
                raise ImportFailed(f"no last good dump under {self.last_good}: refusing to drop "
                                    f"schema {self.schema} (a failed import would leave the "
                                    "standby empty); put a known good dump there")
            handle = session.define_import(self, dump.name, self.directory, job)
        except (ImportFailed, oracledb.Error) as error:
            self._close(session)
            hint = ""
            if any(code in str(error) for code in FILE_ACCESS):
                hint = f" (can the database server's OS user read and write {dump_dir}?)"
            raise StepError(f"import_oracle {self.schema}: {first_line(error)}{hint}; nothing "
                            "was dropped", retryable=is_transient(error)) from None
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
                                f"{first_line(error)}; nothing was dropped (are sessions still "
                                "connected as that user?)") from None
            self._close(session)
            self._rollback(ctx, creds, dump, last_good, f"DROP USER failed: "
                           f"{first_line(error)}")
        try:
            session.run_job(self, handle, job, dump_dir)
            session.gather_stats(self.schema)
            verified = session.verify(self)
        except Exception as error:  # noqa: BLE001 - any failure after the drop rolls back
            self._close(session)
            self._rollback(ctx, creds, dump, last_good, first_line(error))
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

    def _open(self, creds: Credentials, ctx: Context) -> Session:
        connect = self._connect or connect_factory
        try:
            connection = connect(user=creds.user, password=creds.password, dsn=creds.dsn)
        except oracledb.Error as error:
            raise StepError(f"cannot connect to Oracle {creds.dsn} as {creds.user}: "
                            f"{first_line(error)}; nothing was dropped",
                            retryable=is_transient(error)) from None
        return Session(connection, ctx)

    @staticmethod
    def _close(session: Session) -> None:
        with contextlib.suppress(Exception):
            session.connection.close()

    def _unchanged(self, session: Session, existed: bool, objects_before: int) -> bool:
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
        session: Session | None = None
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
                f"{first_line(error)} — the standby schema {self.schema} may be EMPTY or partial:"
                f" do not engage the failover; re-import a good dump by hand (impdp "
                f"schemas={self.schema} directory={self.last_good_directory} "
                f"dumpfile={last_good.name}) and rerun the job") from None
        finally:
            if session is not None:
                self._close(session)
        raise StepError(f"{head}; rolled back: re-imported last good dump {last_good} "
                        f"({verified.tables} tables, {verified.rows} rows) — the standby still "
                        "serves the previous data")
