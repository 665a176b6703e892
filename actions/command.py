"""command: run a program (an argv list, never a shell) for everything else.

    engage:
      - command:
          argv: [systemctl, restart, httpd]
          timeout: 2m                  # the step option; default 5m when none is given
          expect_exit: [0]             # exit codes that count as success (default [0])
          env: {LC_ALL: C}             # added to the engine's environment
          check: [systemctl, is-active, --quiet, httpd]   # optional, read-only

`check` is what makes a command step idempotent and its dry-run meaningful: plan() runs
it, and exit 0 means "already done" (the command is then skipped). Without `check` the
plan says "would run: ..." and the command always runs. `check` must only look, never
change anything, because dry-run runs it.

Output is captured; a failure names the program, its exit status and the last lines of
its standard error. Arguments are never passed through a shell, so nothing needs quoting.
Do not put secrets in `argv` or `env` (they are visible in `ps` and in the policy): let
the program read them from a file.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.durations import format_duration
from engine.errors import StepError

DEFAULT_TIMEOUT = 300.0
_CHECK_TIMEOUT = 30.0
_TAIL_LINES = 3


def _tail(text: str | bytes | None) -> str:
    """The last few non-empty lines of a program's output, joined on one line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return " | ".join(lines[-_TAIL_LINES:])


class Command:
    """Run `argv` with a timeout; success is an exit status in `expect_exit`."""

    kind: ClassVar[str] = "command"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.argv = [str(arg) for arg in params["argv"]]
        if not self.argv:
            raise ValueError("command: argv must name a program")
        self.expect_exit = [int(code) for code in params.get("expect_exit", [0])]
        self.env = {str(k): str(v) for k, v in (params.get("env") or {}).items()}
        check = params.get("check")
        self.check = [str(arg) for arg in check] if check else None

    @property
    def shown(self) -> str:
        return shlex.join(self.argv)

    def _environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def _run(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), shell=False, capture_output=True, text=True, errors="replace",
            timeout=timeout, env=self._environment(), stdin=subprocess.DEVNULL, check=False,
        )

    def host_problems(self, ctx: Context | None = None) -> list[str]:
        """Programs named by `argv` and `check` must be on PATH (or be a path that exists)."""
        problems = []
        for argv in (self.argv, self.check):
            if argv and shutil.which(argv[0], path=self._environment().get("PATH")) is None:
                problems.append(f"command: program {argv[0]!r} not found on PATH")
        return problems

    def plan(self, ctx: Context) -> Plan:
        missing = self.host_problems(ctx)
        problem = missing[0] if missing else None
        if self.check is None:
            return Plan(summary=f"would run: {self.shown}", after=self.shown, problem=problem)
        check = shlex.join(self.check)
        try:
            result = self._run(self.check, min(ctx.remaining(_CHECK_TIMEOUT), _CHECK_TIMEOUT))
        except subprocess.TimeoutExpired:
            return Plan(summary=f"would run: {self.shown} (check {check} timed out)",
                        after=self.shown, problem=problem)
        except OSError as exc:
            return Plan(summary=f"cannot run check {check}",
                        problem=f"command: check {self.check[0]!r}: {exc.strerror or exc}")
        if result.returncode == 0:
            return Plan(summary=f"already done (check {check} succeeded)", before="done",
                        after="done", done=True)
        return Plan(summary=f"would run: {self.shown} (check exited {result.returncode})",
                    before=f"check exited {result.returncode}", after=self.shown,
                    problem=problem)

    def apply(self, ctx: Context) -> Outcome:
        timeout = ctx.remaining(DEFAULT_TIMEOUT)
        ctx.log(f"running: {self.shown}")
        try:
            result = self._run(self.argv, timeout)
        except FileNotFoundError as exc:
            raise StepError(f"command: program {self.argv[0]!r} not found; install it or give "
                            "its full path in argv") from exc
        except PermissionError as exc:
            raise StepError(f"command: {self.argv[0]} is not executable: {exc.strerror}") from exc
        except subprocess.TimeoutExpired as exc:
            tail = _tail(exc.stderr)
            raise StepError(f"command {self.shown} timed out after {format_duration(timeout)}"
                            + (f": {tail}" if tail else ""), retryable=True) from exc
        except OSError as exc:
            raise StepError(f"command {self.shown}: {exc.strerror or exc}") from exc
        if result.returncode not in self.expect_exit:
            expected = ", ".join(str(code) for code in self.expect_exit)
            tail = _tail(result.stderr) or _tail(result.stdout)
            # Retryable: the policy decides with `retries` whether another attempt makes sense.
            raise StepError(f"command {self.shown} exited {result.returncode} "
                            f"(expected {expected})" + (f": {tail}" if tail else ""),
                            retryable=True)
        summary = f"ran {self.shown} (exit {result.returncode})"
        out = _tail(result.stdout)
        return Outcome(summary=summary + (f": {out}" if out else ""), before=None,
                       after=f"exit {result.returncode}")
