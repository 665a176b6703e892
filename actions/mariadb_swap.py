"""import_mariadb's swap: staging → live in one RENAME, journalled, then checked against the dump.

The swap is the only moment live changes, and it is more than one statement: live's
triggers block a cross-schema RENAME (error 1435), so they are dropped before it, and views,
routines and events cannot move between schemas, so they are recreated in live after it.
A process killed in between would leave live without its trigger. So the swap writes a
journal first (`<state_dir>/swap/<database>.json`, atomic, fsynced) holding what it needs to
finish or undo the swap without the dump: live's trigger definitions, the object statements
to replay, the tables moving, and the dump's manifest. The next run, before anything else:
- RENAME not done (staging still holds the new tables): roll back, putting live's saved
  triggers back;
- RENAME done (MariaDB ≥ 10.6 makes a multi-table RENAME atomic): complete it, replaying
  the objects from the journal.
After every swap (and every completion) live's tables, views, triggers, routines and events
are compared with the dump's manifest; a mismatch leaves the journal in phase `damaged`,
which `status` and `check dump-age` report as CRITICAL until a run repairs live.
The journal is removed only when live matches the manifest: a journal file on disk means
"live is not known to be whole".
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from actions.mariadb_dumpfile import DumpIndex, Statement
from actions.mariadb_load import OBJECT_KINDS, execute
from engine.errors import StepError
from engine.fsutil import atomic_write, ensure_private_dir, fsync_dir
from engine.paths import StatePaths
from engine.safefile import FileRefused, read_limited
from engine.standby import JOURNAL_MAX

# The test suite sets this to `point=/path/marker` to stop a swap at `point` (writing the
# marker and sleeping) so it can SIGKILL the importer there. Points: before-rename,
# after-rename, mid-replay.
PAUSE_ENV = "FAILOVER_ENGINE_TEST_SWAP_PAUSE"
CATEGORIES = ("tables", "views", "triggers", "routines", "events")


def quote(name: str) -> str:
    """A MariaDB identifier, backquoted."""
    return "`" + name.replace("`", "``") + "`"


def rows(conn: Any, sql: str, args: tuple = ()) -> list[tuple]:
    """Run one statement; its rows."""
    with conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


def base_tables(conn: Any, database: str) -> list[str]:
    """The base tables (not views) of `database`, sorted."""
    return [r[0] for r in rows(
        conn, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_type = 'BASE TABLE' ORDER BY table_name", (database,))]


def database_exists(conn: Any, database: str) -> bool:
    """True when the schema exists."""
    return bool(rows(conn, "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                     (database,)))


def charset_clause(conn: Any, database: str) -> str:
    """` CHARACTER SET … COLLATE …` of an existing schema ('' when it does not exist)."""
    found = rows(conn, "SELECT default_character_set_name, default_collation_name"
                 " FROM information_schema.schemata WHERE schema_name = %s", (database,))
    if not found:
        return ""
    return f" CHARACTER SET {found[0][0]} COLLATE {found[0][1]}"


@dataclass
class Manifest:
    """What a dump declares: its tables (not view stubs), views, triggers, routines, events."""

    tables: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    routines: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @classmethod
    def from_index(cls, index: DumpIndex) -> Manifest:
        """The manifest of an indexed dump."""
        views = sorted(set(index.views))
        return cls(tables=sorted(set(index.tables) - set(views)), views=views,
                   triggers=sorted(set(index.triggers)), routines=sorted(set(index.routines)),
                   events=sorted(set(index.events)))

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """From the journal's dict (unknown keys ignored)."""
        data = data if isinstance(data, dict) else {}
        return cls(**{k: sorted(str(v) for v in data.get(k) or []) for k in CATEGORIES})

    def count(self) -> str:
        """`8 tables, 1 view, …` for messages."""
        return ", ".join(f"{len(getattr(self, k))} {k}" for k in CATEGORIES)


def live_manifest(conn: Any, database: str) -> Manifest:
    """What `database` holds now, read from information_schema."""
    def names(sql: str) -> list[str]:
        return sorted({str(r[0]) for r in rows(conn, sql, (database,))})

    return Manifest(
        tables=base_tables(conn, database),
        views=names("SELECT table_name FROM information_schema.views WHERE table_schema = %s"),
        triggers=names("SELECT trigger_name FROM information_schema.triggers"
                       " WHERE trigger_schema = %s"),
        routines=names("SELECT routine_name FROM information_schema.routines"
                       " WHERE routine_schema = %s"),
        events=names("SELECT event_name FROM information_schema.events"
                     " WHERE event_schema = %s"),
    )


