"""The step runner: the one place that owns timeouts, retries, the journal, audit and dry-run.

For each step it builds the action, asks it for a `plan()`, and — unless the plan says
the work is already done, or this is a dry-run — calls `apply()`:

- attempts: 1 + `retries`, only when the error is retryable; backoff 1 s, 2 s, 4 s … capped 60 s;
- timeout: an attempt that runs past the step's `timeout` fails (it runs in a worker thread);
- journal: each finished step is recorded in the state file before the next starts, so an
  engine killed mid-run resumes at the first unfinished step (`engage`/`restore` phases);
- audit: every applied change and every failure is a JSON line in `<state_dir>/audit.jsonl`;
- dry-run: only `plan()` is called; nothing is written, no mail is sent;
- hand-over: each step gets the output of the nearest earlier step that handed one on as
  `ctx.previous_output` — the `Outcome.output` in a real run, the `Plan.output` in a
  dry-run (marked `previous_output_pending` while only planned), the journalled output for
  a step done before a restart. Every step's `facts` are collected in `RunReport.facts`
  and journalled with its output;
- context: the engine's state (`record.state`) reaches each step as `ctx.engine_state`.

`on_error: continue` records the failure and goes on; `abort` (the default) stops the run.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actions import registry
from actions.base import Context, Outcome, Plan
from engine.errors import FailoverError, StepError
from engine.fsutil import append_line
from engine.logs import event
from engine.policy import Policy, Step
from engine.state import EngineState, StateStore, isotime

log = logging.getLogger("failover_engine.runner")

BACKOFF_CAP = 60.0


@dataclass
class StepReport:
    """The result of one step in a run."""

    index: int
    step: Step
    status: str  # done | already | failed | continued | planned | skipped
    summary: str
    duration: float = 0.0
    plan: Plan | None = None
    output: Any = None  # what the step handed on (planned, in a dry-run); None: nothing new
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunReport:
    """The result of a run: every step's report, and the step that stopped it, if any.

    `facts` merges the facts of every finished step (a later step's value for the same name
    wins); in a dry-run, the facts the plans observed.
    """

    phase: str
    steps: list[StepReport] = field(default_factory=list)
    failed: StepReport | None = None
    interrupted: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no step stopped the run and the run was not interrupted."""
        return self.failed is None and not self.interrupted

    @property
    def would_fail(self) -> list[StepReport]:
        """Dry-run: the steps whose plan names a problem."""
        return [r for r in self.steps if r.plan is not None and r.plan.problem]


class Interrupted(FailoverError):
    """The run was asked to stop between two steps (SIGTERM); the journal allows resuming."""


def backoff(attempt: int) -> float:
    """Delay before attempt `attempt + 1` (attempt counts from 1): 1, 2, 4 … capped."""
    return min(BACKOFF_CAP, 2.0 ** (attempt - 1))


