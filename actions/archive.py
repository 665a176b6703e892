"""`archive`: keep a copy of the imported dump under a dated name, and prune old copies.

The file (by default the previous step's output) is copied — or moved, with
`mode: move` — into `dir` under a `strftime` name taken in UTC (default
`_goc5dump_%y-%m-%d_%H_%M_%S`) followed by the file's own extension (`.dmp`, `.sql`),
e.g. `_goc5dump_25-11-26_06_45_00.sql`; a second archive made in the same second gets
`-2` (then `-3` …) before the extension, so two runs never collide. A copy is written
to a 0600 temporary file and renamed; a move is a rename (or copy + rename + delete
across file systems). An interruption never leaves a partial file under an archive name.

Then old archives are pruned. Only files whose name fits the `name` pattern (with any
extension) are considered, so nothing else in `dir` is ever deleted, and never the file
just archived:

- `keep: N` keeps the newest N archives, the new one included (`keep: 1` is what the
  original did: delete every older dump, then store the new one);
- `max_age: 30d` deletes archives older than that;
- both may be given (a file goes when either says so); neither: nothing is deleted.

An archive's age is the UTC time in its name (its modification time when the pattern
has no date). Idempotent: when `dir` already holds an identical copy of the file (same
size, mtime and bytes), nothing is copied again; with `mode: move`, a re-run after the
move finds the archive it recorded in the step's progress.

Policy snippet (the last step of an import job)::

    jobs:
      import:
        steps:
          - fetch: {...}
          - unzip: {}
          - import_mariadb: {...}
          - archive:
              dir: /var/lib/failover-engine/archive
              name: "_goc5dump_%y-%m-%d_%H_%M_%S"    # default; UTC
              keep: 1
              max_age: 30d      # optional
              mode: copy        # default; or move
              # file: ...       # default: the previous step's output (ctx.previous_output)

The step's output is the archived file's path. In a dry-run whose earlier steps have not
made the file yet, the plan names the archive it would write and checks the file once it
exists.
"""
from __future__ import annotations

import contextlib
import errno
import filecmp
import os
import re
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.durations import parse_duration
from engine.errors import StepError
from engine.fsutil import ensure_private_dir, fsync_dir, private_temp

DEFAULT_NAME = "_goc5dump_%y-%m-%d_%H_%M_%S"
_TEMP_PREFIX = ".archive-"
_CHUNK = 1024 * 1024
_MAX_SERIAL = 1000
_SERIAL_RE = re.compile(r"-(?:[2-9]|[1-9][0-9]{1,2})\Z")  # -2 … -999
_NO_INPUT = "archive: no file given and no previous step's output; set file"


@dataclass(frozen=True)
class Archived:
    """One file of the archive directory that fits the name pattern."""

    path: Path
    when: float  # epoch seconds, from the name (UTC) or the mtime

    @property
    def name(self) -> str:
        return self.path.name


