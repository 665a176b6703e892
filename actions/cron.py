"""disable_cron / enable_cron: park a cron file so its jobs stop, and put it back.

    engage:
      - disable_cron: {file: /etc/cron.d/failover-engine-import}
    restore:
      - enable_cron: {file: /etc/cron.d/failover-engine-import}

A relative `file` or `park_dir` is taken from the policy file's directory.
`disable_cron` moves the file into `<state_dir>/parked/` (or `park_dir`, which must then
be the same in both steps); `enable_cron` moves it back. Mode, owner and times are kept
(cron ignores files in /etc/cron.d that are group- or world-writable, or not owned by
root, so a restored file must be exactly as it was). Within one filesystem the move is
a rename; across filesystems it is copy, fsync, rename into place, then unlink. Both
directories are fsynced, so the move survives a crash.

Both steps are idempotent: a file already parked (or already back) is reported as
"already done". If the file is in neither place, or in both (a package reinstalled it
while it was parked), the step fails with one line saying which paths to look at.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.errors import StepError
from engine.fsutil import fsync_dir
from engine.paths import StatePaths


def parked_path(ctx: Context, file: Path, park_dir: str | None) -> Path:
    """Where `file` is kept while parked."""
    directory = ctx.path(park_dir) if park_dir else StatePaths(Path(ctx.state_dir)).parked_dir
    return directory / file.name


def move_file(src: Path, dst: Path, rename: Callable[[Path, Path], None] = os.rename) -> None:
    """Move `src` to `dst` durably, keeping mode, owner and times, even across filesystems.

    `rename` is a parameter so the cross-filesystem path can be exercised in tests.
    """
    try:
        rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_then_unlink(src, dst)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def _copy_then_unlink(src: Path, dst: Path) -> None:
    info = src.stat()
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        shutil.copy2(src, tmp)  # data, mode and times
        os.chown(tmp, info.st_uid, info.st_gid)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(dst.parent)
    # Only once the copy is durable does the original go.
    src.unlink()


def _describe(path: Path) -> str:
    info = path.stat()
    return f"{path} (mode {info.st_mode & 0o7777:04o}, uid {info.st_uid})"


class _CronStep:
    kind: ClassVar[str]
    parking: ClassVar[bool]

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.file_param = str(params["file"])
        self.park_dir: str | None = params.get("park_dir")

    def _paths(self, ctx: Context) -> tuple[Path, Path]:
        """(source, destination) of this step's move."""
        file = ctx.path(self.file_param)
        parked = parked_path(ctx, file, self.park_dir)
        return (file, parked) if self.parking else (parked, file)

    def _file(self, ctx: Context) -> Path:
        return ctx.path(self.file_param)

    def _state(self, ctx: Context) -> str:
        """'todo', 'done', or raise StepError when the file is in neither or both places."""
        src, dst = self._paths(ctx)
        in_src, in_dst = src.exists(), dst.exists()
        if in_dst and not in_src:
            return "done"
        if in_src and not in_dst:
            return "todo"
        file, parked = (src, dst) if self.parking else (dst, src)
        if in_src and in_dst:
            raise StepError(f"{self.kind}: cron file {file} exists both in place and parked "
                            f"as {parked}; keep the right one, delete the other, then retry")
        raise StepError(f"{self.kind}: cron file {file} is neither in place nor parked as "
                        f"{parked}; check `file` (and `park_dir`) in the policy")

    def _words(self) -> tuple[str, str]:
        return ("parked", "park") if self.parking else ("back in place", "put back")

    def plan(self, ctx: Context) -> Plan:
        src, dst = self._paths(ctx)
        try:
            state = self._state(ctx)
        except StepError as exc:
            return Plan(summary=str(exc), problem=str(exc))
        done_word, verb = self._words()
        if state == "done":
            return Plan(summary=f"cron file {self._file(ctx)} already {done_word}", before=str(dst),
                        after=str(dst), done=True)
        problem = None
        if not self.parking and not dst.parent.is_dir():
            problem = f"enable_cron: directory {dst.parent} does not exist"
        return Plan(summary=f"would {verb} {_describe(src)} → {dst}", before=str(src),
                    after=str(dst), problem=problem)

    def apply(self, ctx: Context) -> Outcome:
        src, dst = self._paths(ctx)
        done_word, _ = self._words()
        if self._state(ctx) == "done":
            return Outcome(summary=f"cron file {self._file(ctx)} already {done_word}",
                           before=str(dst), after=str(dst), changed=False)
        described = _describe(src)
        try:
            if self.parking and not dst.parent.is_dir():
                dst.parent.mkdir(parents=True, mode=0o700)
            move_file(src, dst)
        except OSError as exc:
            raise StepError(f"{self.kind}: cannot move {src} to {dst}: {exc.strerror or exc}")\
                from exc
        return Outcome(summary=f"cron file {described} {done_word}: {dst}", before=str(src),
                       after=str(dst))


class DisableCron(_CronStep):
    """Move a cron file into the engine's parking directory."""

    kind: ClassVar[str] = "disable_cron"
    parking: ClassVar[bool] = True


class EnableCron(_CronStep):
    """Move a parked cron file back where it was."""

    kind: ClassVar[str] = "enable_cron"
    parking: ClassVar[bool] = False