def manifest_problems(expected: Manifest, found: Manifest) -> list[str]:
    """One phrase per difference: `missing trigger trg_x`, `unexpected table t`."""
    problems = []
    for category in CATEGORIES:
        want, have = set(getattr(expected, category)), set(getattr(found, category))
        singular = category[:-1]
        problems += [f"missing {singular} {name}" for name in sorted(want - have)]
        problems += [f"unexpected {singular} {name}" for name in sorted(have - want)]
    return problems


class SwapJournal:
    """`<state_dir>/swap/<database>.json`: present while live is not known to be whole."""

    def __init__(self, state_dir: str | Path, database: str) -> None:
        self.path = StatePaths(Path(state_dir)).swap_journal(database)
        self.data: dict[str, Any] = {}

    def read(self) -> dict[str, Any] | None:
        """The journal, or None when there is none. A damaged one is a StepError: what
        the interrupted swap did is then unknown and a person must look."""
        try:
            text = read_limited(self.path, "swap_journal", JOURNAL_MAX, nofollow=True).decode(
                "utf-8", errors="replace")
        except FileRefused as exc:
            if exc.missing:
                return None
            raise StepError(f"swap journal: {exc}; compare live with the dump by hand, then"
                            " delete the journal") from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("new_tables"), list):
            raise StepError(f"swap journal {self.path} is damaged: the interrupted swap cannot"
                            " be finished or undone automatically; compare live with the"
                            " dump by hand, then delete the journal")
        self.data = data
        return data

    def write(self, **changes: Any) -> None:
        """Update and store the journal durably (temp + fsync + rename)."""
        self.data.update(changes)
        ensure_private_dir(self.path.parent)
        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n",
                     mode=0o600)

    def remove(self) -> None:
        """Live is whole: drop the journal (durably)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            fsync_dir(self.path.parent)


def _encode(statements: Iterable[Statement]) -> list[dict[str, Any]]:
    return [{"kind": s.kind, "name": s.name,
             "text": base64.b64encode(s.text).decode("ascii")} for s in statements]


def _decode(items: Any) -> list[Statement]:
    out = []
    for item in items or []:
        text = base64.b64decode(item["text"])
        out.append(Statement(text=text, delimiter=b";", start=0, end=0,
                             kind=str(item.get("kind")), name=item.get("name")))
    return out


def pause_point(point: str) -> None:
    """The test hook (see PAUSE_ENV): stop here until killed."""
    wanted = os.environ.get(PAUSE_ENV, "")
    name, _, marker = wanted.partition("=")
    if name != point:
        return
    if marker:
        Path(marker).write_text(f"{os.getpid()}\n")
    time.sleep(600)


@dataclass
class Swap:
    """One swap of `staging` into `database` over the `admin` connection."""

    admin: Any
    database: str
    journal: SwapJournal
    log: Callable[[str], None] = lambda line: None

    @property
    def staging(self) -> str:
        return f"{self.database}_staging"

    @property
    def previous(self) -> str:
        return f"{self.database}_previous"

    # ------------------------------------------------------------------ the swap
    def run(self, index: DumpIndex, new_tables: list[str], dump: Path) -> Manifest:
        """Swap, replay the objects, check live against the manifest (see module docstring)."""
        db, staging, previous = (quote(self.database), quote(self.staging),
                                 quote(self.previous))
        manifest = Manifest.from_index(index)
        if not database_exists(self.admin, self.database):
            rows(self.admin, f"CREATE DATABASE {db}{charset_clause(self.admin, self.staging)}")
        # Tables only live has (not in the dump) stay in live with their triggers, as the
        # original scripts left them: only the tables the dump replaces move to previous.
        every_live = base_tables(self.admin, self.database)
        kept = [t for t in every_live if t not in set(new_tables)]
        tied = self._tied_to_moving(kept, set(every_live) - set(kept))
        if tied:
            # Its foreign key would follow the old parent into previous, whose next drop
            # it would then block: it moves with the tables it references, as before.
            self.log(f"tables only in live {self.database} with a foreign key to a table the"
                     f" dump replaces go to {self.previous} with it: {', '.join(tied)}")
            kept = [t for t in kept if t not in tied]
        live_tables = [t for t in every_live if t not in kept]
        if kept:
            self.log(f"tables only in live {self.database}, not in the dump, stay in live:"
                     f" {', '.join(kept)}")
            manifest.tables = sorted(set(manifest.tables) | set(kept))
            manifest.triggers = sorted(set(manifest.triggers) | {
                name for name, table in self._trigger_tables() if table in kept})
        for (name,) in rows(self.admin, "SELECT trigger_name FROM information_schema.triggers"
                            " WHERE trigger_schema = %s", (self.staging,)):
            rows(self.admin, f"DROP TRIGGER {staging}.{quote(name)}")
        saved = self._live_triggers(skip_tables=set(kept))
        self.journal.data = {}
        try:
            self.journal.write(
                phase="prepared", database=self.database, started=_now(), pid=os.getpid(),
                dump=str(dump), live_tables=live_tables, new_tables=sorted(new_tables),
                kept_tables=kept,
                live_triggers=saved, manifest=asdict(manifest),
                objects=_encode(s for s in index.rest if s.kind in OBJECT_KINDS))
        except OSError as exc:  # e.g. a full disk: without a journal there is no swap
            self.journal.remove()
            raise StepError(f"cannot write the swap journal {self.journal.path}:"
                            f" {exc.strerror or exc}; live {self.database} unchanged") from None
        try:
            charset = charset_clause(self.admin, self.database)
            rows(self.admin, f"DROP DATABASE IF EXISTS {previous}")
            rows(self.admin, f"CREATE DATABASE {previous}{charset}")
            for trigger in saved:
                rows(self.admin, f"DROP TRIGGER {db}.{quote(trigger['name'])}")
            pause_point("before-rename")
            pairs = [f"{db}.{quote(t)} TO {previous}.{quote(t)}" for t in live_tables]
            pairs += [f"{staging}.{quote(t)} TO {db}.{quote(t)}" for t in new_tables]
            rows(self.admin, "RENAME TABLE " + ", ".join(pairs))
        except Exception:
            if self._restore_triggers(saved):
                self.journal.remove()  # live is as it was
            raise
        with contextlib.suppress(OSError):  # "prepared" serves the recovery as well
            self.journal.write(phase="renamed", renamed=_now())
        pause_point("after-rename")
        self._complete(manifest)
        return manifest

    def _complete(self, manifest: Manifest) -> None:
        """After the RENAME: objects back in live, staging dropped, live checked."""
        self._drop_live_objects()
        self.admin.select_db(self.database)
        where = f"database {self.database} after the swap"
        replayed = 0
        for statement in _decode(self.journal.data.get("objects")):
            execute(self.admin, statement, where)
            if statement.kind != "session":
                replayed += 1
                if replayed == 1:
                    pause_point("mid-replay")
        with contextlib.suppress(Exception):
            rows(self.admin, f"DROP DATABASE IF EXISTS {quote(self.staging)}")
        self.verify(manifest)

    def verify(self, manifest: Manifest) -> None:
        """Live against the manifest; on a mismatch the journal says `damaged` and this raises."""
        problems = manifest_problems(manifest, live_manifest(self.admin, self.database))
        if problems:
            with contextlib.suppress(OSError):  # the journal stays either way: CRITICAL
                self.journal.write(phase="damaged", problems=problems, checked=_now())
            raise StepError(f"live {self.database} does not match the dump after the swap: "
                            f"{', '.join(problems[:10])}; the previous tables are in"
                            f" {self.previous}; the next run retries the swap")
        self.journal.remove()

    # ------------------------------------------------------------------ recovery
    def recover(self) -> str | None:
        """Finish or undo a swap a killed run left half-done; what was done, or None."""
        data = self.journal.read()
        if data is None:
            return None
        new_tables = {str(t) for t in data["new_tables"]}
        in_staging = set(base_tables(self.admin, self.staging)) & new_tables
        manifest = Manifest.from_json(data.get("manifest"))
        started = data.get("started", "?")
        if data.get("phase") == "prepared" and new_tables and in_staging == new_tables:
            if not self._restore_triggers(data.get("live_triggers") or []):
                raise StepError(f"swap journal {self.journal.path}: could not put live"
                                f" {self.database}'s triggers back; the next run tries again")
            self.journal.remove()
            return (f"rolled back the swap begun at {started} (killed before its RENAME):"
                    f" live {self.database}'s triggers are back")
        if not in_staging:
            self._complete(manifest)
            return (f"completed the swap begun at {started} (interrupted after its RENAME):"
                    f" live {self.database} has its {manifest.count()}")
        raise StepError(f"swap journal {self.journal.path}: {self.staging} still holds "
                        f"{', '.join(sorted(in_staging))} but not all new tables: the swap is"
                        " neither done nor undone; compare live with the dump by hand")

    # ------------------------------------------------------------------ helpers
    def _tied_to_moving(self, kept: list[str], moving: set[str]) -> list[str]:
        """Kept tables whose foreign keys reference a moving table (directly or through
        another such table): they have to move too."""
        if not kept:
            return []
        links = [(str(r[0]), str(r[1])) for r in rows(
            self.admin, "SELECT table_name, referenced_table_name FROM"
            " information_schema.referential_constraints WHERE constraint_schema = %s"
            " AND unique_constraint_schema = %s", (self.database, self.database))]
        tied: set[str] = set()
        changed = True
        while changed:
            changed = False
            for child, parent in links:
                if child in kept and child not in tied and (parent in moving or parent in tied):
                    tied.add(child)
                    changed = True
        return sorted(tied)

    def _trigger_tables(self) -> list[tuple[str, str]]:
        """(trigger, table) of live's triggers."""
        return [(str(r[0]), str(r[1])) for r in rows(
            self.admin, "SELECT trigger_name, event_object_table FROM"
            " information_schema.triggers WHERE trigger_schema = %s", (self.database,))]

    def _live_triggers(self, skip_tables: set[str] | None = None) -> list[dict[str, str]]:
        saved = []
        for (name, table) in rows(self.admin, "SELECT trigger_name, event_object_table FROM"
                                  " information_schema.triggers WHERE trigger_schema = %s"
                                  " ORDER BY action_order", (self.database,)):
            if skip_tables and table in skip_tables:
                continue  # its table stays in live: the trigger does not block the RENAME
            row = rows(self.admin, f"SHOW CREATE TRIGGER {quote(self.database)}.{quote(name)}")[0]
            saved.append({"name": str(row[0]), "sql_mode": str(row[1]),
                          "statement": str(row[2]), "charset": str(row[3])})
        return saved

    def _restore_triggers(self, saved: list[dict[str, str]]) -> bool:
        """Put live's saved triggers back (those missing); True when all are there."""
        if not saved:
            return True
        try:
            self.admin.select_db(self.database)
            for trigger in saved:
                if rows(self.admin, "SELECT 1 FROM information_schema.triggers WHERE"
                        " trigger_schema = %s AND trigger_name = %s",
                        (self.database, trigger["name"])):
                    continue
                rows(self.admin, "SET SESSION sql_mode = %s", (trigger["sql_mode"],))
                rows(self.admin, f"SET SESSION character_set_client = {trigger['charset']}")
                rows(self.admin, trigger["statement"])
        except Exception:  # noqa: BLE001 - the journal stays; the next run tries again
            return False
        return True

    def _drop_live_objects(self) -> None:
        db = quote(self.database)
        for (name,) in rows(self.admin, "SELECT table_name FROM information_schema.views"
                            " WHERE table_schema = %s", (self.database,)):
            rows(self.admin, f"DROP VIEW IF EXISTS {db}.{quote(name)}")
        for name, kind in rows(self.admin, "SELECT routine_name, routine_type FROM"
                               " information_schema.routines WHERE routine_schema = %s",
                               (self.database,)):
            rows(self.admin, f"DROP {kind} IF EXISTS {db}.{quote(name)}")
        for (name,) in rows(self.admin, "SELECT event_name FROM information_schema.events"
                            " WHERE event_schema = %s", (self.database,)):
            rows(self.admin, f"DROP EVENT IF EXISTS {db}.{quote(name)}")
        kept = {str(t) for t in self.journal.data.get("kept_tables") or []}
        for name, table in self._trigger_tables():
            if table not in kept:  # a kept table's trigger stays with it
                rows(self.admin, f"DROP TRIGGER IF EXISTS {db}.{quote(name)}")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
