"""The action contract: every step kind is a small class with `plan()` and `apply()`.

An action owns only its own effect. The runner (engine/runner.py) owns everything
shared: timeouts, retries with backoff, the journal, the audit log, dry-run and
notifications. Dry-run calls `plan()` only, so `plan()` must observe the world
read-only and never change it.

A new step kind is: one module in `actions/`, one line in `actions/registry.py`,
its schema fragment in `schemas/steps/<kind>.json`, and one test file.

    class Lock:
        kind = "lock"
        def __init__(self, params): self.state = params["state"]
        def plan(self, ctx):  -> Plan(summary="lock absent → present", done=False)
        def apply(self, ctx): -> Outcome(summary="lock created", changed=True)

Errors: raise `engine.errors.StepError("one clear line", retryable=...)`. Actions may
import small engine utilities (errors, durations, statuslog) but never the CLI, the
machine or the runner.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass
class Plan:
    """What a step would do, observed read-only.

    `done` means the world is already as the step wants it (the step is a no-op).
    `problem` says why applying it now would fail; dry-run exits 1 when any step has one.
    """

    summary: str
    before: Any = None
    after: Any = None
    done: bool = False
    problem: str | None = None


@dataclass
class Outcome:
    """What a step did. `changed` is False when it found the work already done."""

    summary: str
    before: Any = None
    after: Any = None
    changed: bool = True


@dataclass
class Context:
    """Everything an action may use, handed to it by the runner.

    `progress` is a per-step dict that the runner persists in the state file when
    `save_progress()` is called, so a long step (wait_dns) can resume after a crash.
    `secret(name)` returns the path of a secret file after checking its owner and mode.
    In a job, `work_dir` is the job's private directory and `input_file` the file the
    previous step produced (its `Outcome.after` when that is a path), so `fetch → unzip →
    import_mariadb → archive` chain without repeating file names in the policy.
    """

    policy_name: str
    state_dir: Path
    step_id: str
    secret: Callable[[str], Path]
    log: Callable[[str], None]
    deadline: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    save_progress: Callable[[], None] = lambda: None
    policy: Any = None
    dry_run: bool = False
    sleep: Callable[[float], None] = time.sleep
    should_stop: Callable[[], bool] = lambda: False
    work_dir: Path | None = None
    input_file: Path | None = None

    def path(self, value: str | Path) -> Path:
        """A path from the step's options: relative ones are relative to the policy file's
        directory, like `state_dir` (the loader already does this for `x-path` options;
        this covers hand-built contexts and options that are not marked)."""
        path = Path(value).expanduser()
        base = getattr(self.policy, "path", None)
        if path.is_absolute() or base is None:
            return path
        return Path(base).parent / path

    def remaining(self, default: float = 30.0) -> float:
        """Seconds left before the step's timeout (or `default` when it has none); never < 0.05."""
        if self.deadline is None:
            return default
        return max(0.05, self.deadline - time.monotonic())


@runtime_checkable
class Action(Protocol):
    """The interface every step kind implements (see module docstring)."""

    kind: ClassVar[str]

    def __init__(self, params: Mapping[str, Any]) -> None: ...

    def plan(self, ctx: Context) -> Plan: ...

    def apply(self, ctx: Context) -> Outcome: ...


class HostChecks(Protocol):
    """Optional: actions that need things on this host say so for `validate --host`."""

    def host_problems(self, ctx: Context) -> list[str]:
        """Return one line per missing binary, unreadable secret or unusable file."""
        ...


@dataclass
class ProbeResult:
    """One probe's verdict: ok or not, one line of detail, and how long it took."""

    ok: bool
    detail: str
    latency: float


class Probe(Protocol):
    """The interface of a probe kind (http, tcp): built from its params, checked each cycle."""

    kind: ClassVar[str]

    def __init__(self, params: Mapping[str, Any]) -> None: ...

    def check(self) -> ProbeResult: ...
