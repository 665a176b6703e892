"""Step kinds that exist only for runner tests: they count, fail on cue, or block."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.errors import StepError

CALLS: dict[str, list[str]] = {"plan": [], "apply": []}
# What each plan()/apply() call got from the runner: (name, previous_output, pending, state).
SEEN: list[tuple[str, Any, bool, str | None]] = []
DONE: set[str] = set()
RELEASE = threading.Event()


class Counting:
    """Applies once, then reports done; `fail_times` retryable failures first.

    With `output: NAME` it hands on the Path `/out/NAME` (`/out/NAME.planned` from plan(), so
    tests see which one was chained); with `facts: {...}` it reports those facts.
    """

    kind: ClassVar[str] = "counting"

    def __init__(self, params: dict[str, Any]) -> None:
        self.name = params["name"]
        self.fail_times = params.get("fail_times", 0)
        self.retryable = params.get("retryable", True)
        self.sleep = params.get("sleep", 0)
        self.output = params.get("output")
        self.facts = dict(params.get("facts", {}))

    def _seen(self, ctx: Context) -> None:
        SEEN.append((self.name, ctx.previous_output, ctx.previous_output_pending,
                     ctx.engine_state))

    def plan(self, ctx: Context) -> Plan:
        CALLS["plan"].append(self.name)
        self._seen(ctx)
        done = self.name in DONE
        output = None
        if self.output:
            output = Path("/out") / (self.output if done else f"{self.output}.planned")
        return Plan(f"{self.name}: absent → present", before="absent", after="present",
                    done=done, output=output, facts=dict(self.facts))

    def apply(self, ctx: Context) -> Outcome:
        CALLS["apply"].append(self.name)
        self._seen(ctx)
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise StepError(f"{self.name} failed on purpose", retryable=self.retryable)
        DONE.add(self.name)
        output = Path("/out") / self.output if self.output else None
        return Outcome(f"{self.name} created", before="absent", after="present", output=output,
                       facts=dict(self.facts))


def install(monkeypatch) -> None:
    """Register the test kinds and start from a clean slate."""
    from actions import registry

    monkeypatch.setitem(registry.STEP_KINDS, "counting", f"{__name__}:Counting")
    CALLS["plan"].clear()
    CALLS["apply"].clear()
    SEEN.clear()
    DONE.clear()