class Archive:
    kind: ClassVar[str] = "archive"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.file = params.get("file")
        self.dir = Path(str(params.get("dir", "")))
        self.name = str(params.get("name", DEFAULT_NAME))
        self.keep = params.get("keep")
        self.mode = params.get("mode", "copy")
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # A bad option is reported by plan()/apply() as a step error, not raised while the
        # runner builds the step.
        self.config_problem: str | None = None
        self.max_age: float | None = None
        try:
            if "max_age" in params:
                self.max_age = parse_duration(params["max_age"])
        except ValueError as exc:
            self.config_problem = f"archive: max_age: {exc}"
        if not params.get("dir"):
            self.config_problem = "archive: set dir, the archive directory"
        elif "/" in self.name or not self.name.strip():
            self.config_problem = f"archive: name {self.name!r} must be a file name, not a path"
        elif self.keep is not None and (not isinstance(self.keep, int) or self.keep < 1):
            self.config_problem = f"archive: keep must be a whole number ≥ 1, not {self.keep!r}"
        elif self.mode not in ("copy", "move"):
            self.config_problem = f"archive: mode must be copy or move, not {self.mode!r}"

    # -- the step contract ------------------------------------------------------------

    def plan(self, ctx: Context) -> Plan:
        if self.config_problem:
            return Plan("archive", problem=self.config_problem)
        if problem := self._dir_problem():
            return Plan("archive", problem=problem)
        archives = self._archives()
        before = [a.name for a in archives]
        wanted = ctx.input_path(self.file)
        planned = ctx.planned_input(self.file)
        if planned is not None:
            return self._plan_later(archives, before, wanted, planned)
        if wanted is None or not wanted.is_file():
            recorded = self._recorded(ctx)
            if recorded is not None:
                prune = self._to_prune(archives, recorded)
                return Plan(self._summary(f"already archived as {recorded}", prune),
                            before, str(recorded), done=not prune, output=recorded)
            if wanted is None:
                return Plan("archive", before, problem=_NO_INPUT)
            return Plan("archive", before, problem=f"archive: {wanted} does not exist")
        source = wanted
        same = self._identical(source, archives)
        if same is not None:
            prune = self._to_prune(archives, same.path)
            return Plan(self._summary(f"already archived as {same.path}", prune),
                        before, str(same.path), done=not prune, output=same.path)
        target = self._target(source)
        prune = self._to_prune(archives, target)
        return Plan(self._summary(f"{self.mode} {source} → {target}", prune), before, str(target),
                    output=target)

    def _plan_later(self, archives: list[Archived], before: list[str], source: Path | None,
                    planned: str) -> Plan:
        """The file is the previous step's planned output, not made yet: name the archive
        it would get (when the file's name is known) and what would be pruned."""
        if source is None:
            return Plan(f"would {self.mode} {planned} into {self.dir} under a dated name "
                        f"({self.name} plus its extension; checked once it exists)", before,
                        output=f"the dated copy of {planned} in {self.dir}")
        target = self._target(source)
        prune = self._to_prune(archives, target)
        return Plan(self._summary(f"would {self.mode} {source} → {target} (checked once it "
                                  "exists)", prune), before, str(target), output=target)

    def apply(self, ctx: Context) -> Outcome:
        if self.config_problem:
            raise StepError(self.config_problem)
        if problem := self._dir_problem():
            raise StepError(problem)
        ensure_private_dir(self.dir)
        for leftover in self.dir.glob(f"{_TEMP_PREFIX}*.part"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        archives = self._archives()
        before = [a.name for a in archives]
        wanted = ctx.input_path(self.file)
        changed = True
        if wanted is None or not wanted.is_file():
            target = self._recorded(ctx)
            if target is None:
                if wanted is None:
                    raise StepError(_NO_INPUT)
                raise StepError(f"archive: {wanted} does not exist; nothing to archive")
            action, changed = f"already archived as {target}", False
        else:
            source = wanted
            same = self._identical(source, archives)
            if same is not None:
                target, changed = same.path, False
                action = f"already archived as {target}"
                if self.mode == "move":
                    source.unlink()
                    action, changed = f"{action}; removed {source}", True
            else:
                target = self._free_target(source)
                self._store(ctx, source, target)
                action = f"{'moved' if self.mode == 'move' else 'copied'} {source} → {target}"
        pruned = self._prune(self._archives(), target)
        if pruned:
            changed = True
        summary = self._summary(action, pruned, done=True)
        ctx.log(summary)
        return Outcome(summary, before, str(target), changed=changed, output=target)

    # -- storing ----------------------------------------------------------------------

    def _target(self, source: Path, serial: int = 0) -> Path:
        stem = self.clock().astimezone(UTC).strftime(self.name)
        return self.dir / (stem + (f"-{serial}" if serial else "") + source.suffix)

    def _free_target(self, source: Path) -> Path:
        """The dated name, or `<name>-2`, `-3` … when a run in the same second (or a pattern
        without seconds) already took it: an archive is never overwritten, and a second run
        never fails after its import was swapped in just because of a name."""
        for serial in (0, *range(2, _MAX_SERIAL)):
            target = self._target(source, serial)
            if not os.path.lexists(target):
                return target
        raise StepError(f"archive: {self._target(source)} and its numbered variants up to"
                        f" -{_MAX_SERIAL - 1} already exist; give name a finer time")

    def _store(self, ctx: Context, source: Path, target: Path) -> None:
        ctx.progress["archived"] = str(target)
        ctx.save_progress()
        if self.mode == "move":
            try:
                os.rename(source, target)
                os.chmod(target, 0o600)
                fsync_dir(self.dir)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise StepError(
                        f"archive: cannot move {source} to {target}: {exc.strerror}"
                    ) from None
            # Another file system: copy under a temp name, rename, then drop the source.
            self._copy(source, target)
            source.unlink()
            return
        self._copy(source, target)

    def _copy(self, source: Path, target: Path) -> None:
        with private_temp(self.dir, _TEMP_PREFIX) as (fd, tmp):
            try:
                with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                    os.fchmod(out.fileno(), 0o600)
                    shutil.copyfileobj(src, out, _CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                st = source.stat()
                # Same mtime as the source: how a re-run recognises the copy as already made.
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.replace(tmp, target)
            except OSError as exc:
                raise StepError(f"archive: cannot copy {source} to {target}: {exc}") from None
        fsync_dir(self.dir)

    # -- what is in the archive -------------------------------------------------------

    def _archives(self) -> list[Archived]:
        """Regular files in dir whose name fits the pattern, newest first."""
        try:
            entries = list(self.dir.iterdir())
        except FileNotFoundError:
            return []
        found = []
        for path in entries:
            if path.is_symlink() or not path.is_file():
                continue
            when = self._time_of(path)
            if when is not None:
                found.append(Archived(path, when))
        return sorted(found, key=lambda a: (a.when, _serial(a.path), a.name), reverse=True)

    def _time_of(self, path: Path) -> float | None:
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
        serial = _SERIAL_RE.search(stem)  # `<name>-2.sql`: a second archive of that second
        unnumbered = stem[: serial.start()] if serial else None
        for candidate in (stem, path.name, unnumbered):
            if candidate is None:
                continue
            try:
                parsed = datetime.strptime(candidate, self.name)
            except ValueError:
                continue
            if parsed.year == 1900:  # the pattern has no date: fall back to the mtime
                return path.stat().st_mtime
            return parsed.replace(tzinfo=UTC).timestamp()
        return None

    def _identical(self, source: Path, archives: list[Archived]) -> Archived | None:
        st = source.stat()
        for archived in archives:
            other = archived.path.stat()
            if (other.st_size, other.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and filecmp.cmp(
                source, archived.path, shallow=False
            ):
                return archived
        return None

    def _recorded(self, ctx: Context) -> Path | None:
        """The archive this step made before a crash (mode: move leaves no source behind)."""
        recorded = ctx.progress.get("archived")
        if recorded and Path(recorded).is_file():
            return Path(recorded)
        return None

    # -- pruning ----------------------------------------------------------------------

    def _to_prune(self, archives: list[Archived], just_archived: Path) -> list[Archived]:
        others = [a for a in archives if a.path != just_archived]
        doomed: dict[Path, Archived] = {}
        if self.keep is not None:
            # The new archive is one of the `keep`.
            for archived in others[max(0, self.keep - 1):]:
                doomed[archived.path] = archived
        if self.max_age is not None:
            limit = self.clock().timestamp() - self.max_age
            for archived in others:
                if archived.when < limit:
                    doomed[archived.path] = archived
        return sorted(doomed.values(), key=lambda a: a.name)

    def _dir_problem(self) -> str | None:
        """Why the archive directory must not be used: a symbolic link (pruning through it
        would delete files in a directory this step never wrote to), or not a directory."""
        try:
            info = os.lstat(self.dir)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"archive: dir {self.dir} cannot be examined: {exc.strerror}"
        if stat.S_ISLNK(info.st_mode):
            return (f"archive: dir {self.dir} is a symbolic link; set dir to the real "
                    "directory (old archives are deleted only in a real directory)")
        if not stat.S_ISDIR(info.st_mode):
            return f"archive: dir {self.dir} exists and is not a directory"
        return None

    def _prune(self, archives: list[Archived], just_archived: Path) -> list[Archived]:
        """Delete the archives `_to_prune` names: only regular files whose name fits the
        pattern, through a descriptor of the real directory (O_NOFOLLOW), so a directory
        swapped for a link meanwhile cannot redirect a deletion."""
        doomed = self._to_prune(archives, just_archived)
        if not doomed:
            return doomed
        try:
            dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise StepError(f"archive: dir {self.dir} cannot be opened to prune old archives "
                            f"({exc.strerror}); is it a symbolic link?") from None
        deleted = []
        try:
            for archived in doomed:
                if archived.path.parent != self.dir or self._time_of(archived.path) is None:
                    continue  # never anything but this step's own archives
                try:
                    info = os.stat(archived.name, dir_fd=dir_fd, follow_symlinks=False)
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    os.unlink(archived.name, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue
                deleted.append(archived)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return deleted

    def _summary(self, action: str, pruned: list[Archived], done: bool = False) -> str:
        if not pruned:
            return action
        verb = "deleted" if done else "delete"
        names = ", ".join(a.name for a in pruned[:5]) + (", …" if len(pruned) > 5 else "")
        return f"{action}; {verb} {len(pruned)} old archive(s): {names}"


def _serial(path: Path) -> int:
    """2, 3 … for `<name>-2.sql`, the later archives of one second; 0 for the first."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    found = _SERIAL_RE.search(stem)
    return int(found.group()[1:]) if found else 0
