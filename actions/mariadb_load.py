"""Load an indexed dump into one database: tables in parallel, then the rest in dump order.

Each table section (DROP/CREATE TABLE, its INSERTs) runs on its own PyMySQL connection
after the dump's session header (SET NAMES, FOREIGN_KEY_CHECKS=0, SQL_MODE …); the
remainder (view stubs, triggers, routines, events, final views) runs afterwards on one
connection, in dump order. An InnoDB table is created without its plain keys and foreign
keys, which one ALTER adds after its rows on the same connection
(actions/mariadb_late_keys.py says which keys move and why the result is identical).
Statements are sent as bytes (`Connection.query`), so BLOB bytes reach the server
untouched, each in autocommit (wrapping the load in `autocommit=0` measured 1.15–1.22×
slower on MariaDB 10.11).

Every failing statement stops the load: the first error cancels the other workers and
is raised as `LoadError` with the server's code, the table and the statement's start.
`CREATE DATABASE`/`USE`/`ALTER DATABASE` never reach the server: the caller has already
refused or redirected them, and the connection's default database is the target.
"""
from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from actions.mariadb_dumpfile import DumpIndex, Section, Statement, iter_statements
from actions.mariadb_late_keys import split_create
from actions.mysql_options import ClientOptions, connect

# Errors that another attempt can cure: the server went away or restarted, a lock timed out.
TRANSIENT = {1053, 1205, 1213, 2003, 2006, 2013, 2055}
# Never sent to the server: they would name (and write into) some other database.
SKIPPED_KINDS = frozenset({"create_database", "use", "alter_database", "drop_database"})
# LOCK TABLES prelocks the tables linked by foreign keys that exist at that moment; a child
# table created meanwhile by another worker then fails the INSERT with error 1100 ("Table
# 'roles' was not locked with LOCK TABLES", seen on 10.11). The locks only speed up MyISAM.
SECTION_SKIPPED = SKIPPED_KINDS | {"lock", "unlock"}
# What replays in the live database after the swap: objects that cannot be renamed across
# schemas (views, routines, events) or block the rename (triggers), with their settings.
OBJECT_KINDS = {"session", "view", "drop_view", "trigger", "routine", "drop_routine", "event"}
# The dump's header sets foreign key checks (`/*!40014 SET … FOREIGN_KEY_CHECKS=0 */`).
_FK_CHECKS = re.compile(rb"(?<![@\w])FOREIGN_KEY_CHECKS\s*=\s*(\S+?)\s*(?:,|\*/|$)",
                        re.IGNORECASE)


@dataclass
class LoadError(Exception):
    """A statement failed (or the connection died) while loading."""

    code: int
    message: str
    where: str

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT

    def __str__(self) -> str:
        return f"{self.where}: error {self.code}: {self.message}"


class Cancelled(Exception):
    """Another worker failed or the step must stop; this worker gave up quietly."""


def _excerpt(text: bytes, limit: int = 80) -> str:
    line = text.decode("utf-8", errors="replace").replace("\n", " ")
    return line if len(line) <= limit else line[:limit] + "…"


def execute(conn: Any, statement: Statement, where: str) -> None:
    """Send one statement; turn a server or connection error into LoadError."""
    import pymysql

    try:
        conn.query(statement.text)
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        message = str(exc.args[-1]) if exc.args else str(exc)
        raise LoadError(code, message, f"{where}, statement `{_excerpt(statement.text)}`") from None


class Progress:
    """Bytes loaded so far, shared by the workers; logs a line every `every` seconds."""

    def __init__(self, total: int, log: Callable[[str], None], every: float = 5.0) -> None:
        self.total = max(1, total)
        self.done = 0
        self.log = log
        self.every = every
        self.started = time.monotonic()
        self.last = self.started
        self.lock = threading.Lock()

    def add(self, amount: int) -> None:
        with self.lock:
            self.done += amount
            now = time.monotonic()
            if now - self.last < self.every:
                return
            self.last = now
        self.report()

    def report(self) -> None:
        elapsed = max(1e-6, time.monotonic() - self.started)
        self.log(
            f"loaded {self.done * 100 // self.total}% ({self.done / 1e6:.1f} of"
            f" {self.total / 1e6:.1f} MB, {self.done / elapsed / 1e6:.1f} MB/s)"
        )


