"""engine.safefile: regular files only, size capped per kind, status logs from the end.

Issue 10 case 5: `known_hosts: /dev/zero` grew the process to 22 GB, `check dump-age --log
/dev/zero` reached 6.7 GB in 15 s, a FIFO blocked forever, a 3 GB TSIG key gave MemoryError.
"""
from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.commands.check_dump_age import CRITICAL, OK, run
from engine.errors import UsageError
from engine.safefile import FileRefused, read_limited, read_text_limited


def test_reads_a_small_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert read_limited(path, "job_record") == b"hello\n"
    assert read_text_limited(path, "job_record") == "hello\n"


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "fifo", "dir", "socket"])
def test_non_regular_files_are_refused_without_blocking(tmp_path: Path, special: str) -> None:
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif special == "dir":
        path = tmp_path
    elif special == "socket":
        import socket

        path = tmp_path / "sock"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    with pytest.raises(FileRefused) as caught:
        read_limited(path, "known_hosts")
    message = str(caught.value)
    assert message.startswith(f"known_hosts file {path} is ") and "not a regular file" in message
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2


def test_missing_file_is_marked(tmp_path: Path) -> None:
    with pytest.raises(FileRefused) as caught:
        read_limited(tmp_path / "absent", "tsig_key")
    assert caught.value.missing and "does not exist" in str(caught.value)


def test_too_large_is_refused_and_names_the_size_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"SECRET-LINE\n" * 10_000)
    with pytest.raises(FileRefused) as caught:
        read_limited(path, "tsig_key")
    assert "117 KiB; at most 64 KiB is read" in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_from_end_reads_the_tail_from_a_line_boundary(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"".join(b"line %06d\n" % i for i in range(10_000)))
    tail = read_limited(path, "status_log", 1000, from_end=True)
    assert len(tail) <= 1000
    assert tail.startswith(b"line ") and tail.endswith(b"line 009999\n")


def test_symlink_refused_with_nofollow(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_limited(link, "state") == b"x"
    with pytest.raises(FileRefused, match="is a symbolic link; refusing to follow it"):
        read_limited(link, "state", nofollow=True)


def _args(log: str) -> argparse.Namespace:
    return argparse.Namespace(warning=None, critical=None, log=log, data_age=False, job=None,
                              policy=None, state_dir=None)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_check_dump_age_log_that_is_not_a_file(tmp_path: Path, special: str) -> None:
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    code, line = run(_args(str(path)), now=datetime(2023, 1, 1, 12, tzinfo=UTC))
    assert code == CRITICAL
    assert line.startswith(f"DUMP-AGE CRITICAL: status log {path} is ")
    assert "not a regular file" in line


def test_check_dump_age_reads_a_huge_log_from_its_end(tmp_path: Path) -> None:
    """A 40 MiB sparse log whose last line is a recent success: the tail is enough."""
    path = tmp_path / "import.log"
    with path.open("wb") as handle:
        handle.truncate(40 * 1024 * 1024)
        handle.seek(0, os.SEEK_END)
        handle.write(b"\n2023-01-01T11:41:01+0000 INFO: completed ok\n")
    code, line = run(_args(str(path)), now=datetime(2023, 1, 1, 12, tzinfo=UTC))
    assert code == OK, line
