"""Every file the engine reads goes through `read_limited`: regular files only, size capped.

A path in a policy or on the command line may name anything: `/dev/zero` (endless), a FIFO
(blocks forever), a directory, a 3 GB file. `read_limited(path, kind)` opens without
blocking, refuses what is not a regular file and reads at most the cap for its `kind`
(`LIMITS`); a larger file is refused, except with `from_end=True` (status logs), where the
last `max_bytes` are read, starting at a line boundary. `nofollow=True` (files in the state
directory) refuses a symbolic link in the last component.

Errors are `FileRefused` (a `UsageError`, exit 2) with one line naming the file, what it is
and the limit — never the file's content, so an error about /etc/shadow cannot echo it.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from engine.errors import UsageError

KiB = 1024
MiB = 1024 * KiB

# kind → (what it is, in words; the most bytes read)
LIMITS: dict[str, tuple[str, int]] = {
    "policy": ("policy", 1 * MiB),
    "known_hosts": ("known_hosts file", 4 * MiB),
    "tsig_key": ("TSIG key file", 64 * KiB),
    "secret": ("secret file", 64 * KiB),
    "option_file": ("option file", 64 * KiB),
    "status_log": ("status log", 4 * MiB),
    "state": ("state file", 16 * MiB),
    "job_record": ("job record", 1 * MiB),
    "lock_record": ("lock record", 64 * KiB),
    "pause_reason": ("pause file", 64 * KiB),
    "checksum": ("checksum file", 64 * KiB),
    "request": ("request file", 64 * KiB),
    "outbox_item": ("outbox item", 1 * MiB),
    "event_log": ("event log", 1 * MiB),
    "readiness": ("readiness record", 1 * MiB),
}


class FileRefused(UsageError):
    """A file that is not a regular file, too large, a symlink where none may be, or unreadable."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def _type_word(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size_word(size: int) -> str:
    if size >= MiB:
        return f"{size / MiB:.1f} MiB"
    if size >= KiB:
        return f"{size / KiB:.0f} KiB"
    return f"{size} bytes"


def read_limited(path: str | Path, kind: str, max_bytes: int | None = None, *,
                 from_end: bool = False, nofollow: bool = False) -> bytes:
    """The bytes of the regular file at `path`, at most the cap of `kind` (or `max_bytes`).

    Raises FileRefused (one line, never the content): missing (`.missing` is True), not a
    regular file, a symlink with `nofollow`, larger than the cap (unless `from_end`), or
    unreadable.
    """
    what, cap = LIMITS.get(kind, (kind.replace("_", " "), 1 * MiB))
    if max_bytes is not None:
        cap = max_bytes
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileRefused(f"{what} {path} does not exist", missing=True) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and nofollow:
            raise FileRefused(f"{what} {path} is a symbolic link; refusing to follow it "
                              "(remove the link; nothing may be redirected here)") from None
        try:  # a socket cannot be opened at all: say what it is
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise FileRefused(f"{what} {path} is {_type_word(mode)}, not a regular file") \
                from None
        raise FileRefused(f"{what} {path} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{what} {path} is {_type_word(info.st_mode)}, "
                              "not a regular file")
        if from_end and info.st_size > cap:
            os.lseek(fd, info.st_size - cap, os.SEEK_SET)
            data = _read(fd, cap)
            newline = data.find(b"\n")  # the first line is cut: start after it
            return data[newline + 1:] if newline >= 0 else b""
        data = _read(fd, cap + 1)
        if len(data) > cap:
            raise FileRefused(f"{what} {path} is {_size_word(max(info.st_size, len(data)))}; "
                              f"at most {_size_word(cap)} is read (is this the right file?)")
        return data
    except OSError as exc:
        raise FileRefused(f"{what} {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_text_limited(path: str | Path, kind: str, max_bytes: int | None = None, *,
                      from_end: bool = False, nofollow: bool = False,
                      errors: str = "strict") -> str:
    """`read_limited` decoded as UTF-8; undecodable text is FileRefused unless `errors`."""
    data = read_limited(path, kind, max_bytes, from_end=from_end, nofollow=nofollow)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        what = LIMITS.get(kind, (kind.replace("_", " "), 0))[0]
        raise FileRefused(f"{what} {path} is not UTF-8 text (byte at offset {exc.start})") \
            from None


def _read(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        try:
            chunk = os.read(fd, min(left, MiB))
        except BlockingIOError:  # O_NONBLOCK on a regular file never blocks; be safe anyway
            break
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
