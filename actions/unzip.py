"""`unzip`: inflate the one file of a `.zip` dump, refusing anything a hostile archive could do.

The archive must hold exactly one regular file. Refused, each with its own line: more
than one member, a directory, a symlink or other special member, an absolute name or a
name with `..`, an encrypted member, a member larger than `max_size` or compressed more
than `max_ratio` times (a zip bomb), or one that would not fit the free disk. The
member is written under its base name only, so nothing lands outside `dest_dir`.

Extraction streams through a byte counter that stops as soon as more than the declared
size comes out (the header is not trusted), into a 0600 temporary file that is renamed
to its final name only when complete and its CRC has checked out.

A file that is not a zip archive (and is not named `*.zip`) is passed through untouched,
so a job can always list `unzip` after `fetch`. Already extracted (same size and CRC):
the step reports so and writes nothing.

Policy snippet (a job step)::

    jobs:
      import:
        steps:
          - fetch: {source: "dumper@db:/backups/gocdb.sql.zip", known_hosts: ..., identity: ...}
          - unzip:
              max_size: 20GiB      # default; a number is bytes; KiB, MiB, GiB, TiB accepted
              max_ratio: 200       # default: uncompressed / compressed size
              # file: /var/lib/failover-engine/work/gocdb.sql.zip   # default: the previous output
              # dest_dir: ...                                       # default: the job's work dir

Inputs the runner gives a job step through its context: `ctx.previous_output` (the
previous step's output, used when `file` is not set) and `ctx.work_dir` (used when
`dest_dir` is not set; without it, the zip's own directory). The step's output is the
extracted file's path (the file itself when it is passed through). In a dry-run whose
fetch has not run yet, the plan says what it would do and checks the archive once it
exists; its planned output is then a description, since the member's name is inside it.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.errors import StepError
from engine.fsutil import ensure_private_dir, fsync_dir, private_temp

_CHUNK = 1024 * 1024
_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]iB|B)?\s*$", re.IGNORECASE)
DEFAULT_MAX_SIZE = 20 << 30
DEFAULT_MAX_RATIO = 200.0


def parse_size(value: str | int | float) -> int:
    """Bytes from `123`, `500MiB`, `20GiB`; ValueError naming the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size (use e.g. 500MiB, 20GiB)")
    if isinstance(value, int | float):
        return int(value)
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size (use bytes or e.g. 500MiB, 20GiB)")
    return int(float(match[1]) * _UNITS[(match[2] or "").lower()])


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this member must not be extracted (name, type, encryption), or None."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"member {name!r} is a symbolic link"
    if info.is_dir() or stat.S_ISDIR(mode):
        return f"member {name!r} is a directory, not a file"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return f"member {name!r} is not a regular file (mode {mode:o})"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return f"member {name!r} has an absolute path"
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        return f"member {name!r} climbs out of the directory with '..'"
    if not parts[-1] or parts[-1] == ".":
        return f"member {name!r} has no file name"
    if info.flag_bits & 0x1:
        return f"member {name!r} is encrypted"
    return None


