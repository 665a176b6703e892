"""The engine's state file and its lock.

One JSON file, `state.json` in the state directory (engine/paths.py), holds the machine's
state, the failure count, the last probe results and the journal of the engage or restore
in progress. It is replaced atomically (temp + fsync + rename), so a reader never sees
half a file and a crash leaves the previous version. One process at a time acts as the engine for a
policy: it holds an exclusive `flock` on `engine.lock` (`StateStore.hold`), whose text
is a JSON record of who holds it (`LockHolder`: pid, role, since), so a command can tell
a running monitor from another command without parsing display text.
Short commands (`status`, `check`) read the file without the lock.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import FailoverError, LockHeld
from engine.fsutil import atomic_write, ensure_private_dir, state_dir_problem
from engine.paths import StatePaths
from engine.states import State, parse_state

STATE_VERSION = 1


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def isotime(moment: datetime | None = None) -> str:
    """UTC ISO 8601 with seconds, e.g. 2026-11-26T07:00:00+00:00."""
    return (moment or utcnow()).astimezone(UTC).isoformat(timespec="seconds")


def parse_isotime(text: str | None) -> datetime | None:
    """The inverse of `isotime` (None stays None)."""
    return datetime.fromisoformat(text) if text else None


@dataclass
class EngineState:
    """Everything the engine must remember across restarts. See README "State file"."""

    state: State = State.WATCHING
    since: str = field(default_factory=isotime)
    failures: int = 0
    window: list[bool] = field(default_factory=list)
    successes: int = 0
    production_back: bool = False
    cycles: int = 0
    last_cycle: str | None = None
    last_outcome: str | None = None
    last_probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    run: dict[str, Any] | None = None
    last_run: dict[str, Any] | None = None
    aborted_reason: str | None = None
    hold_down_until: str | None = None
    last_reminder: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"engages": 0, "restores": 0})
    # Cycles in a row in which every guard failed, and why the failover cannot engage now
    # (None while armed): see engine/arming.py.
    guards_failed: int = 0
    # When the target's current outage began (its first conclusive failure; None while it
    # answers): once engaged, "down for" replaces a count that has met its threshold.
    down_since: str | None = None
    disarmed: str | None = None
    disarmed_since: str | None = None
    # Monotonic-clock marks beside wall-clock fields (last_cycle, hold_down_until), so a
    # wall-clock jump cannot fake an age or stretch a hold-down: see engine/clock.py.
    monotonic: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise with a format version, keys sorted for readable diffs."""
        data = dataclasses.asdict(self)
        data["version"] = STATE_VERSION
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EngineState:
        """Parse a state file; unknown keys (from a newer engine) are ignored. NaN and
        Infinity are refused: `status --json` would print them, and they are not JSON."""
        data = json.loads(text, parse_constant=strict_constant)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        if "state" in fields:
            fields["state"] = parse_state(fields["state"])
        problem = _shape_problem(fields)
        if problem:
            raise ValueError(problem)
        return cls(**fields)


# Timestamps the engine later parses: a value that is not one must be refused on load.
_TIME_FIELDS = ("since", "last_cycle", "hold_down_until", "last_reminder", "down_since",
                "disarmed_since")
_SHAPES: dict[str, tuple[str, Any]] = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "str | None": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "list[bool]": ("a list of true/false",
                   lambda v: isinstance(v, list) and all(isinstance(x, bool) for x in v)),
    "dict[str, dict[str, Any]]": ("an object of objects", lambda v: isinstance(v, dict)
                                  and all(isinstance(x, dict) for x in v.values())),
    "dict[str, Any] | None": ("an object or null", lambda v: v is None or isinstance(v, dict)),
    "dict[str, int]": ("an object of integers", lambda v: isinstance(v, dict) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in v.values())),
}


def _shape_problem(fields: dict[str, Any]) -> str | None:
    """Why values of a state file's keys have the wrong shape (valid JSON, wrong types), or
    None: such a file must be one clear error on load, not an internal error later."""
    types = {f.name: str(f.type) for f in dataclasses.fields(EngineState)}
    for name, value in fields.items():
        if name == "state":
            continue
        shape = _SHAPES.get(types[name])
        if shape is not None and not shape[1](value):
            return f"key {name!r} holds {type(value).__name__} {_short(value)}, not {shape[0]}"
        if name in _TIME_FIELDS and isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return f"key {name!r} holds {_short(value)}, not an ISO 8601 time"
    run = fields.get("run")
    if isinstance(run, dict) and not (isinstance(run.get("phase"), str)
                                      and isinstance(run.get("steps", {}), dict)
                                      and isinstance(run.get("progress", {}), dict)):
        return "key 'run' (the journal) lacks a phase, or its steps/progress are not objects"
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# The role `failover-engine run` takes the engine lock with: the monitor that picks up
# requests from the command line (engine/monitor_requests.py).
MONITOR_ROLE = "run"


