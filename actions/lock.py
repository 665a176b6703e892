"""lock: record (present) or clear (absent) the failover lock file.

The lock says "a failover was engaged here" — the original `engage.lock`. While it is
present the monitor will not engage again on its own; the restore steps remove it.

    engage:
      - lock: {state: present}              # default file: <state_dir>/engage.lock
    restore:
      - lock: {state: absent}
      - lock: {state: absent, file: /var/lib/failover-engine/gocdb/engage.lock}

A relative `file` is taken from the policy file's directory.
`present` writes a small JSON document (time, host, policy) atomically; a lock that
is already there is left as it is ("already present"), so re-running changes nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.errors import StepError
from engine.fsutil import atomic_write, fsync_dir


def lock_path(ctx: Context, file: str | None) -> Path:
    """The lock file: `file` if given, else `<state_dir>/engage.lock`."""
    return ctx.path(file) if file else Path(ctx.state_dir) / "engage.lock"


def _describe(path: Path) -> str:
    """What the lock file says, for the plan and the audit log (best effort, never raises)."""
    from engine.errors import FailoverError
    from engine.safefile import read_limited

    try:
        info = json.loads(read_limited(path, "lock_record"))
        return f"present since {info.get('time', '?')} (host {info.get('host', '?')})"
    except (FailoverError, ValueError, AttributeError):
        return "present"


class Lock:
    """Create or remove the failover lock file."""

    kind: ClassVar[str] = "lock"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.state = params["state"]
        if self.state not in ("present", "absent"):
            raise ValueError(f"lock state {self.state!r}: use present or absent")
        self.file: str | None = params.get("file")

    def plan(self, ctx: Context) -> Plan:
        path = lock_path(ctx, self.file)
        before = _describe(path) if path.exists() else "absent"
        done = path.exists() == (self.state == "present")
        if done:
            return Plan(summary=f"lock {path} already {self.state}", before=before,
                        after=before, done=True)
        problem = None
        # The default lock lives in state_dir, which the engine creates before any step runs.
        in_state_dir = path.parent == Path(ctx.state_dir)
        if self.state == "present" and not path.parent.is_dir() and not in_state_dir:
            problem = f"lock {path}: directory {path.parent} does not exist"
        return Plan(summary=f"lock {path}: {before} → {self.state}", before=before,
                    after=self.state, problem=problem)

    def apply(self, ctx: Context) -> Outcome:
        path = lock_path(ctx, self.file)
        if self.state == "present":
            return self._create(ctx, path)
        return self._remove(path)

    def _create(self, ctx: Context, path: Path) -> Outcome:
        if path.exists():
            return Outcome(summary=f"lock {path} already present", before=_describe(path),
                           after=_describe(path), changed=False)
        info = {
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": socket.getfqdn(),
            "policy": ctx.policy_name,
            "step": ctx.step_id,
            "pid": os.getpid(),
        }
        try:
            # Readable by monitoring (0644): it holds no secret, only who engaged and when.
            atomic_write(path, json.dumps(info, indent=1) + "\n", mode=0o644)
        except OSError as exc:
            raise StepError(f"lock {path}: cannot create it: {exc.strerror or exc}; "
                            "check that its directory exists and is writable") from exc
        return Outcome(summary=f"lock {path} created", before="absent", after=_describe(path))

    def _remove(self, path: Path) -> Outcome:
        if not path.exists():
            return Outcome(summary=f"lock {path} already absent", before="absent",
                           after="absent", changed=False)
        before = _describe(path)
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            fsync_dir(path.parent)
        except OSError as exc:
            raise StepError(f"lock {path}: cannot remove it: {exc.strerror or exc}") from exc
        return Outcome(summary=f"lock {path} removed", before=before, after="absent")