class Unzip:
    kind: ClassVar[str] = "unzip"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.file = params.get("file")
        self.dest_dir = params.get("dest_dir")
        self.max_size = parse_size(params.get("max_size", DEFAULT_MAX_SIZE))
        self.max_ratio = float(params.get("max_ratio", DEFAULT_MAX_RATIO))

    def plan(self, ctx: Context) -> Plan:
        planned = ctx.planned_input(self.file)
        if planned is not None:
            return self._plan_later(ctx, planned)
        try:
            source = self._source(ctx)
            if not _is_zip(source):
                return Plan(f"{source} is not a zip archive; nothing to extract", after=str(source),
                            done=True, output=source)
            with _open_zip(source) as archive:
                info, dest = self._check(ctx, source, archive)
        except StepError as exc:
            return Plan(summary="unzip", problem=str(exc))
        if _already_extracted(dest, info):
            return Plan(f"already extracted: {dest}", after=str(dest), done=True, output=dest)
        return Plan(
            f"extract {info.filename} ({info.file_size} bytes) from {source} → {dest}",
            before=str(source),
            after=str(dest),
            output=dest,
        )

    def _plan_later(self, ctx: Context, planned: str) -> Plan:
        """The input is the previous step's planned output, not made yet: say what would be
        done; the archive's checks run once it exists."""
        source = ctx.input_path(self.file)
        if source is not None and source.suffix.lower() != ".zip":
            return Plan(f"would hand on {source} as it is, unless it turns out to be a zip "
                        "archive (checked once it exists)", output=source)
        directory = self.dest_dir or ctx.work_dir or (source.parent if source else None)
        where = f" into {directory}" if directory else ""
        return Plan(f"would extract the single file of {planned}{where} (checked once it "
                    "exists)", output=f"the file extracted from {planned}")

    def apply(self, ctx: Context) -> Outcome:
        source = self._source(ctx)
        if not _is_zip(source):
            return Outcome(f"{source} is not a zip archive; nothing to extract",
                           after=str(source), changed=False, output=source)
        with _open_zip(source) as archive:
            info, dest = self._check(ctx, source, archive)
            if _already_extracted(dest, info):
                return Outcome(f"already extracted: {dest}", str(source), str(dest),
                               changed=False, output=dest)
            ensure_private_dir(dest.parent)
            _remove_stale_parts(dest)
            self._extract(ctx, source, archive, info, dest)
        ctx.log(f"extracted {info.filename} ({info.file_size} bytes) from {source} → {dest}")
        return Outcome(f"extracted {info.filename} from {source} → {dest}", str(source), str(dest),
                       output=dest)

    # -- checks -----------------------------------------------------------------------

    def _source(self, ctx: Context) -> Path:
        path = ctx.input_path(self.file)
        if path is None:
            raise StepError("unzip: no file given and no previous step's output; set file")
        if not path.is_file():
            raise StepError(f"unzip: {path} does not exist or is not a regular file")
        return path

    def _check(
        self, ctx: Context, source: Path, archive: zipfile.ZipFile
    ) -> tuple[zipfile.ZipInfo, Path]:
        members = archive.infolist()
        if len(members) != 1:
            names = ", ".join(repr(m.filename) for m in members[:3])
            more = ", …" if len(members) > 3 else ""
            raise StepError(
                f"unzip: {source} holds {len(members)} members ({names}{more}); "
                f"it must hold exactly one file"
            )
        info = members[0]
        problem = member_problem(info)
        if problem:
            raise StepError(f"unzip: {source}: {problem}; refusing the archive")
        if info.file_size > self.max_size:
            raise StepError(
                f"unzip: {source}: member {info.filename!r} would inflate to {info.file_size} "
                f"bytes, over max_size {self.max_size}; raise max_size if that is expected"
            )
        ratio = info.file_size / info.compress_size if info.compress_size else float("inf")
        if info.file_size and ratio > self.max_ratio:
            raise StepError(
                f"unzip: {source}: member {info.filename!r} is compressed {ratio:.0f}:1, over "
                f"max_ratio {self.max_ratio:g} (a zip bomb?); raise max_ratio if that is expected"
            )
        directory = Path(self.dest_dir or ctx.work_dir or source.parent)
        dest = directory / re.split(r"[/\\]", info.filename)[-1]
        if dest.resolve() == source.resolve():
            raise StepError(f"unzip: {source}: its member would overwrite the archive itself")
        free = shutil.disk_usage(_existing_parent(directory)).free
        if info.file_size > free:
            raise StepError(
                f"unzip: {info.filename!r} needs {info.file_size} bytes but {directory} has "
                f"{free} free; free some space"
            )
        return info, dest

    # -- extraction -------------------------------------------------------------------

    def _extract(
        self, ctx: Context, source: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
        dest: Path,
    ) -> None:
        with private_temp(dest.parent, f".{dest.name}.") as (fd, tmp):
            try:
                with os.fdopen(fd, "wb") as out, archive.open(info) as member:
                    written = 0
                    while chunk := member.read(_CHUNK):
                        written += len(chunk)
                        if written > info.file_size:
                            raise StepError(
                                f"unzip: {source}: member {info.filename!r} inflates past its "
                                f"declared {info.file_size} bytes; refusing the archive"
                            )
                        out.write(chunk)
                        if ctx.should_stop() or (
                            ctx.deadline is not None and time.monotonic() > ctx.deadline
                        ):
                            raise StepError(f"unzip: {source} interrupted (timeout or stop)",
                                            retryable=True)
                    out.flush()
                    os.fsync(out.fileno())
                if written != info.file_size:
                    raise StepError(
                        f"unzip: {source}: member {info.filename!r} gave {written} bytes, "
                        f"its header says {info.file_size}; the archive is damaged"
                    )
                os.replace(tmp, dest)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise StepError(f"unzip: {source} is damaged or unsupported: {exc}") from None
        fsync_dir(dest.parent)


@contextlib.contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StepError(f"unzip: {path} is not a readable zip archive: {exc}") from None
    with archive:
        yield archive


def _is_zip(path: Path) -> bool:
    # A file named *.zip that is not a zip is an error (reported by _open_zip), not a pass-through.
    return path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)


def _already_extracted(dest: Path, info: zipfile.ZipInfo) -> bool:
    try:
        if not dest.is_file() or dest.is_symlink() or dest.stat().st_size != info.file_size:
            return False
        crc = 0
        with dest.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
        return crc == info.CRC
    except OSError:
        return False


def _remove_stale_parts(dest: Path) -> None:
    escaped = re.sub(r"([*?\[])", r"[\1]", dest.name)
    for leftover in dest.parent.glob(f".{escaped}.*.part"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
