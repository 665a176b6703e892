"""Test-wide fixtures: tests/fixtures/*.py are plugins; no test writes outside temp dirs."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import REPO

pytest_plugins = [
    f"tests.fixtures.{p.stem}"
    for p in sorted((Path(__file__).parent / "fixtures").glob("*.py"))
    if not p.stem.startswith("_")
]

_ALLOWED_ROOTS = [
    Path(tempfile.gettempdir()).resolve(),
    Path("/dev"),
    Path("/proc"),
    REPO / ".pytest_cache",
    REPO / ".hypothesis",
    REPO / "bench",
]
_guard = {"on": False}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _outside_allowed(path: object) -> bool:
    if isinstance(path, int):  # a file descriptor: its path was checked when it was opened
        return False
    try:
        resolved = Path(os.fsdecode(path)).resolve()
    except (TypeError, ValueError, OSError):
        return False
    if "__pycache__" in resolved.parts:  # bytecode caches of lazily imported modules
        return False
    return not any(resolved == root or root in resolved.parents for root in _ALLOWED_ROOTS)


def _audit(event: str, args: tuple) -> None:
    # Like pre-commit's dont_write_to_home_directory, but for every path outside temp dirs:
    # a test that writes to /etc, /root or /var fails instead of changing the machine.
    if not _guard["on"]:
        return
    target = None
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        target = path if writing else None
    elif event in {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown"}:
        target = args[0]
        dir_fd = args[-1]  # each of these events ends with dir_fd
        if (isinstance(target, str | bytes) and isinstance(dir_fd, int) and dir_fd >= 0
                and not os.path.isabs(os.fsdecode(target))):
            # relative to a directory descriptor (e.g. archive's pruning): judge the real path
            target = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), os.fsdecode(target))
    elif event in {"os.rename", "os.symlink", "shutil.move", "shutil.copyfile"}:
        target = args[1]
    if target is not None and _outside_allowed(target):
        raise PermissionError(f"test tried to write outside its temp dirs: {target} ({event})")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _writes_only_in_temp_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Fail any write outside temp dirs; HOME points at a temp dir so nothing lands in /root."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir(exist_ok=True)
    _guard["on"] = True
    yield
    _guard["on"] = False


@pytest.fixture(autouse=True)
def _restore_logging():
    """Tests that call the CLI in process configure logging; undo it so no handler outlives
    the captured stream it writes to."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
