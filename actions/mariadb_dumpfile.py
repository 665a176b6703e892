"""Read a `mariadb-dump`/`mysqldump` file as statements, and index it by table.

The loader needs four things from a dump before it touches a server:
- its statements, one at a time, as bytes (dumps hold arbitrary bytes in BLOBs), honouring
  `DELIMITER` blocks (triggers, routines, events) and skipping comments;
- the `-- Dump completed on <date>` trailer, whose absence means a cut or failed dump;
- the `/*M!999999\\- enable the sandbox mode */` first line of recent clients, a client
  command that is no statement for the server (sent as is it fails: "Query was empty");
- `CREATE DATABASE`/`USE` lines (`--databases`), which would write into the live schema.

`index_dump()` reads the file once and returns a `DumpIndex`: the per-table byte ranges
that can load in parallel, and the small remainder (session settings, view stubs, views,
triggers, routines, events) that runs serially afterwards, in dump order.

Splitting relies on how dump tools write: each statement ends a line with the current
delimiter, and data values escape their newlines (`\\n`). For statements that are not
`INSERT`s we also check that the delimiter is not inside a quote or comment, so a routine
body or a table comment with `;` at a line end does not end early.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import BinaryIO

SANDBOX_RE = re.compile(rb"^/\*M?!999999\\- enable the sandbox mode \*/")
TRAILER_RE = re.compile(
    rb"-- Dump completed(?: on (\d{4}-\d{2}-\d{2})\s+(\d{1,2}:\d{2}:\d{2}))?\s*$"
)
_DELIMITER_RE = re.compile(rb"^DELIMITER\s+(\S+)\s*$", re.IGNORECASE)
_VERSIONED = re.compile(r"/\*M?!\d*\s?|\*/")
_IDENT = r"(?:`((?:[^`]|``)+)`|([A-Za-z0-9_$]+))"
_IFNE = r"(?:IF NOT EXISTS\s+)?"
_IFE = r"(?:IF EXISTS\s+)?"
_DEFINER = r"(?:DEFINER\s*=\s*\S+\s+)?"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("insert", re.compile(rf"^INSERT\s+(?:IGNORE\s+)?INTO\s+{_IDENT}", re.I)),
    ("create_table",
     re.compile(rf"^CREATE\s+(?:TEMPORARY\s+)?TABLE\s+{_IFNE}{_IDENT}", re.I)),
    ("drop_table", re.compile(rf"^DROP\s+TABLE\s+{_IFE}{_IDENT}", re.I)),
    ("lock", re.compile(rf"^LOCK\s+TABLES\s+{_IDENT}", re.I)),
    ("unlock", re.compile(r"^UNLOCK\s+TABLES", re.I)),
    ("keys", re.compile(rf"^ALTER\s+TABLE\s+{_IDENT}\s+(?:DISABLE|ENABLE)\s+KEYS", re.I)),
    ("session", re.compile(r"^SET\s", re.I)),
    ("create_database",
     re.compile(rf"^CREATE\s+(?:DATABASE|SCHEMA)\s+{_IFNE}{_IDENT}", re.I)),
    ("use", re.compile(rf"^USE\s+{_IDENT}", re.I)),
    ("view", re.compile(
        rf"^CREATE\s+(?:OR REPLACE\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?{_DEFINER}"
        rf"(?:SQL SECURITY \w+\s+)?VIEW\s+{_IDENT}", re.I)),
    ("trigger", re.compile(rf"^CREATE\s+{_DEFINER}TRIGGER\s+{_IDENT}", re.I)),
    ("routine", re.compile(rf"^CREATE\s+{_DEFINER}(?:FUNCTION|PROCEDURE)\s+{_IDENT}", re.I)),
    ("event", re.compile(rf"^CREATE\s+{_DEFINER}EVENT\s+{_IDENT}", re.I)),
    ("drop_view", re.compile(rf"^DROP\s+VIEW\s+{_IFE}{_IDENT}", re.I)),
    ("drop_routine",
     re.compile(rf"^DROP\s+(?:FUNCTION|PROCEDURE|EVENT)\s+{_IFE}{_IDENT}", re.I)),
    ("alter_database", re.compile(rf"^ALTER\s+(?:DATABASE|SCHEMA)\s+{_IDENT}", re.I)),
    ("drop_database", re.compile(rf"^DROP\s+(?:DATABASE|SCHEMA)\s+{_IFE}{_IDENT}", re.I)),
]
# Statements that belong to the table section they appear in.
_TABLE_KINDS = {"insert", "create_table", "lock", "unlock", "keys"}


class DumpFormatError(ValueError):
    """The file is not a dump this loader can read safely (the message says why)."""


@dataclass
class Statement:
    """One statement: its text without the delimiter, and where it ends in the file."""

    text: bytes
    delimiter: bytes
    start: int
    end: int
    kind: str = "other"
    name: str | None = None


def classify(text: bytes) -> tuple[str, str | None]:
    """(kind, object name) of a statement, looking through `/*!NNNNN ... */` wrappers."""
    head = _VERSIONED.sub(" ", text[:800].decode("latin-1"))
    head = " ".join(head.split())
    for kind, pattern in _PATTERNS:
        match = pattern.match(head)
        if match:
            name = next((g for g in match.groups() if g), None)
            if name is not None:
                name = name.replace("``", "`")
            return kind, name
    return "other", None


def _open_at_end(text: bytes) -> bool:
    """True when `text` ends inside a quoted string or a /* */ comment (so not a full statement)."""
    quote: int | None = None
    in_comment = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if in_comment:
            if c == 0x2A and i + 1 < n and text[i + 1] == 0x2F:  # */
                in_comment = False
                i += 1
        elif quote is not None:
            if c == 0x5C and quote != 0x60:  # backslash escape inside '…' and "…"
                i += 1
            elif c == quote:
                quote = None
        elif c in (0x27, 0x22, 0x60):
            quote = c
        elif c == 0x2F and i + 1 < n and text[i + 1] == 0x2A:  # /*
            # Executable comments (/*!50003 … */) hold code: look inside them.
            if not (i + 2 < n and text[i + 2] in (0x21, 0x4D)):
                in_comment = True
            i += 1
        elif c == 0x2D and text[i:i + 3] in (b"-- ", b"--\n", b"--\t") or c == 0x23:
            nl = text.find(b"\n", i)
            if nl < 0:
                # The delimiter that follows sits inside this line comment (a routine's
                # `SET y = 1; -- ;;`): the client reads on, so must we.
                return True
            i = nl
        i += 1
    return quote is not None or in_comment


def iter_statements(
    handle: BinaryIO, start: int = 0, end: int | None = None
) -> Iterator[Statement]:
    """Statements of the dump between byte offsets `start` and `end` (the whole file by default).

    Raises DumpFormatError when the range ends inside a statement (a cut dump).
    """
    handle.seek(start)
    position = start
    delimiter = b";"
    # The statement so far, in one growing buffer: mariadb-dump writes each row of an
    # extended INSERT on its own line, so a 1 MB statement is ~10^5 short lines, and a list
    # of them costs five times the statement in memory (per loading thread).
    buf = bytearray()
    first = start == 0
    statement_start = start
    while end is None or position < end:
        line = handle.readline()
        if not line:
            break
        position += len(line)
        if first:
            first = False
            if SANDBOX_RE.match(line):
                continue
        if not buf:
            stripped = line.strip()
            if not stripped or stripped.startswith(b"-- ") or stripped == b"--":
                continue
            match = _DELIMITER_RE.match(stripped)
            if match:
                delimiter = match.group(1)
                continue
            statement_start = position - len(line)
        buf += line
        # Offsets instead of rstrip()/strip() copies: every copy of a megabyte statement
        # adds to the loader's peak memory.
        if not line.endswith(delimiter, 0, _rstrip_end(line, len(line))):
            if len(buf) == len(line) and _rows_follow(line, delimiter):
                read, found = _rest_of_insert(handle, buf, None if end is None
                                              else end - position)
                position += read
                if found:
                    handle.seek(position)
                    line = b";\n"
            if not line.endswith(delimiter, 0, _rstrip_end(line, len(line))):
                continue
        stop = _rstrip_end(buf, len(buf)) - len(delimiter)
        begin = _lstrip_start(buf, stop)
        if not buf.startswith(b"INSERT", begin) and _open_at_end(bytes(buf[begin:stop])):
            continue
        stop = _rstrip_end(buf, stop)
        body = bytes(memoryview(buf)[begin:stop])
        buf = bytearray()
        if stop <= begin:
            continue
        kind, name = classify(body)
        yield Statement(text=body, delimiter=delimiter, start=statement_start, end=position,
                        kind=kind, name=name)
    if buf.strip():
        raise DumpFormatError(
            f"the dump ends inside a statement at byte {position} (cut or incomplete file)"
        )


_SPACE = frozenset(b" \t\r\n\x0b\x0c")
_CHUNK = 1 << 16


def _rows_follow(line: bytes, delimiter: bytes) -> bool:
    """The first line of a multi-line extended INSERT (`INSERT … VALUES` or `… VALUES (…),`,
    then a row per line, as mariadb-dump writes them)."""
    return (delimiter == b";" and line.startswith(b"INSERT")
            and (line.endswith(b",\n") or line.endswith(b" VALUES\n")))


def _rest_of_insert(handle: BinaryIO, buf: bytearray, limit: int | None) -> tuple[int, bool]:
    """Append the rest of an extended INSERT to `buf`, read in large chunks: its values
    escape newlines, so it ends at the first `;` + newline. (bytes read, end found); the
    handle is left past what was read, the caller seeks back to the statement's end."""
    read = 0
    while limit is None or read < limit:
        size = _CHUNK if limit is None else min(_CHUNK, limit - read)
        chunk = handle.read(size)
        if not chunk:
            return read, False
        if buf.endswith(b";") and chunk.startswith(b"\n"):
            cut = 0
        else:
            cut = chunk.find(b";\n")
            cut = cut + 1 if cut >= 0 else -1
        if cut >= 0:
            buf += chunk[:cut + 1]
            return read + cut + 1, True
        buf += chunk
        read += len(chunk)
    return read, False


