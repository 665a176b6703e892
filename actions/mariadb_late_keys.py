"""Secondary keys and foreign keys built after a table's rows: split a dumped CREATE TABLE.

An InnoDB table loaded with its secondary keys in place updates every one of them for each
row it receives, in the order the rows arrive; the same keys added afterwards by one
`ALTER TABLE … ADD KEY …` are built in place by sorting, once each (on the GOCDB-shaped
bench the import with the keys built during the load took 1.34–1.62× as long; see
BENCHMARKS.md). `split_create()`
takes the CREATE TABLE statement `mariadb-dump` wrote (SHOW CREATE TABLE's text: one
definition per line) and returns the CREATE to load with and the ALTER to run after the
rows, or no ALTER when the table is left as it is.

What moves to the ALTER, and why the rest stays:
- plain and SPATIAL `KEY` lines: nothing in the load depends on them;
- `CONSTRAINT … FOREIGN KEY` lines: a foreign key needs an index on its columns, and
  created without one InnoDB would invent its own (an extra KEY in SHOW CREATE), so the
  constraints move with the keys. The loader adds them only when the dump's session
  turns `FOREIGN_KEY_CHECKS` off, as the client then loads them: InnoDB adds them in
  place, without reading the rows, and rows in any order load as the client loads them;
- `PRIMARY KEY` stays (it is the table's storage order; without one InnoDB would use a
  hidden row id and rebuild the table when the key came);
- `UNIQUE` keys stay: a duplicate row then fails its INSERT exactly as under the client
  (error 1062 naming the key), and `INSERT IGNORE`/`REPLACE` dumps keep their meaning.
  UNIQUE keys sort before every other key in SHOW CREATE, so the order is unchanged;
- FULLTEXT keys stay (InnoDB builds at most one per ALTER in place, and the first one
  rebuilds the table); they sort after every other key, so the order is unchanged;
- CHECK constraints and columns stay.
The keys keep their dump order: SHOW CREATE lists them sorted (unique, then the others in
the order they were added, then fulltext), and the ALTER appends them after the ones the
CREATE kept, so the table comes out byte-identical (the differential test,
tests/fixtures/random_dump.py, compares SHOW CREATE of every table with the client's).

Left as it is (no ALTER): anything but InnoDB (MyISAM and Aria already build non-unique
keys after `DISABLE KEYS`), partitioned tables, tables without a PRIMARY KEY, and any
CREATE whose layout is not SHOW CREATE's (one definition per line, each key or foreign
key line matching its exact form): leaving a table alone is always correct, only slower.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = rb"`(?:[^`]|``)+`"
_COLUMNS = rb"\(" + _NAME + rb"(?:, ?" + _NAME + rb")*\)"  # a foreign key's: `a`, `b`
# The lines that move, in SHOW CREATE TABLE's layout; a line that starts like one of them
# but does not match in full (two keys on a line, an unknown option) leaves the table as is.
_MOVED_START = re.compile(rb"^\s*(?:(?:SPATIAL )?KEY `|CONSTRAINT `(?:[^`]|``)*` FOREIGN KEY )")
_KEY_LINE = re.compile(
    rb"^  (?:SPATIAL )?KEY " + _NAME
    + rb" \(" + _NAME + rb"(?:\(\d+\))?(?: DESC)?(?:," + _NAME + rb"(?:\(\d+\))?(?: DESC)?)*\)"
    + rb"(?: (?:USING (?:BTREE|HASH|RTREE)|COMMENT '(?:[^'\\]|\\.|'')*'|IGNORED"
    + rb"|KEY_BLOCK_SIZE=\d+))*,?$")
_ACTION = rb"(?:CASCADE|SET NULL|SET DEFAULT|RESTRICT|NO ACTION)"
_FOREIGN_LINE = re.compile(
    rb"^  CONSTRAINT " + _NAME + rb" FOREIGN KEY " + _COLUMNS + rb" REFERENCES (?:"
    + _NAME + rb"\.)?" + _NAME + rb" " + _COLUMNS + rb"(?: ON DELETE " + _ACTION + rb")?"
    + rb"(?: ON UPDATE " + _ACTION + rb")?,?$")
_PRIMARY = re.compile(rb"^\s*PRIMARY KEY ")
_ENGINE = re.compile(rb"\bENGINE=InnoDB\b", re.IGNORECASE)
_PARTITION = re.compile(rb"\bPARTITION BY\b", re.IGNORECASE)
_HEAD = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)` \($")


@dataclass
class Split:
    """The CREATE to load with; the ALTER that adds the rest after the rows (or None)."""

    create: bytes
    alter: bytes | None
    foreign_keys: int = 0


def split_create(create: bytes) -> Split:
    """`create` without its plain/SPATIAL keys and foreign keys, and the ALTER adding them."""
    unchanged = Split(create, None)
    lines = create.split(b"\n")
    if len(lines) < 3:
        return unchanged
    head = _HEAD.match(lines[0])
    close = next((i for i in range(len(lines) - 1, 0, -1) if lines[i].startswith(b")")), None)
    if head is None or close is None or close < 2:
        return unchanged
    tail = b"\n".join(lines[close:])
    if not _ENGINE.search(tail) or _PARTITION.search(tail):
        return unchanged
    body = lines[1:close]
    # One definition per line: every line but the last ends with a comma.
    if any(not line.endswith(b",") for line in body[:-1]) or body[-1].endswith(b","):
        return unchanged
    if not any(_PRIMARY.match(line) for line in body):
        return unchanged
    moving = [line for line in body if _MOVED_START.match(line)]
    if not moving or any(not (_KEY_LINE.match(line) or _FOREIGN_LINE.match(line))
                         for line in moving):
        return unchanged
    kept = [line for line in body if not _MOVED_START.match(line)]
    moved = [line.strip().rstrip(b",") for line in moving]
    kept = [line.rstrip(b",") + b"," for line in kept[:-1]] + [kept[-1].rstrip(b",")]
    table = head.group(1)
    alter = (b"ALTER TABLE `" + table + b"` "
             + b", ".join(b"ADD " + clause for clause in moved))
    foreign = sum(1 for clause in moved if clause.startswith(b"CONSTRAINT"))
    return Split(b"\n".join([lines[0], *kept, *lines[close:]]), alter, foreign)
