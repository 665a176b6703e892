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
from enum import StrEnum
from typing import Any

from transitions import Machine, MachineError

from engine.errors import FailoverError
from engine.state import EngineState, isotime
from engine.states import State


class Trigger(StrEnum):
    """The events that move the machine (`Lifecycle.fire`)."""

    PROBE_FAILED = "probe_failed"
    PROBE_OK = "probe_ok"
    ENGAGE = "engage"
    ENGAGED = "engaged"  # the engage run finished (the state of the same name follows)
    RESTORE = "restore"
    RESTORED = "restored"
    ABORT = "abort"
    RESET = "reset"
    PAUSE = "pause"
    RESUME = "resume"


STATES = list(State)
# Short aliases so each transition reads on one line.
W, SU, EG, ED, RS, AB, PA = (State.WATCHING, State.SUSPECT, State.ENGAGING, State.ENGAGED,
                             State.RESTORING, State.ABORTED, State.PAUSED)

T = Trigger
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": T.PROBE_FAILED, "source": [W, SU], "dest": SU},
    {"trigger": T.PROBE_OK, "source": [W, SU], "dest": W},
    {"trigger": T.ENGAGE, "source": [W, SU, PA], "dest": EG},
    {"trigger": T.ENGAGED, "source": EG, "dest": ED},
    {"trigger": T.RESTORE, "source": [ED, AB], "dest": RS},
    {"trigger": T.RESTORED, "source": RS, "dest": W},
    {"trigger": T.ABORT, "source": [EG, RS], "dest": AB},
    {"trigger": T.RESET, "source": AB, "dest": ED, "conditions": "aborted_in_restore"},
    {"trigger": T.RESET, "source": AB, "dest": W},
    {"trigger": T.PAUSE, "source": [W, SU], "dest": PA},
    {"trigger": T.RESUME, "source": PA, "dest": W},
]

# Which command moves the machine out of each state, for error messages.
_HINTS = {
    EG: "an engage is in progress (or was interrupted: start the engine to resume it)",
    RS: "a restore is in progress (or was interrupted: run `restore` to resume it)",
    AB: "fix the cause, then run `failover-engine reset` (or `restore` to roll back)",
    ED: "the failover is engaged; run `failover-engine restore` when production is back",
    PA: "maintenance mode; run `failover-engine resume`",
}


class Lifecycle:
    """The machine's model: mirrors its state into an EngineState and reports each change."""

    state: State

    def __init__(
        self,
        policy_name: str,
        record: EngineState,
        on_change: Callable[[State, State, str], None] | None = None,
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
            initial=State(record.state),
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
        # transitions names an enum state by its member name (WATCHING), not its value.
        source = State[event.transition.source]  # type: ignore[attr-defined]
        trigger = str(event.event.name)  # type: ignore[attr-defined]
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
            and self.state in (t["source"] if isinstance(t["source"], list) else [t["source"]])
            for t in TRANSITIONS
        )
