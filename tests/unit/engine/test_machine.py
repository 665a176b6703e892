"""The state machine: every transition, impossible ones refused with the policy's name."""
from __future__ import annotations

import pytest

from engine.errors import FailoverError
from engine.machine import STATES, Lifecycle
from engine.state import EngineState


def machine(state="watching", last_phase=None):
    record = EngineState(state=state)
    if last_phase:
        record.last_run = {"phase": last_phase}
    changes = []
    return Lifecycle("gocdb", record, lambda s, d, t: changes.append((s, d, t))), changes


@pytest.mark.parametrize(
    ("start", "trigger", "end"),
    [
        ("watching", "probe_failed", "suspect"),
        ("suspect", "probe_failed", "suspect"),
        ("suspect", "probe_ok", "watching"),
        ("watching", "engage", "engaging"),
        ("suspect", "engage", "engaging"),
        ("paused", "engage", "engaging"),
        ("engaging", "engaged", "engaged"),
        ("engaging", "abort", "aborted"),
        ("engaged", "restore", "restoring"),
        ("aborted", "restore", "restoring"),
        ("restoring", "restored", "watching"),
        ("restoring", "abort", "aborted"),
        ("aborted", "reset", "watching"),
        ("watching", "pause", "paused"),
        ("suspect", "pause", "paused"),
        ("paused", "resume", "watching"),
    ],
)
def test_transition(start, trigger, end):
    life, changes = machine(start)
    life.fire(trigger)
    assert life.state == end and life.record.state == end
    assert changes == [(start, end, trigger)]


def test_reset_after_a_failed_restore_returns_to_engaged():
    life, _ = machine("aborted", last_phase="restore")
    life.fire("reset")
    assert life.state == "engaged"


@pytest.mark.parametrize(
    ("start", "trigger"),
    [("engaged", "engage"), ("watching", "restore"), ("watching", "reset"),
     ("engaging", "pause"), ("engaged", "pause"), ("aborted", "engage")],
)
def test_impossible_transition_names_policy_and_state(start, trigger):
    life, changes = machine(start)
    with pytest.raises(FailoverError, match=rf"policy gocdb: cannot {trigger} from state {start}"):
        life.fire(trigger)
    assert life.state == start and changes == []


def test_every_state_is_reachable_and_can_is_consistent():
    for state in STATES:
        life, _ = machine(state)
        for trigger in ["engage", "restore", "reset", "pause", "resume"]:
            allowed = life.can(trigger)
            try:
                life.fire(trigger)
            except FailoverError:
                assert not allowed, (state, trigger)
            else:
                assert allowed, (state, trigger)
            life, _ = machine(state)


def test_since_changes_on_a_real_state_change_only():
    life, _ = machine("suspect")
    life.record.since = "2000-01-01T00:00:00+00:00"
    life.fire("probe_failed")
    assert life.record.since == "2000-01-01T00:00:00+00:00"
    life.fire("probe_ok")
    assert life.record.since != "2000-01-01T00:00:00+00:00"
