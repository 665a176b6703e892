"""Crash-safe file writes: atomic replace (temp + fsync + rename) and durable appends."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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


def append_line(path: str | Path, line: str, mode: int = 0o640) -> None:
    """Append one line (a newline is added) and fsync, so it survives a crash right after."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: str | Path) -> Path:
    """Create `path` (and parents) if needed; a directory we create is mode 0700."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


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
