"""Counting probe cycles: when does an outage count as prolonged, when is production back.

Pure logic, no I/O, so it can be tested exhaustively. A cycle is one of:
- `ok`: the target answered;
- `failed`: the target failed and at least one guard (or no guard is configured) answered;
- `inconclusive`: the target and every guard failed — this host may be cut off, so the
  cycle says nothing about production: the counts neither grow nor reset.

The outage is prolonged when `failures_to_engage` conclusive cycles in a row failed, or,
with a window, when `failures` of the last `cycles` conclusive cycles failed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Cycle(StrEnum):
    """The verdict of one monitor cycle."""

    OK = "ok"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


def classify(target_ok: bool, guards_ok: list[bool]) -> Cycle:
    """Turn the target's and the guards' results into a cycle verdict."""
    if target_ok:
        return Cycle.OK
    if guards_ok and not any(guards_ok):
        return Cycle.INCONCLUSIVE
    return Cycle.FAILED


@dataclass
class Tally:
    """Consecutive failures, the sliding window and the run of successes."""

    failures_to_engage: int
    window_failures: int | None = None
    window_cycles: int | None = None
    rise: int = 1
    failures: int = 0
    successes: int = 0
    window: list[bool] = field(default_factory=list)

    def record(self, cycle: Cycle) -> None:
        """Account for one cycle."""
        if cycle is Cycle.INCONCLUSIVE:
            return
        failed = cycle is Cycle.FAILED
        if failed:
            self.failures += 1
            self.successes = 0
        else:
            self.failures = 0
            self.successes += 1
        if self.window_cycles:
            self.window.append(failed)
            del self.window[: -self.window_cycles]

    @property
    def prolonged(self) -> bool:
        """True when the outage meets the consecutive rule or the window rule."""
        if self.failures >= self.failures_to_engage:
            return True
        if self.window_failures and self.window_cycles:
            return sum(self.window) >= self.window_failures
        return False

    @property
    def back(self) -> bool:
        """True when production answered `rise` cycles in a row."""
        return self.successes >= self.rise

    def reset(self) -> None:
        """Forget everything (after an engage, a restore or a reset)."""
        self.failures = 0
        self.successes = 0
        self.window.clear()