@dataclass(frozen=True)
class LockHolder:
    """Who holds the engine lock, as written into `engine.lock` by `StateStore.hold`."""

    pid: int | None
    role: str | None
    since: str | None
    text: str | None = None  # the file's raw text when it is not our JSON record

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        return f"pid {self.pid}, {self.role}, since {self.since}"

    @property
    def is_monitor(self) -> bool:
        """True when the holder is the monitor (`failover-engine run`)."""
        return self.role == MONITOR_ROLE

    def to_json(self) -> str:
        """The lock file's text."""
        return json.dumps({"pid": self.pid, "role": self.role, "since": self.since})

    @classmethod
    def parse(cls, text: str) -> LockHolder:
        """The record in a lock file; any other text (an older engine's) is kept as is."""
        text = text.strip()
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("role"), str):
            pid = data.get("pid")
            since = data.get("since")
            return cls(pid if isinstance(pid, int) else None, data["role"],
                       since if isinstance(since, str) else None)
        return cls(None, None, None, text or "unknown")


def strict_constant(name: str) -> Any:
    """`json.loads(parse_constant=…)`: refuse NaN, Infinity and -Infinity."""
    raise ValueError(f"{name} is not a number JSON allows")


REPAIR_HINT = ("run `failover-engine repair-state` to rebuild it from the evidence "
               "(never move it aside: a missing state reads as not engaged)")


def _open_nofollow(path: Path, flags: int) -> int:
    """Open a file of the state directory, refusing a symbolic link planted in its place
    (it would make the engine truncate or write the file it points at)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FailoverError(f"{path} is a symbolic link; refusing to follow it "
                                "(remove it: nothing in the state directory may be a link)") \
                from None
        raise


class StateStore:
    """Loads and saves the state file of one policy and holds its engine lock."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.paths = StatePaths(self.state_dir)
        self.path = self.paths.state_file
        self.lock_path = self.paths.engine_lock
        self.audit_path = self.paths.audit_log

    def ensure_dir(self) -> None:
        """Create the state directory (mode 0700) if it does not exist."""
        try:
            ensure_private_dir(self.state_dir)
        except OSError as exc:
            raise FailoverError(
                f"{self.state_dir}: cannot create the state directory ({exc.strerror}); "
                "create it or set state_dir / --state-dir"
            ) from None
        problem = state_dir_problem(self.state_dir)
        if problem:
            raise FailoverError(problem)

    def load(self) -> EngineState:
        """The saved state, or a fresh one (watching) when there is none yet.

        Read through engine/safefile.py: a regular file, no symbolic link, at most 16 MiB.
        A damaged file or one of the wrong shape is one line pointing at `repair-state`,
        never the advice to move it aside (a missing state would read as "watching").
        """
        from engine.safefile import FileRefused, read_limited

        # Reading needs no ownership (the checks run as the monitoring user); every write
        # goes through ensure_dir(), which checks the owner too.
        problem = state_dir_problem(self.state_dir, reader=True)
        if problem:
            raise FailoverError(problem)
        try:
            text = read_limited(self.path, "state", nofollow=True).decode("utf-8")
        except FileRefused as exc:
            if exc.missing:
                return EngineState()
            raise FailoverError(f"{exc}; {REPAIR_HINT}") from None
        except UnicodeDecodeError:
            raise FailoverError(
                f"{self.path}: the state file is damaged (not UTF-8 text); {REPAIR_HINT}"
            ) from None
        try:
            return EngineState.from_json(text)
        except (ValueError, TypeError) as exc:
            raise FailoverError(
                f"{self.path}: the state file is damaged ({exc}); {REPAIR_HINT}"
            ) from None

    def save(self, state: EngineState, *, durable: bool = True) -> None:
        """Replace the state file atomically; `durable` also fsyncs it (transitions, the
        journal). A routine cycle's save need not be: a power cut then costs at most the
        last few cycles' counts, never a transition or a journalled step."""
        self.ensure_dir()
        atomic_write(self.path, state.to_json(), mode=self.file_mode(), durable=durable)

    def file_mode(self) -> int:
        """0640 when `install --check-group` made the state directory group-readable (a
        monitoring user reads state.json and engine.lock through that group; neither holds
        a secret), else 0600."""
        try:
            return 0o640 if self.state_dir.stat().st_mode & stat.S_IRGRP else 0o600
        except OSError:
            return 0o600

    @contextlib.contextmanager
    def hold(self, role: str) -> Iterator[None]:
        """Be the one engine for this policy while the block runs, or raise LockHeld."""
        self.ensure_dir()
        fd = _open_nofollow(self.lock_path, os.O_RDWR | os.O_CREAT)
        try:
            if self.file_mode() != 0o600:
                with contextlib.suppress(OSError):  # not our file: leave its mode alone
                    os.fchmod(fd, self.file_mode())  # the unit's UMask=0077 would hide it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = LockHolder.parse(os.pread(fd, 400, 0).decode(errors="replace"))
                raise LockHeld(
                    f"{self.lock_path}: another failover-engine holds this policy's lock "
                    f"({holder}); stop it first, or use pause/resume/status alongside it"
                ) from None
            record = LockHolder(os.getpid(), role, isotime())
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, record.to_json().encode(), 0)
            except OSError:  # a full disk: the flock is what counts; the text only informs
                pass
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def holder(self) -> str | None:
        """Who holds the engine lock right now ("pid 123, run, since …"), or None."""
        record = self.lock_holder()
        return str(record) if record is not None else None

    def lock_holder(self) -> LockHolder | None:
        """Who holds the engine lock right now, as a record, or None when it is free."""
        try:
            fd = _open_nofollow(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return LockHolder.parse(os.pread(fd, 400, 0).decode(errors="replace"))
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
