"""import_oracle: refresh an Oracle schema from a Data Pump dump; the last good dump is the net.

The Oracle path of the standby refresh (the original `1_runDbUpdate.sh`), through
python-oracledb in thin mode (no Oracle client needed) and the DBMS_DATAPUMP PL/SQL API
instead of `sqlplus`/`impdp` with their output grepped for "error":

1. Before anything is dropped: the dump is checked locally (exists, regular, not empty,
   readable; its sha256 when given or when a `<dump>.sha256` sidecar exists). On the
   server: the session is in a pluggable database (not CDB$ROOT), the release is 19c or
   later and the user has the privileges below; no earlier job of this step is still
   running (stopped ones are cleaned up); the directory objects point at resolved paths
   (no symlinks); the dump's header (GET_DUMPFILE_INFO) says a Data Pump file with its
   master table, one file, not encrypted, not from a newer release; the last good dump
   passes the same checks and its re-import is defined once and discarded (the probe that
   proves the rollback can run: its file is accepted and its log location is writable);
   finally the import job itself is fully defined.
2. Optionally (`kill_sessions`) the schema's account is locked and its sessions killed;
   `DROP USER <schema> CASCADE`, START_JOB, GET_STATUS polled until the job ends, the
   step's deadline honoured with a margin kept for the rollback. Each error entry of the
   job is judged by its number: entries in `accept_errors` are logged; a job that ends
   COMPLETED with other entries is kept and reported (`on_errors: keep`, the default) or
   rolled back (`on_errors: rollback`); a job that did not complete, or lost table data
   (ORA-31693), is rolled back.
3. `DBMS_STATS.GATHER_SCHEMA_STATS` (a failure is reported, never rolled back), then
   verification: at least `min_tables` tables, every table in `expect_tables`, exact
   `COUNT(*)` of each table in `min_rows`. The outcome carries `data_completed`: the dump
   file's mtime (fetch keeps the source's), which the job records for `check dump-age`.

Oracle cannot rename a schema, so there is no staging swap: if anything after the drop
fails, the step first attaches to the import job by name, stops it and waits until it has
left DBA_DATAPUMP_JOBS (a job outlives a lost connection), then re-imports the last good
dump (`last_good`: the archived copy of the last successful import — a file, or a
directory whose newest file is used) on a fresh connection and fails with a line that
reports both the failure and the rollback. A stop request (SIGTERM, the deadline) never
interrupts the rollback. If the rollback fails too, the line says the standby schema may
be empty and what to do. When the schema exists and no last good dump can be found, the
step refuses to drop it.

Credentials come from a secrets file (mode 0600/0400), never argv or the policy. Either an
INI file

    [oracle]
    user = failover
    password = ...
    dsn = localhost:1521/FREEPDB1      # the PDB's service; or host / port / service_name

or a single line `user/password@dsn` (sqlplus style). The user needs the role
DATAPUMP_IMP_FULL_DATABASE and CREATE ANY DIRECTORY, DROP USER, ANALYZE ANY (statistics),
SELECT ANY TABLE (row counts), SELECT ANY DICTIONARY or SELECT_CATALOG_ROLE (DBA_ and GV$
views); with `kill_sessions` also ALTER USER and ALTER SYSTEM. The dump must be
readable, and its directory writable, by the database server's OS user through
`directory_path` (default: the dump's directory as seen from here).

No Oracle server runs in CI: the tests drive this module through a fake at the DB-API
boundary (tests/fixtures/fake_oracle.py) that checks binds, package calls and job states
as the driver and the server would; tests/integration/oracle_live runs the same scenarios
against a real database when FAILOVER_ORACLE_DSN is set.
"""
from __future__ import annotations

import contextlib
import re
import stat
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import oracledb

from actions.base import Context, Outcome, Plan
from actions.oracle_datapump import (
    DFHDR_COLUMNS_ENCRYPTED,
    DFHDR_CREATION_DATE,
    DFHDR_DATA_ENCRYPTED,
    DFHDR_DB_VERSION,
    DFHDR_ENCRYPTION_MODE,
    DFHDR_FILE_NUMBER,
    DFHDR_MASTER_PIECE_COUNT,
    DFHDR_MASTER_PRESENT,
    DFHDR_METADATA_ENCRYPTED,
    ENCRYPTED_MODES,
    FILE_ACCESS,
    SESSION_LOST,
    TERMINAL,
    Credentials,
    Entry,
    Header,
    ImportFailed,
    Session,
    describe,
    first_line,
    has_code,
    ident,
    is_transient,
    log_file_errors,
    read_credentials,
    resolved_dir,
    sha256_of,
    version_tuple,
)
from engine.durations import parse_duration
from engine.errors import FailoverError, StepError
from engine.standby import swap_permit

