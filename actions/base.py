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

What a step hands on is explicit, in `Plan` and `Outcome` alike:
- `output`: the path or value the next step consumes (`fetch` → the fetched file,
  `unzip` → the extracted file). `plan()` returns the output it would produce, so a
  dry-run chains exactly like a real run. `None` means the step hands on nothing new: the
  next step gets the same `ctx.previous_output` this one got (lock, notify, command).
- `facts`: named values others read (`data_completed`, `data_age_seconds`, …). The runner
  collects them into `RunReport.facts` and the journal; the jobs record `data_completed`
  from there and from nowhere else.
`before`/`after` only describe the change for people (dry-run, audit log); nothing reads them.

A step never asks whether it runs in a dry-run. Its input is `ctx.input_path(option)`
(the option when set, else the previous step's output) and `ctx.planned_input(option)`
says when that input is only planned by the previous step (a dry-run), so it does not
exist yet and can be checked only once it does. A planned output a step cannot name yet
(unzip's member, before the archive is fetched) is a description (str) instead of a Path.
The engine's state (engaging, restoring, …) is `ctx.engine_state`.

Errors: raise `engine.errors.StepError("one clear line", retryable=...)`. Actions may
import small engine utilities (errors, durations, statuslog) but never the CLI, the
machine or the runner.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass
class Plan:
    """What a step would do, observed read-only.

    `done` means the world is already as the step wants it (the step is a no-op).
    `problem` says why applying it now would fail; dry-run exits 1 when any step has one.
    `output` is what the step would hand the next step (with `done`: what it already
    made); `facts` the named values it observed (see the module docstring).
    """

    summary: str
    before: Any = None
    after: Any = None
    done: bool = False
    problem: str | None = None
    output: Any = None
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a step did. `changed` is False when it found the work already done.

    `output` is what the next step consumes, `facts` the named values others read (see the
    module docstring); `before`/`after` only describe the change for the audit log.
    """

    summary: str
    before: Any = None
    after: Any = None
    changed: bool = True
    output: Any = None
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """Everything an action may use, handed to it by the runner.

    `progress` is a per-step dict that the runner persists in the state file when
    `save_progress()` is called, so a long step (wait_dns) can resume after a crash.
    `secret(name)` returns the path of a secret file after checking its owner and mode.
    In a job, `work_dir` is the job's private directory. `previous_output` is the output
    of the nearest earlier step that handed one on (its `Outcome.output`, or in a dry-run
    its `Plan.output`), so `fetch → unzip → import_mariadb → archive` chain without
    repeating file names in the policy; `previous_output_pending` is True while that
    output is only planned (a dry-run: the file does not exist yet). `engine_state` is the
    engine's state during this run (None in a job or outside the engine).
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
    engine_state: str | None = None
    sleep: Callable[[float], None] = time.sleep
    should_stop: Callable[[], bool] = lambda: False
    work_dir: Path | None = None
    previous_output: Any = None
    previous_output_pending: bool = False
    # `swap_guard(database)`: a context manager a step holds while it changes a standby's
    # live data; it refuses (StepError) when the standby may serve users. Jobs provide it
    # (engine/jobs.py); None: the step uses engine.standby.swap_permit itself.
    swap_guard: Callable[[str], AbstractContextManager[None]] | None = None
    # `engage --now --force`: a step that guards the run (probe) records its failure as
    # overridden instead of failing; every other step ignores it.
    force: bool = False

    def path(self, value: str | Path) -> Path:
        """A path from the step's options: relative ones are relative to the policy file's
        directory, like `state_dir` (the loader already does this for `x-path` options;
        this covers hand-built contexts and options that are not marked)."""
        path = Path(value).expanduser()
        base = getattr(self.policy, "path", None)
        if path.is_absolute() or base is None:
            return path
        return Path(base).parent / path

    def input_path(self, option: str | Path | None = None) -> Path | None:
        """The file a step works on: its `option` when set (see `path`), else the previous
        step's output when that is a path; None when there is neither."""
        if option:
            return self.path(option)
        if isinstance(self.previous_output, Path):
            return self.previous_output
        return None

    def planned_input(self, option: str | Path | None = None) -> str | None:
        """When the step's input is the previous step's output that is only planned (a
        dry-run: not made yet), its description for the plan's summary; else None.

        The step can then say what it would do with it but can check it only once it
        exists. An `option` naming another file is not pending: that file must exist.
        """
        if not self.previous_output_pending or self.previous_output is None:
            return None
        if option and self.path(option) != self.previous_output:
            return None
        return str(self.previous_output)

    def remaining(self, default: float = 30.0) -> float:
        """Seconds left before the step's timeout (or `default` when it has none); never < 0.05."""
        if self.deadline is None:
            return default
        return max(0.05, self.deadline - time.monotonic())


@dataclass
class Readiness:
    """One readiness check's verdict (engine/readiness.py): would this work now?

    A step may offer `readiness(ctx) -> Readiness`, a proof stronger than its `plan()` that
    still changes nothing (nsupdate: the key is accepted and granted for the name).
    `reason` is a short code from a small fixed set (metrics label it: `ok`, `badsig`,
    `refused_grant`, …); `detail` the one line an operator acts on; `warning` marks a margin
    running out (not yet a failure).
    """

    ok: bool
    detail: str
    reason: str = "ok"
    warning: bool = False
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. fetch: source_bytes


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