def _rstrip_end(data: bytes | bytearray, end: int) -> int:
    """`end` moved back over trailing whitespace (what rstrip() would keep), without a copy."""
    while end > 0 and data[end - 1] in _SPACE:
        end -= 1
    return end


def _lstrip_start(data: bytes | bytearray, end: int) -> int:
    """The first non-whitespace offset before `end`."""
    start = 0
    while start < end and data[start] in _SPACE:
        start += 1
    return start


@dataclass
class Section:
    """A table's statements: bytes [start, end) of the file, loadable on their own."""

    table: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class DumpIndex:
    """What a dump holds, found in one read of the file."""

    path: Path
    size: int
    sandbox: bool = False
    trailer: str | None = None
    completed: datetime | None = None
    header: list[Statement] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    rest: list[Statement] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    routines: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def tables(self) -> list[str]:
        return [section.table for section in self.sections]


def read_trailer(path: Path, tz: tzinfo | None = None) -> tuple[str | None, datetime | None]:
    """The `-- Dump completed …` line at the end of the file and its time (UTC unless `tz`)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 512))
        tail = handle.read()
    lines = tail.rstrip().splitlines()
    if not lines:
        return None, None
    match = TRAILER_RE.match(lines[-1].strip())
    if not match:
        return None, None
    completed = None
    if match.group(1):
        stamp = f"{match.group(1).decode()} {match.group(2).decode()}"
        naive = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
        completed = naive.replace(tzinfo=tz or UTC)
    return lines[-1].strip().decode("latin-1"), completed


def unfinished_end(path: Path, window: int = 1 << 20) -> str | None:
    """Why the file does not end with a complete statement, or None when it does.

    The check for a dump without the trailer (`--skip-comments`, `--compact`): its last
    line that is not blank or a `--` comment must end with `;` (or be a `DELIMITER` line,
    which follows a routine's or trigger's `;;`), and when that line is an INSERT (one
    line each in a dump: data escapes its newlines) its quotes must be closed, so a cut
    that happens to fall just after a `;` inside a value is caught too.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - window))
        tail = handle.read()
    lines = [line.strip() for line in tail.splitlines()]
    lines = [line for line in lines if line and not line.startswith(b"-- ") and line != b"--"]
    if not lines or (size > window and len(lines) < 2):
        return "holds no statement" if size <= window else "its last line is not complete"
    last = lines[-1]
    if _DELIMITER_RE.match(last):
        return None
    if not last.endswith(b";"):
        return f"its last line does not end a statement ({last[-40:].decode('latin-1')!r})"
    if last.upper().startswith(b"INSERT") and _open_at_end(last[:-1]):
        return "its last INSERT ends inside a quoted value"
    return None


