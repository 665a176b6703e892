"""Helpers shared by tests and fixtures: free loopback ports, required binaries, waiting, and
the one step context for tests that call actions directly."""
from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actions.base import Context
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


@dataclass
class StepContext(Context):
    """A `Context` as the runner builds it, for tests that call `plan()`/`apply()` directly.

    What the step logs lands in `lines`, and each `save_progress()` call leaves a copy of
    `progress` in `saved` (so a test can check what a resumed step would find).
    """

    lines: list[str] = field(default_factory=list)
    saved: list[dict[str, Any]] = field(default_factory=list)


def step_context(state_dir: Path, *, secret: Path | Callable[[str], Path] | None = None,
                 policy_name: str = "test", step_id: str = "test[1]",
                 **fields: Any) -> StepContext:
    """The one test context: `secret` is a file every secret name resolves to, a callable, or
    None (a secret name resolves to `state_dir/name`); other Context fields by keyword."""
    if secret is None:
        resolve: Callable[[str], Path] = lambda name: state_dir / name  # noqa: E731
    elif callable(secret):
        resolve = secret
    else:
        resolve = lambda name, _path=secret: _path  # noqa: E731
    log = fields.pop("log", None)
    ctx = StepContext(policy_name=policy_name, state_dir=state_dir, step_id=step_id,
                      secret=resolve, log=log or (lambda line: None), **fields)
    if log is None:
        ctx.log = ctx.lines.append
    if "save_progress" not in fields:
        ctx.save_progress = lambda: ctx.saved.append(dict(ctx.progress))
    return ctx