def _describe(value: Any) -> Any:
    """Make before/after values JSON-friendly for the journal and audit log."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_describe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _journal_output(output: Any) -> dict[str, Any]:
    """A step's output for its journal entry: a path under `output` (as journals always had
    it), any other value under `output_value`, so a resumed run hands on the same thing."""
    if output is None:
        return {}
    if isinstance(output, Path):
        return {"output": str(output)}
    return {"output_value": _describe(output)}


def _journalled_output(entry: dict[str, Any]) -> Any:
    """The output a step done before a restart handed on (see `_journal_output`)."""
    if entry.get("output"):
        return Path(entry["output"])
    return entry.get("output_value")


def step_label(phase: str, index: int) -> str:
    """How a step is named everywhere an operator reads it — the log, the audit log, the
    mails, the lock file: `engage step 1`, numbered from 1 (the policy's YAML path,
    `engage[0]`, is for validation errors only)."""
    return f"{phase} step {index + 1}"


class Runner:
    """Runs ordered steps for one policy; see the module docstring."""

    def __init__(
        self,
        policy: Policy,
        store: StateStore,
        record: EngineState | None = None,
        *,
        secret: Callable[[str], Path] | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        swap_guard: Callable[[str], AbstractContextManager[None]] | None = None,
    ) -> None:
        self.policy = policy
        self.swap_guard = swap_guard  # jobs: see Context.swap_guard
        self.force = False  # engage --now --force: see Context.force (Engine.engage sets it)
        self.store = store
        self.record = record
        self.stop = stop or threading.Event()
        # With a quorum: mirrors the journal into the store, fenced by the leader key's token,
        # each time it is saved; a refused write sets `stop`, so no step runs after it
        # (engine/quorum.py `fenced`).
        self.after_save: Callable[[], object] | None = None
        self._secret = secret
        self._sleep = sleep or self._interruptible_sleep

    # -- helpers -------------------------------------------------------------------
    def _interruptible_sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def secret(self, name: str) -> Path:
        """Path of a checked secret file (owner and mode are verified on every use)."""
        if self._secret is not None:
            return self._secret(name)
        from engine.secrets import SecretStore

        return SecretStore(self.policy).path(name)

    def _audit(self, phase: str, index: int, step: Step, outcome: str, summary: str,
               before: Any = None, after: Any = None, output: Any = None,
               facts: dict[str, Any] | None = None) -> None:
        entry = {
            "time": isotime(),
            "policy": self.policy.name,
            "phase": phase,
            "step": step_label(phase, index),
            "kind": step.kind,
            "outcome": outcome,
            "summary": summary,
            "before": _describe(before),
            "after": _describe(after),
        }
        if output is not None:
            entry["output"] = _describe(output)
        if facts:
            entry["facts"] = _describe(facts)
        self.store.ensure_dir()
        append_line(self.store.audit_path, json.dumps(entry, sort_keys=True), mode=0o600)

    def _journal(self) -> dict[str, Any] | None:
        return self.record.run if self.record is not None else None

    def _save(self) -> None:
        if self.record is not None:
            self.store.save(self.record)
            if self.after_save is not None:
                self.after_save()

    # -- the run ---------------------------------------------------------------------
    def run(self, phase: str, steps: list[Step], *, dry_run: bool = False,
            work_dir: Path | None = None) -> RunReport:
        """Run `steps` for `phase` (engage, restore or job:<name>); see the module docstring.

        For engage and restore the journal lives in `record.run`: a run with the same phase
        found there is resumed at its first unfinished step.
        """
        report = RunReport(phase)
        journal = None if dry_run else self._open_journal(phase)
        # What the next step gets as ctx.previous_output, and whether it is only planned.
        previous: Any = None
        pending = False
        for index, step in enumerate(steps):
            key = str(index)
            if journal is not None and key in journal["steps"]:
                entry = journal["steps"][key]
                output = _journalled_output(entry)
                facts = dict(entry.get("facts") or {})
                report.steps.append(StepReport(index, step, "skipped", entry.get("summary", ""),
                                               output=output, facts=facts))
                report.facts.update(facts)
                if output is not None:
                    previous, pending = output, False
                log.info("%s step %d %s: done before the restart: %s",
                         phase, index + 1, step.name, entry.get("summary", ""))
                continue
            if not dry_run and self.stop.is_set():
                report.interrupted = True
                log.warning("%s: stopping before step %d %s (asked to stop); the journal "
                            "resumes it here", phase, index + 1, step.name)
                return report
            progress = journal["progress"].setdefault(key, {}) if journal is not None else {}
            ctx = self._context(phase, index, step, progress, work_dir, previous, pending)
            result = (self._plan_only(index, step, ctx) if dry_run
                      else self._execute(phase, index, step, ctx))
            report.steps.append(result)
            if result.status == "failed" and not dry_run and self.stop.is_set():
                # A step that gave up because we are shutting down (SIGTERM during
                # wait_dns) did not fail: its progress is journalled and the next start
                # resumes it, so the run is interrupted, not aborted.
                report.interrupted = True
                log.warning("%s: step %d %s stopped by the shutdown; the journal resumes it"
                            " at the next start", phase, index + 1, step.name)
                return report
            if result.status == "failed":
                report.failed = result
                if journal is not None:
                    journal["failed"] = {"step": index, "error": result.summary, "at": isotime()}
                    self._save()
                return report
            report.facts.update(result.facts)
            if result.output is not None:
                # Only a dry-run's "planned" step has not made its output yet.
                previous, pending = result.output, result.status == "planned"
            if journal is not None:
                entry = {"status": result.status, "summary": result.summary, "at": isotime(),
                         "duration": round(result.duration, 3), **_journal_output(result.output)}
                if result.facts:
                    entry["facts"] = _describe(result.facts)
                journal["steps"][key] = entry
                self._save()
        return report

    def _open_journal(self, phase: str) -> dict[str, Any] | None:
        if self.record is None:
            return {"phase": phase, "started": isotime(), "steps": {}, "progress": {}}
        run = self.record.run
        if run is None or run.get("phase") != phase:
            self.record.run = {"phase": phase, "started": isotime(), "steps": {}, "progress": {}}
            if self.force:  # engage --now --force: a resumed run is forced too
                self.record.run["force"] = True
            self._save()
        else:
            done = len(run["steps"])
            self.force = self.force or run.get("force") is True
            log.info("%s: resuming the interrupted run at step %d%s", phase, done + 1,
                     " (forced: engage --now --force)" if self.force else "")
        return self.record.run

    def _context(self, phase: str, index: int, step: Step, progress: dict[str, Any],
                 work_dir: Path | None, previous: Any, pending: bool) -> Context:
        deadline = time.monotonic() + step.timeout if step.timeout else None
        step_log = logging.getLogger(f"failover_engine.step.{step.kind}")
        return Context(
            policy_name=self.policy.name,
            state_dir=self.policy.state_dir,
            step_id=step_label(phase, index),
            secret=self.secret,
            log=lambda message: step_log.info("%s: %s", step.name, message),
            deadline=deadline,
            progress=progress,
            save_progress=self._save,
            policy=self.policy,
            engine_state=self.record.state if self.record is not None else None,
            sleep=self._sleep,
            should_stop=self.stop.is_set,
            work_dir=work_dir,
            previous_output=previous,
            previous_output_pending=pending,
            swap_guard=self.swap_guard,
            force=self.force,
        )

    def _plan_only(self, index: int, step: Step, ctx: Context) -> StepReport:
        try:
            plan = registry.build_step(step.kind, step.params).plan(ctx)
        except FailoverError as exc:
            plan = Plan(summary=str(exc), problem=str(exc))
        status = "already" if plan.done else "planned"
        return StepReport(index, step, status, plan.summary, plan=plan, output=plan.output,
                          facts=dict(plan.facts))

    def _execute(self, phase: str, index: int, step: Step, ctx: Context) -> StepReport:
        started = time.monotonic()
        attempts = 1 + step.retries
        try:
            action = registry.build_step(step.kind, step.params)
        except (FailoverError, ValueError) as exc:  # values the schema cannot catch
            return self._failed(phase, index, step, f"invalid options: {exc}", started)
        event(log, "step.start", f"{phase} step {index + 1} {step.name}: starting",
              phase=phase, step=index + 1, kind=step.kind)
        for attempt in range(1, attempts + 1):
            try:
                plan = action.plan(ctx)
                if plan.done:
                    summary = f"already done: {plan.summary}"
                    event(log, "step.finish", f"{phase} step {index + 1} {step.name}: {summary}",
                          phase=phase, step=index + 1, kind=step.kind, status="already",
                          duration=round(time.monotonic() - started, 3))
                    return StepReport(index, step, "already", summary,
                                      time.monotonic() - started, plan, output=plan.output,
                                      facts=dict(plan.facts))
                outcome = self._apply_with_timeout(action, ctx, step)
            except StepError as exc:
                error, retryable = str(exc), exc.retryable
            except FailoverError as exc:
                error, retryable = str(exc), False
            except Exception as exc:  # noqa: BLE001 - a bug in an action must not kill the engine
                log.exception("%s step %d %s: unexpected error", phase, index + 1, step.name)
                error, retryable = f"unexpected error: {type(exc).__name__}: {exc}", False
            else:
                duration = time.monotonic() - started
                status = "done" if outcome.changed else "already"
                self._audit(phase, index, step, "changed" if outcome.changed else "already done",
                            outcome.summary, outcome.before, outcome.after, outcome.output,
                            outcome.facts)
                event(log, "step.finish",
                      f"{phase} step {index + 1} {step.name}: {outcome.summary} ({duration:.1f}s)",
                      phase=phase, step=index + 1, kind=step.kind, status=status,
                      duration=round(duration, 3))
                return StepReport(index, step, status, outcome.summary, duration,
                                  Plan(outcome.summary, outcome.before, outcome.after,
                                       output=outcome.output, facts=outcome.facts),
                                  output=outcome.output, facts=dict(outcome.facts))
            if retryable and attempt < attempts and not self.stop.is_set():
                delay = backoff(attempt)
                event(log, "step.retry", f"{phase} step {index + 1} {step.name}: attempt "
                      f"{attempt}/{attempts} failed: {error}; retrying in {delay:.0f}s",
                      level=logging.WARNING, phase=phase, step=index + 1, kind=step.kind,
                      attempt=attempt, delay=delay)
                self._sleep(delay)
                ctx.deadline = time.monotonic() + step.timeout if step.timeout else None
                continue
            break
        return self._failed(phase, index, step, error, started)

    def _failed(self, phase: str, index: int, step: Step, error: str,
                started: float) -> StepReport:
        duration = time.monotonic() - started
        self._audit(phase, index, step, "failed", error)
        if step.on_error == "continue":
            log.warning("%s step %d %s failed, continuing (on_error: continue): %s",
                        phase, index + 1, step.name, error)
            return StepReport(index, step, "continued", f"failed, continued: {error}", duration)
        event(log, "step.failed", f"{phase} step {index + 1} {step.name} failed: {error}",
              level=logging.ERROR, phase=phase, step=index + 1, kind=step.kind,
              duration=round(duration, 3))
        return StepReport(index, step, "failed", error, duration)

    def _apply_with_timeout(self, action: Any, ctx: Context, step: Step) -> Outcome:
        if not step.timeout:
            return action.apply(ctx)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["outcome"] = action.apply(ctx)
            except BaseException as exc:  # noqa: BLE001 - handed to the runner's thread
                box["error"] = exc

        worker = threading.Thread(target=work, name=f"step-{step.kind}", daemon=True)
        worker.start()
        worker.join(step.timeout)
        if worker.is_alive():
            # Give an action that honours ctx.remaining() a moment to notice its deadline.
            worker.join(min(5.0, step.timeout))
        if worker.is_alive():
            raise StepError(
                f"timed out after {step.timeout:g}s and is still running; not retried, "
                "so that two attempts never run at once", retryable=False)
        if "error" in box:
            raise box["error"]
        return box["outcome"]
