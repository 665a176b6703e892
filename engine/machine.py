"""The engine's state machine, described as data and run by `transitions`.

    watching ⇄ suspect ──engage──▶ engaging ──engaged──▶ engaged ──restore──▶ restoring ──▶ watching
         │  ▲                          │                                          │
      pause resume                 step failed ──────────▶ aborted ◀──────── step failed
         ▼  │                                                 │ reset (after the cause is fixed)
        paused                                                ▼
                                         watching (engage aborted) / engaged (restore aborted)

The machine is named after the policy, so its errors say which policy they concern.
"""
from __future__ import annotations

from collections.abc import Callable

from transitions import Machine, MachineError

from engine.errors import FailoverError
from engine.state import EngineState, isotime

STATES = ["watching", "suspect", "engaging", "engaged", "restoring", "aborted", "paused"]

TRANSITIONS = [
    {"trigger": "probe_failed", "source": ["watching", "suspect"], "dest": "suspect"},
    {"trigger": "probe_ok", "source": ["watching", "suspect"], "dest": "watching"},
    {"trigger": "engage", "source": ["watching", "suspect", "paused"], "dest": "engaging"},
    {"trigger": "engaged", "source": "engaging", "dest": "engaged"},
    {"trigger": "restore", "source": ["engaged", "aborted"], "dest": "restoring"},
    {"trigger": "restored", "source": "restoring", "dest": "watching"},
    {"trigger": "abort", "source": ["engaging", "restoring"], "dest": "aborted"},
    {"trigger": "reset", "source": "aborted", "dest": "engaged",
     "conditions": "aborted_in_restore"},
    {"trigger": "reset", "source": "aborted", "dest": "watching"},
    {"trigger": "pause", "source": ["watching", "suspect"], "dest": "paused"},
    {"trigger": "resume", "source": "paused", "dest": "watching"},
]

# Which command moves the machine out of each state, for error messages.
_HINTS = {
    "engaging": "an engage is in progress (or was interrupted: start the engine to resume it)",
    "restoring": "a restore is in progress (or was interrupted: run `restore` to resume it)",
    "aborted": "fix the cause, then run `failover-engine reset` (or `restore` to roll back)",
    "engaged": "the failover is engaged; run `failover-engine restore` when production is back",
    "paused": "maintenance mode; run `failover-engine resume`",
}


class Lifecycle:
    """The machine's model: mirrors its state into an EngineState and reports each change."""

    state: str

    def __init__(
        self,
        policy_name: str,
        record: EngineState,
        on_change: Callable[[str, str, str], None] | None = None,
    ) -> None:
        if record.state not in STATES:
            raise FailoverError(f"state file names an unknown state {record.state!r}")
        self.policy_name = policy_name
        self.record = record
        self._on_change = on_change
        self.machine = Machine(
            model=self,
            states=STATES,
            transitions=TRANSITIONS,
            initial=record.state,
            name=policy_name,
            auto_transitions=False,
            after_state_change="_changed",
            send_event=True,
        )

    def aborted_in_restore(self, event: object = None) -> bool:
        """True when the run that aborted was a restore (reset then returns to engaged)."""
        last = self.record.last_run or {}
        return last.get("phase") == "restore"

    def _changed(self, event: object) -> None:
        source = event.transition.source  # type: ignore[attr-defined]
        trigger = event.event.name  # type: ignore[attr-defined]
        self.record.state = self.state
        if source != self.state:
            self.record.since = isotime()
        if self._on_change is not None:
            self._on_change(source, self.state, trigger)

    def fire(self, trigger: str) -> None:
        """Trigger a transition; an impossible one is a FailoverError that says why."""
        try:
            getattr(self, trigger)()
        except MachineError:
            hint = _HINTS.get(self.state, "")
            raise FailoverError(
                f"policy {self.policy_name}: cannot {trigger.replace('_', ' ')} "
                f"from state {self.state}" + (f": {hint}" if hint else "")
            ) from None

    def can(self, trigger: str) -> bool:
        """Whether `trigger` is allowed from the current state."""
        return any(
            t["trigger"] == trigger
            and (self.state == t["source"] or self.state in t["source"])
            for t in TRANSITIONS
        )