# Entries a DBA expects on a standby and that lose no data: an object that already exists,
# compiled with warnings, a dependent object skipped, a grant to a user or role this
# database does not have (reported as ORA-39083 whose cause is ORA-01917/01918/01919).
DEFAULT_ACCEPT = ("ORA-31684", "ORA-39082", "ORA-39111", "ORA-39151", "ORA-01917",
                  "ORA-01918", "ORA-01919")
# Table data that did not load: the data is not all there, whatever the job's state says.
DATA_LOSS = frozenset({"ORA-31693"})
_JOB_PREFIXES = ("FE", "FR", "FP")   # import, rollback, rollback probe


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
        accept = params.get("accept_errors")
        self.accept_errors = {str(c).upper() for c in
                              (DEFAULT_ACCEPT if accept is None else accept)}
        # `ignore_errors` (the first name of this list) adds to it.
        self.accept_errors |= {str(c).upper() for c in params.get("ignore_errors") or []}
        self.on_errors = str(params.get("on_errors", "keep"))
        if self.on_errors not in {"keep", "rollback"}:
            raise StepError(f"import_oracle: on_errors {self.on_errors!r} must be keep or "
                            "rollback")
        self.kill_sessions = bool(params.get("kill_sessions", False))
        self.poll_interval = parse_duration(params.get("poll_interval", "5s"))
        self.stop_wait = parse_duration(params.get("stop_wait", "5m"))
        reserve = params.get("rollback_reserve")
        self.rollback_reserve = parse_duration(reserve) if reserve else None
        self.call_timeout = parse_duration(params.get("call_timeout", "30m"))
        self.sha256 = str(params["sha256"]).lower() if params.get("sha256") else None
        self._connect = connect
        self._now = now or (lambda: datetime.now(UTC))

    # --- local checks (read-only: plan and apply share them) ----------------------------

    def _dump_path(self, ctx: Context) -> Path:
        dump = ctx.input_path(self.dump)
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
            from engine.safefile import read_limited

            try:  # a regular file of at most 64 KiB: never a FIFO or a device
                words = read_limited(sidecar, "checksum").decode(errors="replace").split()
            except FailoverError as error:
                raise StepError(f"dump {dump}: {error}") from None
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

    @staticmethod
    def _server_dir(configured: Any, local: Path) -> str:
        # Resolved: 18c+ refuses a directory object whose path goes through a symlink.
        return resolved_dir(configured if configured else local.parent)

    def _job_name(self, prefix: str, stamp: str) -> str:
        name = f"{prefix}_{self.schema[:12]}_{stamp}"
        # At most 30 bytes: the limit for job (master table) names below COMPATIBLE 12.2.
        assert len(name.encode()) <= 30, name
        return name

    def _ours(self, name: str) -> bool:
        pattern = (rf"^(?:{'|'.join(_JOB_PREFIXES)})_{re.escape(self.schema[:12])}_"
                   r"[0-9]{12}$")
        return re.match(pattern, name) is not None

    # --- the contract -------------------------------------------------------------------

    def host_problems(self, ctx: Context) -> list[str]:
        """For every host check: the credentials parse, the directories exist (local only:
        these checks also run before `run`, `engage` and `restore`)."""
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

    def server_problems(self, ctx: Context) -> list[str]:
        """For `validate --host`: the database answers as it must — a pluggable database
        (not CDB$ROOT), 19c or later, the privileges. (apply() checks the same before it
        drops anything.)"""
        try:
            creds = read_credentials(Path(ctx.secret(self.credentials)))
        except Exception:  # noqa: BLE001 - host_problems() reports the credentials
            return []
        try:
            session = self._open(creds, ctx, "host check", timeout=30.0)
        except StepError as error:
            return [f"import_oracle: {_why(error)}"]
        try:
            return [f"import_oracle {creds.dsn}: {line}" for line in
                    session.server_problems(kill_sessions=self.kill_sessions,
                                            schema=self.schema)]
        except oracledb.Error as error:
            return [f"import_oracle {creds.dsn}: cannot check the database: "
                    f"{describe(error)}"]
        finally:
            self._close(session)

    def plan(self, ctx: Context) -> Plan:
        """Local checks only: a dry-run must not create directory objects or define jobs."""
        planned = ctx.planned_input(self.dump)
        if planned is not None:
            # A dry-run: the previous step only plans the dump, so it can be checked later.
            return Plan(summary=f"replace schema {self.schema} with {planned} (once made) via "
                                "DBMS_DATAPUMP; the dump and the last good dump are checked "
                                "before the drop",
                        before={"schema": self.schema}, after={"schema": self.schema})
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
        mtime = datetime.fromtimestamp(dump.stat().st_mtime, UTC)
        written = mtime.isoformat(timespec="seconds")
        last_good = self._find_last_good(dump)
        if last_good is not None:
            self._check_file(last_good, "last good dump")
        creds = read_credentials(Path(ctx.secret(self.credentials)))
        stamp = self._now().astimezone(UTC).strftime("%y%m%d%H%M%S")
        job = self._job_name("FE", stamp)
        dump_dir = self._server_dir(self.directory_path, dump)
        margin = self._margin(ctx)

        session = self._open(creds, ctx, "import")
        try:
            problems = session.server_problems(kill_sessions=self.kill_sessions,
                                               schema=self.schema)
            if problems:
                raise ImportFailed("; ".join(problems))
            self._clear_old_jobs(session, ctx)
            session.create_directory(self.directory, dump_dir)
            server_version = session.version()
            created = self._check_header(session.read_header(dump.name, self.directory),
                                         "dump", dump, server_version)
            if last_good is not None:
                session.create_directory(self.last_good_directory,
                                         self._server_dir(self.last_good_directory_path,
                                                          last_good))
                self._check_header(session.read_header(last_good.name,
                                                       self.last_good_directory),
                                   "last good dump", last_good, server_version)
                # The probe: the rollback's job, defined exactly as it would run (its dump
                # accepted, its log file opened for writing), then discarded.
                probe = session.define_import(self, last_good.name, self.last_good_directory,
                                              self.directory, self._job_name("FP", stamp))
                session.discard(probe)
            existed, objects_before = session.schema_state(self.schema)
            if existed and last_good is None:
                raise ImportFailed(f"no last good dump under {self.last_good}: refusing to drop "
                                   f"schema {self.schema} (a failed import would leave the "
                                   "standby empty); put a known good dump there")
            if ctx.deadline is not None and ctx.remaining() <= margin:
                raise ImportFailed(f"only {ctx.remaining():.0f}s left before the step's timeout,"
                                   f" and {margin:.0f}s are kept for a rollback: raise the "
                                   "step's `timeout` or lower `rollback_reserve`")
            handle = session.define_import(self, dump.name, self.directory, self.directory, job)
        except (ImportFailed, oracledb.Error) as error:
            self._close(session)
            hint = ""
            if isinstance(error, oracledb.Error) and has_code(error, FILE_ACCESS):
                hint = f" (can the database server's OS user read and write {dump_dir}?)"
            text = str(error) if isinstance(error, ImportFailed) else describe(error)
            raise StepError(f"import_oracle {self.schema}: {text}{hint}; nothing was dropped",
                            retryable=is_transient(error)) from None
        except BaseException:
            self._close(session)
            raise

        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self._guard(ctx))
            except Exception as error:  # noqa: BLE001 - refused or busy: nothing was dropped
                session.discard(handle)
                self._close(session)
                raise StepError(f"import_oracle {self.schema}: {first_line(error)}; nothing "
                                "was dropped") from None
            outcome = self._replace(ctx, session, creds, handle, job, stamp, dump, last_good,
                                    dump_dir, margin, existed, objects_before)
        outcome.before = {"schema": self.schema, "existed": existed, "objects": objects_before}
        outcome.after.update({"bytes": size, "dump_created": created,
                              "data_completed": written})
        outcome.facts = {"data_completed": written, "data_age_seconds": max(
            0, round((self._now() - mtime).total_seconds()))}
        return outcome

    def _guard(self, ctx: Context) -> contextlib.AbstractContextManager[None]:
        """The permission to change the standby's data, held from the drop to the end of the
        import or its rollback: the job's guard, else the standby lock and the state
        directory's evidence (engine/standby.py)."""
        if ctx.swap_guard is not None:
            return ctx.swap_guard(self.schema)
        return swap_permit(ctx.state_dir, ctx.policy, role=f"import_oracle {self.schema}",
                           stop=ctx.should_stop)

    def _replace(self, ctx: Context, session: Session, creds: Credentials, handle: int,
                 job: str, stamp: str, dump: Path, last_good: Path | None, dump_dir: str,
                 margin: float, existed: bool, objects_before: int) -> Outcome:
        """Drop the schema and import the dump; any failure rolls back (never returns then)."""
        # Point of no return: from here on the schema may be gone, so every failure —
        # an Oracle error, a verification, even a bug — goes through the rollback.
        ctx.log(f"import_oracle: dropping {self.schema} ({objects_before} objects) and "
                f"importing {dump}")
        locked = False
        try:
            if self.kill_sessions and existed:
                locked = True
                killed = session.lock_and_kill(self.schema)
                ctx.log(f"import_oracle: locked {self.schema} and killed {killed} of its "
                        "session(s)")
            session.drop_user(self.schema, missing_ok=True)
        except Exception as error:  # noqa: BLE001 - decide below whether anything was lost
            if self._unchanged(session, existed, objects_before):
                session.discard(handle)
                if locked:
                    with contextlib.suppress(Exception):
                        session.unlock(self.schema)
                self._close(session)
                hint = ("" if self.kill_sessions else
                        " (are sessions still connected as that user? see `kill_sessions`)")
                raise StepError(f"import_oracle: DROP USER {self.schema} failed: "
                                f"{describe(error)}; nothing was dropped{hint}") from None
            self._close(session)
            self._rollback(ctx, creds, dump, last_good, f"DROP USER failed: {describe(error)}",
                           job, stamp)
        try:
            session.start_job(handle)
            state, entries = self._poll(session, handle, job, ctx, margin=margin)
            kept = self._judge(job, state, entries)
            for line in log_file_errors(Path(dump_dir) / f"{job}.log"):
                ctx.log(f"import_oracle: {job}.log: {line}")
        except Exception as error:  # noqa: BLE001 - any failure after the drop rolls back
            self._close(session)
            self._rollback(ctx, creds, dump, last_good, _why(error), job, stamp)
        stats = self._stats(session, ctx)
        try:
            verified = session.verify(self)
        except Exception as error:  # noqa: BLE001 - any failure after the drop rolls back
            self._close(session)
            self._rollback(ctx, creds, dump, last_good, _why(error), job, stamp)
        self._close(session)
        self._forget_logs(dump_dir, job)
        if verified.invalid:
            ctx.log(f"import_oracle: {verified.invalid} invalid object(s) in {self.schema}")
        summary = (f"imported {dump} into {self.schema}: {verified.tables} tables, "
                   f"{verified.rows} rows, {sum(verified.objects.values())} objects")
        if kept:
            summary += (f"; kept despite {len(kept)} job error(s) (on_errors: keep): "
                        f"{kept[0]}")
        if stats:
            summary += f"; statistics not gathered: {stats}"
        return Outcome(summary=summary,
                       after={"schema": self.schema, "dump": str(dump),
                              "tables": verified.tables, "rows": verified.rows,
                              "objects": verified.objects, "invalid": verified.invalid,
                              "job_errors": len(kept), "statistics": not stats})

    # --- the steps of apply -------------------------------------------------------------

    def _margin(self, ctx: Context) -> float:
        """Seconds before the deadline at which the import job is stopped, kept for the
        rollback: `rollback_reserve`, by default half of the time the step has."""
        if ctx.deadline is None:
            return 0.0
        reserve = self.rollback_reserve
        if reserve is None:
            reserve = ctx.remaining() / 2
        return max(reserve, 2 * self.poll_interval)

    def _clear_old_jobs(self, session: Session, ctx: Context) -> None:
        """Refuse while an earlier job of this step still runs; clean up stopped ones."""
        for job in session.jobs():
            if not self._ours(job.name):
                continue
            if job.state != "NOT RUNNING" or job.attached:
                raise ImportFailed(f"an earlier Data Pump job {job.name} of this step is still "
                                   f"{job.state} ({job.attached} session(s) attached): wait for "
                                   "it to end, or stop it (impdp attach="
                                   f"{job.name}, then KILL_JOB)")
            ctx.log(f"import_oracle: cleaning up stopped job {job.name} (its master table)")
            try:
                gone = session.stop_and_forget(job.name, wait=self.stop_wait, sleep=ctx.sleep,
                                               interval=max(1.0, self.poll_interval))
            except oracledb.Error:
                gone = False
            if not gone:
                session.drop_master(job.name)

    def _check_header(self, header: Header, what: str, path: Path,
                      server_version: str) -> str | None:
        filetype = header.filetype
        if filetype is None or filetype != 1:
            kind = "a classic exp file" if filetype == 2 else "not a Data Pump dump file"
            raise ImportFailed(f"{what} {path} is {kind} (the server read its header as "
                               f"type {filetype}): truncated or corrupt?")
        items = header.items
        if not header.flag(DFHDR_MASTER_PRESENT):
            raise ImportFailed(f"{what} {path} has no master table: the export that wrote it "
                               "did not finish (incomplete dump)")
        number = items.get(DFHDR_FILE_NUMBER, "").strip()
        pieces = items.get(DFHDR_MASTER_PIECE_COUNT, "").strip()
        if (number.isdigit() and int(number) != 1) or (pieces.isdigit() and int(pieces) > 1):
            raise ImportFailed(f"{what} {path} is file {number or '?'} of a multi-file dump set "
                               f"(master table in {pieces or '?'} piece(s)): this step imports "
                               "one file; export with a single DUMPFILE")
        mode = items.get(DFHDR_ENCRYPTION_MODE, "").strip()
        if (any(header.flag(c) for c in (DFHDR_METADATA_ENCRYPTED, DFHDR_DATA_ENCRYPTED,
                                         DFHDR_COLUMNS_ENCRYPTED))
                or (mode.isdigit() and int(mode) in ENCRYPTED_MODES)):
            raise ImportFailed(f"{what} {path} is encrypted: this step gives no encryption "
                               "password; export without ENCRYPTION")
        written_by = items.get(DFHDR_DB_VERSION, "")
        if written_by and server_version and \
                version_tuple(written_by)[:2] > version_tuple(server_version)[:2]:
            raise ImportFailed(f"{what} {path} was written for Oracle {written_by.strip()}, newer "
                               f"than this database ({server_version}): export with "
                               "VERSION= this release")
        created = items.get(DFHDR_CREATION_DATE)
        return created.strip() if created else None

    def _poll(self, session: Session, handle: int, job: str, ctx: Context, *,
              margin: float | None) -> tuple[str, list[Entry]]:
        """Poll the job to its end. `margin` None: a rollback, which nothing stops."""
        entries: list[Entry] = []
        last_percent = -1
        stateless = 0
        while True:
            status = session.status(handle)
            # A job always has a state; none three times running is not "still running".
            stateless = stateless + 1 if not status.state else 0
            if stateless >= 3:
                raise ImportFailed(f"Data Pump job {job}: GET_STATUS reported no job state "
                                   "three times running")
            for entry in status.entries:
                entries.append(entry)
                ctx.log(f"import_oracle: {job}: {entry.one_line()}")
            if status.dropped:
                ctx.log(f"import_oracle: {job}: more error entries than read at once")
            if status.percent is not None and status.percent != last_percent:
                last_percent = status.percent
                ctx.log(f"import_oracle: {job}: {last_percent}% done")
            if status.state in TERMINAL:
                break
            if margin is not None:
                why = None
                if ctx.should_stop():
                    why = "the step was asked to stop (shutdown)"
                elif ctx.deadline is not None and ctx.remaining() <= margin:
                    why = (f"{margin:.0f}s before the step's timeout, the time kept for the "
                           "rollback")
                if why:
                    with contextlib.suppress(Exception):
                        session.stop_job(handle)
                    raise ImportFailed(f"Data Pump job {job} stopped: {why}")
            ctx.sleep(self.poll_interval)
        session.detach(handle)
        return status.state, entries

    def _judge(self, job: str, state: str, entries: list[Entry]) -> list[str]:
        """Fail (ImportFailed) or return the error entries the import is kept despite."""
        fatal: list[str] = []
        other: list[str] = []
        for entry in entries:
            found = entry.codes
            if not found:
                continue                    # an informational line
            if found[0] in self.accept_errors or entry.cause in self.accept_errors:
                continue
            (fatal if DATA_LOSS & set(found) else other).append(entry.one_line())
        if state != "COMPLETED":
            bad = fatal + other
            raise ImportFailed(f"Data Pump job {job} ended {state or 'in no state'}"
                               + (f": {' ; '.join(bad[:5])}" if bad else ""))
        if fatal or (other and self.on_errors == "rollback"):
            bad = fatal + other
            raise ImportFailed(f"Data Pump job {job} completed with {len(bad)} error(s): "
                               f"{' ; '.join(bad[:5])}"
                               + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))
        return other

    def _stats(self, session: Session, ctx: Context) -> str | None:
        """Gather statistics; a failure is reported, never a reason to roll back."""
        try:
            session.gather_stats(self.schema)
        except Exception as error:  # noqa: BLE001 - statistics never decide about the data
            ctx.log(f"import_oracle: statistics of {self.schema} not gathered: "
                    f"{describe(error)}")
            return describe(error, 200)
        return None

    def _forget_logs(self, dump_dir: str, current: str) -> None:
        """Remove the logs of this step's earlier jobs (when the directory is local)."""
        directory = Path(dump_dir)
        if not directory.is_dir():
            return
        for path in directory.glob("F?_*.log"):
            if self._ours(path.stem) and path.stem != current:
                with contextlib.suppress(OSError):
                    path.unlink()

    # --- plumbing -----------------------------------------------------------------------

    def _open(self, creds: Credentials, ctx: Context, action: str,
              timeout: float | None = None) -> Session:
        connect = self._connect or connect_factory
        try:
            connection = connect(user=creds.user, password=creds.password, dsn=creds.dsn)
        except oracledb.Error as error:
            raise StepError(f"cannot connect to Oracle {creds.dsn} as {creds.user}: "
                            f"{describe(error)}; nothing was dropped",
                            retryable=is_transient(error)) from None
        session = Session(connection, ctx, action=action)
        session.set_call_timeout(timeout or self.call_timeout)
        return session

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
                  failure: str, first_job: str, stamp: str) -> NoReturn:
        head = f"import of {dump} into {self.schema} failed: {failure}"
        manual = (f"re-import a good dump by hand (impdp schemas={self.schema} "
                  f"directory={self.last_good_directory} "
                  f"dumpfile={last_good.name if last_good else '…'}) and rerun the job")
        ctx.log(f"import_oracle: {head}; stopping job {first_job}"
                + (f", then re-importing last good dump {last_good}" if last_good else ""))
        session: Session | None = None
        step = "connecting"
        try:
            # Nothing here looks at ctx.should_stop(): a half-done rollback is the worst case.
            session = self._open(creds, ctx, "rollback")
            step = f"stopping the first job {first_job}"
            gone = session.stop_and_forget(first_job, wait=self.stop_wait, sleep=ctx.sleep,
                                           interval=max(1.0, self.poll_interval))
            if not gone:
                raise _Final(f"{head}; ROLLBACK NOT STARTED: job {first_job} is still in "
                                f"DBA_DATAPUMP_JOBS after {self.stop_wait:g}s — the standby "
                                f"schema {self.schema} may be partial: do not engage the "
                                f"failover; stop that job (impdp attach={first_job}, KILL_JOB),"
                                f" then {manual}")
            if last_good is None:
                raise _Final(f"{head}; there was no schema before and no last good dump, "
                                "so there is nothing to roll back to — fix the cause and rerun "
                                "the job")
            job = self._job_name("FR", stamp)
            step = f"re-importing last good dump {last_good}"
            session.create_directory(self.last_good_directory,
                                     self._server_dir(self.last_good_directory_path, last_good))
            session.drop_user(self.schema, missing_ok=True)
            handle = session.define_import(self, last_good.name, self.last_good_directory,
                                           self.directory, job)
            session.start_job(handle)
            state, entries = self._poll(session, handle, job, ctx, margin=None)
            self._judge(job, state, entries)
            stats = self._stats(session, ctx)
            verified = session.verify(self)
        except _Final:
            raise
        except Exception as error:  # noqa: BLE001 - whatever broke the rollback, say so plainly
            raise StepError(
                f"{head}; ROLLBACK FAILED too: {step}: {_why(error)} — the standby schema "
                f"{self.schema} may be EMPTY or partial: do not engage the failover; "
                f"{manual}") from None
        finally:
            if session is not None:
                self._close(session)
        raise StepError(f"{head}; rolled back: re-imported last good dump {last_good} "
                        f"({verified.tables} tables, {verified.rows} rows"
                        + (f"; statistics not gathered: {stats}" if stats else "")
                        + ") — the standby still serves the previous data")


class _Final(StepError):
    """The rollback's own verdict, reported as it is."""


def _why(error: BaseException) -> str:
    """One line for a failure: the whole Oracle stack for driver errors, else the message;
    a lost session says so, because the job it ran may still be running."""
    if isinstance(error, oracledb.Error):
        text = describe(error)
        if has_code(error, SESSION_LOST):
            text += " (the session was lost; the job may still run in the server)"
        return text
    text = first_line(error)
    return text.removesuffix("; nothing was dropped")