class Loader:
    """Load `index` into `database` over PyMySQL with `parallel` table workers."""

    def __init__(self, options: ClientOptions, database: str, index: DumpIndex, *,
                 parallel: int = 2, log: Callable[[str], None] = lambda line: None,
                 should_stop: Callable[[], bool] = lambda: False,
                 late_keys: bool = True) -> None:
        self.options = options
        self.database = database
        self.index = index
        self.parallel = max(1, parallel)
        self.log = log
        self.should_stop = should_stop
        self.cancel = threading.Event()
        self.progress = Progress(index.size, log)
        self.connection_ids: list[int] = []  # for tests and logs: who is loading
        # Secondary keys (and foreign keys) added after each table's rows in one ALTER
        # (actions/mariadb_late_keys.py; on the GOCDB-shaped bench the keys built during
        # the load took 1.34-1.62x as long, BENCHMARKS.md).
        # A table with foreign keys qualifies only when the dump's session turns the checks
        # off, as every mariadb-dump header does: the client then loads rows in any order
        # and never validates them, and InnoDB adds the constraints in place just as
        # unvalidated. Without that setting (a --compact or hand-made dump) the client
        # checks every row, so such a table keeps its constraints in its CREATE.
        self.late_keys = late_keys
        self.fk_checks_off = _fk_checks_off(index.header)

    def connect(self) -> Any:
        conn = connect(self.options, self.database, max_allowed_packet=1 << 30,
                       read_timeout=None, write_timeout=None)
        self.connection_ids.append(conn.thread_id())
        return conn

    def _check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()
        if self.should_stop():
            self.cancel.set()
            raise LoadError(0, "stopped before the load finished (timeout or shutdown)",
                            f"database {self.database}")

    def _run(self, conn: Any, statements: Iterable[Statement], where: str,
             skip: frozenset[str] = SKIPPED_KINDS) -> None:
        previous_end: int | None = None
        for statement in statements:
            self._check()
            if statement.kind in skip:
                continue
            execute(conn, statement, where)
            if previous_end is not None:
                self.progress.add(statement.end - previous_end)
            previous_end = statement.end

    def _read_ahead(self, section: Section, depth: int = 3
                    ) -> Generator[Statement, None, None]:
        """The section's statements, read and split by a helper thread while the server
        runs the current one: the wire protocol waits for each reply, so without this the
        parsing and the server's work add up instead of overlapping."""
        items: queue.Queue[Any] = queue.Queue(maxsize=depth)
        stop = threading.Event()
        end = object()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                with open(self.index.path, "rb") as handle:
                    for statement in iter_statements(handle, section.start, section.end):
                        if not put(statement):
                            return
                put(end)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                put(exc)

        reader = threading.Thread(target=produce, name=f"read-{section.table}", daemon=True)
        reader.start()
        try:
            while True:
                item = items.get()
                if item is end:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            # An unclosed generator is finalised by the garbage collector in whatever thread
            # runs it, possibly the reader itself, which cannot join itself (load_section
            # closes it explicitly; this keeps the finaliser harmless anyway).
            if threading.current_thread() is not reader:
                reader.join()

    def _keys_later(self, section: Section, statements: Iterable[Statement],
                    alters: list[Statement]) -> Generator[Statement, None, None]:
        """The section's statements with its CREATE TABLE stripped of the keys that
        `alters` (filled on the way) adds after the rows."""
        for statement in statements:
            if statement.kind == "create_table" and statement.name == section.table:
                split = split_create(statement.text)
                if split.alter is not None and (self.fk_checks_off or not split.foreign_keys):
                    alters.append(Statement(split.alter, b";", statement.start, statement.end,
                                            "alter_table", section.table))
                    statement = Statement(split.create, statement.delimiter, statement.start,
                                          statement.end, statement.kind, statement.name)
            yield statement

    def load_section(self, section: Section) -> None:
        conn = self.connect()
        statements = self._read_ahead(section)
        where = f"table {self.database}.{section.table}"
        alters: list[Statement] = []
        try:
            self._run(conn, self.index.header, where)
            self._run(conn, self._keys_later(section, statements, alters) if self.late_keys
                      else statements, where, SECTION_SKIPPED)
            for alter in alters:  # at most one: the section's own CREATE TABLE
                self._check()
                execute(conn, alter, f"{where}, adding its keys after the rows")
            self.progress.add(0)
        finally:
            statements.close()  # stop and join the reader now, in this thread
            conn.close()

    def load(self) -> None:
        """Load everything; raise LoadError on the first failure (the others are cancelled)."""
        sections = sorted(self.index.sections, key=lambda s: s.size, reverse=True)
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="load") as pool:
            futures = [pool.submit(self.load_section, section) for section in sections]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failure = next((f.exception() for f in done if f.exception()), None)
            if failure is not None:
                self.cancel.set()
                wait(futures)
                errors = [e for f in futures if (e := f.exception()) is not None]
                real = [e for e in errors if not isinstance(e, Cancelled)]
                raise (real or errors)[0]
        conn = self.connect()
        try:
            self._run(conn, self.index.rest, f"database {self.database}")
        finally:
            conn.close()
        self.progress.done = self.progress.total
        self.progress.report()


def _fk_checks_off(header: Iterable[Statement]) -> bool:
    """Whether the session header leaves FOREIGN_KEY_CHECKS at 0 (its last setting wins)."""
    value = b""
    for statement in header:
        for match in _FK_CHECKS.finditer(statement.text):
            value = match.group(1)
    return value.strip(b"'\"").lower() in (b"0", b"off")


def replay_objects(conn: Any, index: DumpIndex, where: str) -> None:
    """Recreate the dump's views, triggers, routines and events on `conn`'s default database."""
    for statement in index.rest:
        if statement.kind in OBJECT_KINDS:
            execute(conn, statement, where)
