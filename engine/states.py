"""The engine's states: one enum, used by the machine and by everything that reads a state.

`State` is a `StrEnum`, so a member equals its string value ("watching" == State.WATCHING)
and the state file keeps the same JSON strings. Product code names states only through
this enum (a test greps engine/ and actions/ for bare state names).
"""
from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """The states of DESIGN §3 (see engine/machine.py for the transitions between them)."""

    WATCHING = "watching"
    SUSPECT = "suspect"
    ENGAGING = "engaging"
    ENGAGED = "engaged"
    RESTORING = "restoring"
    ABORTED = "aborted"
    PAUSED = "paused"


# Probing production, nothing engaged: where pause and automatic engage start from.
ARMED = (State.WATCHING, State.SUSPECT)
# A run (engage or restore) is in progress or was interrupted and resumes at the next start.
RUNNING = (State.ENGAGING, State.RESTORING)
# The standby serves users (or is about to, or is being switched back): jobs must not
# overwrite its data.
STANDBY_BUSY = (State.ENGAGING, State.ENGAGED, State.RESTORING)


def parse_state(value: object) -> State:
    """The State a state file names; ValueError (naming the known ones) for anything else."""
    if isinstance(value, str) and value in State.__members__.values():
        return State(value)
    known = ", ".join(s.value for s in State)
    raise ValueError(f"unknown state {value!r} (known: {known})")
