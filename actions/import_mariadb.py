"""import_mariadb: load a dump into a staging database, verify it, swap it in atomically.

    jobs:
      import:
        steps:
          - import_mariadb:
              options: mariadb          # secrets key: a MySQL option file, mode 0600/0400
              database: gocdb           # the live database the standby serves
              # file: ...               # default: the previous step's output (fetch/unzip)
              expect_tables: [sites, services]
              min_rows: {sites: 100}
              parallel: 2               # tables loaded at once (default 2)
              retries: 3                # connection lost / server gone / lock wait: retried
              # require_trailer: false  # accept a complete dump made with --skip-comments

What it does, in order; the live database is never touched until the last step:
1. Checks the dump: the `-- Dump completed` trailer must end it (a cut or failed dump has
   none; a dump made with `--skip-comments` or `--compact` has none either: with
   `require_trailer: false` such a dump is accepted when its last statement is complete,
   and its data's date is unknown); the `/*M!999999\\- enable the sandbox mode */` first
   line is skipped; a dump made with `--databases` has its `CREATE DATABASE`/`USE` lines
   redirected to the staging database (a dump holding several databases is refused).
2. Loads it into `<database>_staging`, created fresh: tables in parallel over PyMySQL
   connections (an InnoDB table's plain keys and foreign keys are added by one ALTER
   after its rows, which is faster and leaves the same table: actions/mariadb_late_keys.py),
   then views, triggers and routines in dump order. Any failing statement
   fails the step (unlike `mysql -e "SOURCE file"`, which exits 0 after errors).
3. Verifies: `expect_tables` present, `min_rows` per table; reports the trailer's date as
   the fact `data_completed` (UTC: `dump_mariadb` runs the client in UTC; set
   `dump_timezone` for dumps made elsewhere) and `data_age_seconds`; the job records them.
4. Swaps with ONE `RENAME TABLE live.t TO previous.t, …, staging.t TO live.t, …` covering
   every table, so foreign keys follow and readers see the old or the new set, never a mix.
   A table that exists only in live (not in the dump) stays in live with its triggers, as
   the original scripts left it; the log names it (one with a foreign key to a table the
   dump replaces moves to previous with that table, also named).
   The old live tables stay in `<database>_previous` until the next success. Triggers
   block a cross-schema rename (error 1435), so they are dropped before the rename and
   recreated after it, as are views, routines and events, which cannot move between
   schemas. The swap runs under the standby's permission (`ctx.swap_guard`, else
   `engine.standby.swap_permit`): it is refused, live untouched, when the standby serves
   or may (an engage began while the load ran). It is journalled
   (actions/mariadb_swap.py): a run killed mid-swap is completed or rolled back by the
   next run before anything else, and after every swap live's tables, views, triggers,
   routines and events are checked against the dump's manifest (a mismatch fails the step
   and leaves the journal, which status and check dump-age report as CRITICAL).
On failure before the swap the staging database is dropped and live is as it was.
The step's output is the dump file it imported, so a following `archive` keeps it. In a
dry-run whose fetch/unzip have not run yet, the plan checks the option file and the
server now and the dump once it exists.
Transient errors (2006 server gone away, 2013 connection lost, 1205 lock wait timeout,
server restarting) are retryable; syntax and data errors are not. A connection KILLed
by an operator reaches the client as 2013 too, so it counts as transient: set
`retries: 0` where a KILL must end the run.

The option file's user needs ALL on `<database>`, `<database>_staging` and
`<database>_previous`, and SET USER (or SUPER) when the dump's DEFINERs are other users.
The non-atomic moment is after the RENAME: views, triggers, routines and events are
recreated in the live database right after it (milliseconds), having already been
created once in staging from the same statements, so a bad definition fails before the swap.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from actions.base import Context, Outcome, Plan
from actions.mariadb_dumpfile import (
    DumpFormatError,
    DumpIndex,
    data_age,
    index_dump,
    read_trailer,
    unfinished_end,
)
from actions.mariadb_load import TRANSIENT, Loader, LoadError
from actions.mariadb_swap import Swap, SwapJournal
from actions.mysql_options import ClientOptions, connect, read_options
from engine.durations import format_duration
from engine.errors import StepError
from engine.standby import swap_permit

# Seconds the swap's DDL waits for readers' metadata locks before it gives up (retryable).
SWAP_LOCK_WAIT = 300
NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,55}$")  # leaves room for the _previous suffix (64 max)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _tz(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StepError(f"import_mariadb: dump_timezone {name!r} is not a known time zone"
                        ) from None


def _rows(conn: Any, sql: str, args: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


def base_tables(conn: Any, database: str) -> list[str]:
    return [r[0] for r in _rows(
        conn, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_type = 'BASE TABLE' ORDER BY table_name", (database,))]


def database_exists(conn: Any, database: str) -> bool:
    return bool(_rows(conn, "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                      (database,)))


def _charset_clause(conn: Any, database: str) -> str:
    found = _rows(conn, "SELECT default_character_set_name, default_collation_name"
                  " FROM information_schema.schemata WHERE schema_name = %s", (database,))
    if not found:
        return ""
    return f" CHARACTER SET {found[0][0]} COLLATE {found[0][1]}"


class ImportMariadb:
    """The import_mariadb step (see the module docstring for the manual)."""

    kind = "import_mariadb"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.options_ref: str = params["options"]
        self.database: str = params["database"]
        if not NAME_RE.match(self.database):
            raise StepError(f"import_mariadb: database {self.database!r} must be 1-55 letters,"
                            " digits or _")
        self.staging = f"{self.database}_staging"
        self.previous = f"{self.database}_previous"
        self.file: str | None = params.get("file")
        self.expect_tables: list[str] = list(params.get("expect_tables", []))
        self.min_rows: dict[str, int] = dict(params.get("min_rows", {}))
        self.parallel = int(params.get("parallel", 2))
        self.dump_timezone = _tz(str(params.get("dump_timezone", "UTC")))
        self.require_trailer = bool(params.get("require_trailer", True))

    # ----------------------------------------------------------------- helpers
    def _path(self, ctx: Context) -> Path:
        # In a job the previous step's output (fetch/unzip) is the dump; `file` wins.
        chosen = ctx.input_path(self.file)
        if chosen is None:
            raise StepError("import_mariadb: no dump file given and no previous step's output;"
                            " set file")
        return chosen

    def _options(self, ctx: Context) -> ClientOptions:
        return read_options(ctx.secret(self.options_ref))

    def _check_file(self, path: Path) -> tuple[int, str, datetime | None]:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise StepError(f"dump file {path}: {exc.strerror}; run fetch first") from None
        trailer, completed = read_trailer(path, self.dump_timezone)
        if trailer is not None:
            return size, trailer, completed
        if self.require_trailer:
            raise StepError(f"dump file {path} has no '-- Dump completed' trailer: the dump was"
                            " cut or failed (fetch or dump it again), or made with"
                            " --skip-comments/--compact (if it is complete, set"
                            " require_trailer: false)")
        # Without the trailer the dump's end is the only evidence: it must be a whole
        # statement (the full read in index_dump then checks every statement before it).
        problem = unfinished_end(path)
        if problem:
            raise StepError(f"dump file {path} has no '-- Dump completed' trailer"
                            f" (require_trailer: false) and {problem}: the dump was cut;"
                            " fetch or dump it again")
        return size, "no trailer (require_trailer: false)", None

    # -------------------------------------------------------------------- plan
    def plan(self, ctx: Context) -> Plan:
        plan = self._plan(ctx)
        journal = SwapJournal(ctx.state_dir, self.database).path
        if journal.exists():  # the run starts by finishing or undoing it
            plan.summary = (f"first finishes or undoes the swap left half-done ({journal});"
                            f" then {plan.summary}")
        return plan

    def _plan(self, ctx: Context) -> Plan:
        planned = ctx.planned_input(self.file)
        if planned is not None:
            return self._plan_later(ctx, planned)
        try:
            path = self._path(ctx)
            size, _trailer, completed = self._check_file(path)
            tables = _count_create_tables(path)
            live = self._live_tables(ctx)
        except StepError as exc:
            return Plan(summary=f"import {self.file or 'the work file'} into {self.database}",
                        problem=str(exc))
        age = f", data from {completed.isoformat()}" if completed else ""
        return Plan(
            summary=(f"would load {size} bytes from {path} into {self.staging} and swap"
                     f" {tables} tables into {self.database} (live has {live} tables{age})"),
            before={"database": self.database, "tables": live},
            after={"database": self.database, "tables": tables, "bytes": size},
            output=path,
        )

    def _plan_later(self, ctx: Context, planned: str) -> Plan:
        """The dump is the previous step's planned output, not made yet: check the option
        file and the server now, the dump once it exists."""
        try:
            live = self._live_tables(ctx)
        except StepError as exc:
            return Plan(summary=f"import {planned} into {self.database}", problem=str(exc),
                        output=ctx.previous_output)
        return Plan(
            summary=(f"would load {planned} into {self.staging} and swap its tables into"
                     f" {self.database} (live has {live} tables; the dump is checked once it"
                     " exists)"),
            before={"database": self.database, "tables": live},
            output=ctx.previous_output,
        )

    def _live_tables(self, ctx: Context) -> int:
        conn = connect(self._options(ctx))
        try:
            return len(base_tables(conn, self.database))
        finally:
            conn.close()

    # ------------------------------------------------------------------- apply
    def apply(self, ctx: Context) -> Outcome:
        path = self._path(ctx)
        size, trailer, completed = self._check_file(path)
        options = self._options(ctx)
        try:
            index = index_dump(path, self.dump_timezone)
        except DumpFormatError as exc:
            raise StepError(f"dump file {path}: {exc}") from None
        self._redirect_databases(index, path, ctx)
        if not index.sections:
            raise StepError(f"dump file {path} holds no tables; refusing to swap an empty"
                            f" database into {self.database}")
        ctx.log(f"loading {path} ({size} bytes, {len(index.sections)} tables) into"
                f" {self.staging}, {self.parallel} at a time")
        admin = connect(options)
        try:
            self._recover(ctx, admin)
            self._fresh_staging(admin)
        finally:
            admin.close()
        try:
            Loader(options, self.staging, index, parallel=self.parallel, log=ctx.log,
                   should_stop=ctx.should_stop).load()
            # A new connection for the swap: a long load may outlive an idle one.
            admin = connect(options)
            try:
                # Right before the swap, under the standby lock: is live still ours to change?
                with self._guard(ctx):
                    counts = self._verify(admin, path)
                    before = base_tables(admin, self.database)
                    self._swap(ctx, admin, index, counts, path)
            finally:
                with contextlib.suppress(Exception):
                    admin.close()
        except LoadError as exc:
            self._drop_staging(ctx)
            raise StepError(f"import of {path} into {self.staging} failed: {exc}; live"
                            f" {self.database} unchanged", retryable=exc.transient) from None
        except Exception as exc:
            # A half-done swap's journal decides from staging's tables whether the RENAME
            # happened: staging must stay until the next run has finished or undone it.
            if not SwapJournal(ctx.state_dir, self.database).path.exists():
                self._drop_staging(ctx)
            raise _as_step_error(exc, f"import of {path} into {self.staging}") from None
        data = completed.astimezone(UTC).isoformat() if completed else None
        age = data_age(completed)
        age_text = f", data {format_duration(age.total_seconds())} old" if age else ""
        ctx.log(f"swapped {len(counts)} tables into {self.database}; previous tables kept in"
                f" {self.previous}{age_text}")
        return Outcome(
            summary=(f"imported {path} into {self.database}: {len(counts)} tables,"
                     f" {sum(counts.values())} rows; data from {data or trailer}"),
            before={"database": self.database, "tables": len(before)},
            after={"database": self.database, "tables": len(counts), "rows": counts,
                   "bytes": size, "previous": self.previous},
            output=path,
            facts=_data_facts(data, age),
        )

    def _redirect_databases(self, index: DumpIndex, path: Path, ctx: Context) -> None:
        if len(index.databases) > 1:
            names = ", ".join(sorted(index.databases))
            raise StepError(f"dump file {path} holds databases {names};"
                            f" import_mariadb loads one: dump {self.database}'s source alone")
        if index.databases or any(s.kind == "use" for s in index.rest):
            # The loader never sends CREATE DATABASE/USE; every connection's default
            # database is the staging one, so these lines cannot reach the live database.
            ctx.log(f"dump made with --databases {', '.join(index.databases)}: its CREATE"
                    f" DATABASE/USE lines are redirected to {self.staging}")
        if index.sandbox:
            ctx.log("dump starts with the sandbox-mode line of recent mariadb-dump; skipped")

    def _fresh_staging(self, admin: Any) -> None:
        charset = _charset_clause(admin, self.database)
        try:
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {quote(self.staging)}")
                cur.execute(f"CREATE DATABASE {quote(self.staging)}{charset}")
        except Exception as exc:
            raise _as_step_error(exc, f"creating staging database {self.staging}") from None

    def _drop_staging(self, ctx: Context) -> None:
        try:
            conn = connect(self._options(ctx))
            try:
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS {quote(self.staging)}")
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - the server may be down; the load error matters more
            ctx.log(f"could not drop {self.staging} (server unreachable); the next run"
                    " recreates it")

    def _verify(self, admin: Any, path: Path) -> dict[str, int]:
        try:
            tables = base_tables(admin, self.staging)
            missing = [t for t in self.expect_tables if t not in tables]
            if missing:
                raise StepError(f"dump file {path} lacks expected tables {', '.join(missing)}"
                                f"; live {self.database} unchanged")
            counts: dict[str, int] = {}
            for table in tables:
                counts[table] = _rows(admin, f"SELECT COUNT(*) FROM {quote(self.staging)}."
                                             f"{quote(table)}")[0][0]
        except StepError:
            raise
        except Exception as exc:
            raise _as_step_error(exc, f"verifying {self.staging}") from None
        short = {t: (counts.get(t, 0), n) for t, n in self.min_rows.items() if counts.get(t, 0) < n}
        if short:
            detail = ", ".join(f"{t} has {have} < {need}" for t, (have, need) in short.items())
            raise StepError(f"dump file {path}: too few rows ({detail}); live {self.database}"
                            " unchanged")
        return counts

    def _guard(self, ctx: Context) -> contextlib.AbstractContextManager[None]:
        """The permission to change live: the job's guard, else the standby lock and the
        state directory's evidence (engine/standby.py), so a step run alone is safe too."""
        if ctx.swap_guard is not None:
            return ctx.swap_guard(self.database)
        return swap_permit(ctx.state_dir, ctx.policy, role=f"import_mariadb {self.database}",
                           stop=ctx.should_stop)

    def _recover(self, ctx: Context, admin: Any) -> None:
        """Finish or undo a swap a killed run left half-done (actions/mariadb_swap.py)."""
        journal = SwapJournal(ctx.state_dir, self.database)
        if not journal.path.exists():
            return
        try:
            with self._guard(ctx):
                done = Swap(admin, self.database, journal, ctx.log).recover()
        except Exception as exc:
            raise _as_step_error(exc, f"recovering the interrupted swap into {self.database}"
                                 f" ({journal.path})") from None
        if done:
            ctx.log(done)

    def _swap(self, ctx: Context, admin: Any, index: DumpIndex, counts: dict[str, int],
              path: Path) -> None:
        """One RENAME for every table, journalled; live checked against the manifest."""
        # A RENAME waits for readers' metadata locks; bound the wait so the standby lock
        # (which an engage may be waiting for) is never held for long.
        _rows(admin, f"SET SESSION lock_wait_timeout = {SWAP_LOCK_WAIT}")
        swap = Swap(admin, self.database, SwapJournal(ctx.state_dir, self.database), ctx.log)
        try:
            swap.run(index, list(counts), path)
        except StepError:
            raise
        except Exception as exc:
            if not swap.journal.path.exists():
                raise _as_step_error(exc, f"swapping {self.staging} into {self.database}"
                                     " (live unchanged)") from None
            error = _as_step_error(exc, f"swapping {self.staging} into {self.database}")
            raise StepError(f"{error}; the swap is half-done and journalled in"
                            f" {swap.journal.path}: the next run completes or undoes it",
                            retryable=error.retryable) from None


def _as_step_error(exc: Exception, doing: str) -> StepError:
    """One clear line for an expected failure; anything else (a bug) is raised as it is."""
    import pymysql  # loaded only once a MariaDB step runs

    if isinstance(exc, StepError):
        return exc
    if isinstance(exc, LoadError):
        return StepError(f"{doing}: {exc}", retryable=exc.transient)
    if not isinstance(exc, pymysql.err.MySQLError):
        raise exc
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = exc.args[-1] if exc.args else exc
    return StepError(f"{doing}: error {code}: {message}", retryable=code in TRANSIENT)


def _data_facts(data: str | None, age: timedelta | None) -> dict[str, Any]:
    """The facts the job records: when the dump's data was complete, and how old it is."""
    facts: dict[str, Any] = {}
    if data:
        facts["data_completed"] = data
    if age is not None:
        facts["data_age_seconds"] = round(age.total_seconds())
    return facts


def _count_create_tables(path: Path) -> int:
    """How many CREATE TABLE statements the dump has, read in large chunks (plan() only)."""
    count, carry = 0, b""
    needle = b"\nCREATE TABLE "
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            data = carry + chunk
            count += data.count(needle)
            carry = data[-(len(needle) - 1):]
    return count

