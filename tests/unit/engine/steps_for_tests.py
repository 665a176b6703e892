"""Step kinds that exist only for runner tests: they count, fail on cue, or block."""
from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.errors import StepError

CALLS: dict[str, list[str]] = {"plan": [], "apply": []}
DONE: set[str] = set()
RELEASE = threading.Event()


class Counting:
    """Applies once, then reports done; `fail_times` retryable failures first."""

    kind: ClassVar[str] = "counting"

    def __init__(self, params: dict[str, Any]) -> None:
        self.name = params["name"]
        self.fail_times = params.get("fail_times", 0)
        self.retryable = params.get("retryable", True)
        self.sleep = params.get("sleep", 0)

    def plan(self, ctx: Context) -> Plan:
        CALLS["plan"].append(self.name)
        return Plan(f"{self.name}: absent → present", before="absent", after="present",
                    done=self.name in DONE)

    def apply(self, ctx: Context) -> Outcome:
        CALLS["apply"].append(self.name)
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise StepError(f"{self.name} failed on purpose", retryable=self.retryable)
        DONE.add(self.name)
        return Outcome(f"{self.name} created", before="absent", after="present")


def install(monkeypatch) -> None:
    """Register the test kinds and start from a clean slate."""
    from actions import registry

    monkeypatch.setitem(registry.STEP_KINDS, "counting", f"{__name__}:Counting")
    CALLS["plan"].clear()
    CALLS["apply"].clear()
    DONE.clear()
