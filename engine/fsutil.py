"""Crash-safe file writes: atomic replace (temp + fsync + rename) and durable appends."""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from engine.paths import StatePaths


def fsync_dir(directory: Path) -> None:
    """Make a rename or create in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str, mode: int = 0o600,
                 *, durable: bool = True) -> None:
    """Replace `path` with `data` so a reader sees the old or the new file, never a mix.

    `durable=False` skips the fsyncs: still atomic for readers, but a crash may bring back
    the previous version — right for files rewritten every cycle, such as metrics.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def append_line(path: str | Path, line: str, mode: int = 0o640, *,
                nofollow: bool = True) -> None:
    """Append one line (a newline is added) and fsync, so it survives a crash right after.

    A symbolic link at `path` is refused (O_NOFOLLOW): a link planted as `audit.jsonl` or a
    status log must not make the engine append to the file it points at.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (os.O_NOFOLLOW if nofollow else 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and nofollow:
            from engine.errors import FailoverError

            raise FailoverError(f"{path} is a symbolic link; refusing to append to the file "
                                "it points at (remove the link)") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: str | Path) -> Path:
    """Create `path` (and parents) if needed; every directory we create is mode 0700.

    Each missing component is made 0700 itself (`mkdir(parents=True)` gives parents the
    umask's 0755), so a job that writes first leaves no state dir others can read.
    """
    path = Path(path)
    if path.is_dir():
        return path
    missing: list[Path] = []
    cursor = path
    while not cursor.exists() and cursor != cursor.parent:
        missing.append(cursor)
        cursor = cursor.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent creator won the race
            directory.mkdir(mode=0o700)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
    return path


# The engine's own files and directories in a state directory (engine/paths.py); other
# entries (an archive dir an operator linked to a bigger disk) are the policy's business.
_ENGINE_FILES = frozenset(
    {p.name for p in StatePaths(Path(".")).engine_entries} | {"engage.lock"})


def state_dir_problem(path: str | Path, *, reader: bool = False) -> str | None:
    """Why the state directory `path` is unsafe to use, or None.

    Refused: a symbolic link (the engine's files would land wherever it points), a
    directory owned by another user, or one that group or others may write to. A group
    read bit is allowed (`install --check-group` sets it for the monitoring user), and a
    `reader` (status, the checks: they write nothing there) need not be its owner.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"state directory {path} cannot be examined: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return (f"state directory {path} is a symbolic link; set state_dir to the real "
                "directory (mode 0700, owned by the engine's user)")
    if not stat.S_ISDIR(info.st_mode):
        return f"state directory {path} is not a directory"
    euid = os.geteuid()
    if info.st_uid != euid and not reader:
        return (f"state directory {path} is owned by uid {info.st_uid}, not by the engine's "
                f"user (uid {euid}); chown it or run the engine as its owner")
    if stat.S_IMODE(info.st_mode) & 0o022:
        return (f"state directory {path} has mode {stat.S_IMODE(info.st_mode):04o}: others "
                f"may write to it (chmod 700 {path})")
    # A link planted as engine.lock, audit.jsonl or jobs/<name>.lock would make the engine
    # truncate or append to the file it points at: refuse before anything is written.
    for directory, names in ((path, _ENGINE_FILES), (StatePaths(path).jobs_dir, None)):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if (names is None or entry.name in names) and entry.is_symlink():
                return (f"{entry.path} is a symbolic link; nothing in the state directory "
                        "may be a link (remove it)")
    return None


@contextlib.contextmanager
def private_temp(directory: str | Path, prefix: str,
                 suffix: str = ".part") -> Iterator[tuple[int, Path]]:
    """A new temp file in `directory`, mode 0600, as (fd, path); removed if the block raises.

    mkstemp opens with O_EXCL, so a planted symlink cannot redirect the write, and the
    mode is 0600 whatever the umask (dumps hold personal data). The block renames the file
    into place when it is complete; a half-written file never survives an error.
    """
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    path = Path(name)
    try:
        yield fd, path
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
