"""Helpers shared by tests and fixtures: free loopback ports, required binaries, waiting."""
from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.drillkit.ports import LOOPBACK, free_port  # noqa: F401 - re-exported for tests

REPO = Path(__file__).resolve().parent.parent


def require_binary(name: str, *extra_dirs: str) -> str:
    """Path of a server binary; skip when absent, or FAIL when FAILOVER_REQUIRE_SERVERS=1 (CI)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", *extra_dirs])
    found = shutil.which(name, path=search)
    if found:
        return found
    message = f"{name} is not installed (bin/bootstrap installs it as root)"
    if os.environ.get("FAILOVER_REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0,
               what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