def has_sandbox_line(path: Path) -> bool:
    with open(path, "rb") as handle:
        return bool(SANDBOX_RE.match(handle.readline()))


def index_dump(path: str | Path, tz: tzinfo | None = None) -> DumpIndex:
    """Read the dump once: table sections, the serial remainder, objects and the trailer.

    Raises DumpFormatError for a file cut inside a statement.
    """
    path = Path(path)
    index = DumpIndex(path=path, size=path.stat().st_size)
    index.trailer, index.completed = read_trailer(path, tz)
    index.sandbox = has_sandbox_line(path)
    current: Section | None = None
    # Settings and DROP TABLEs wait here until we know whether they open the next table
    # section (DROP TABLE t; SET …; CREATE TABLE t), sit inside one, or belong to the
    # remainder (the SETs before a trigger, the DROP TABLE of a view's stub).
    pending: list[Statement] = []
    with open(path, "rb") as handle:
        for statement in iter_statements(handle):
            kind, name = statement.kind, statement.name
            if kind in ("session", "drop_table"):
                pending.append(statement)
                continue
            if kind == "create_table" and name is not None:
                if current is not None:
                    index.sections.append(current)
                drops = [i for i, s in enumerate(pending)
                         if s.kind == "drop_table" and s.name == name]
                if drops:
                    first = drops[-1]
                    index.rest.extend(pending[:first])
                    current = Section(table=name, start=pending[first].start, end=statement.end)
                else:
                    index.rest.extend(pending)
                    current = Section(table=name, start=statement.start, end=statement.end)
                pending = []
                continue
            if current is not None and kind in _TABLE_KINDS and name in (None, current.table):
                current.end = statement.end  # settings in between stay inside the section
                pending = []
                continue
            if current is not None:
                index.sections.append(current)
                current = None
            index.rest.extend(pending)
            pending = []
            index.rest.append(statement)
            _note_object(index, statement)
    if current is not None:
        index.sections.append(current)
    index.rest.extend(pending)
    first_start = index.sections[0].start if index.sections else index.size
    index.header = [s for s in index.rest if s.kind == "session" and s.end <= first_start]
    return index


def _note_object(index: DumpIndex, statement: Statement) -> None:
    lists = {"view": index.views, "trigger": index.triggers, "routine": index.routines,
             "event": index.events, "create_database": index.databases}
    target = lists.get(statement.kind)
    if target is not None and statement.name and statement.name not in target:
        target.append(statement.name)


def data_age(completed: datetime | None, now: datetime | None = None) -> timedelta | None:
    """How old the dumped data is, from the trailer's completion time."""
    if completed is None:
        return None
    return (now or datetime.now(UTC)) - completed
