"""engine/state.py: the state file's states and the engine lock's holder record."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import FailoverError, LockHeld
from engine.state import EngineState, LockHolder, StateStore
from engine.states import State


def test_the_state_file_keeps_plain_strings_and_loads_the_enum(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(EngineState(state=State.ENGAGED))
    assert '"state": "engaged"' in store.path.read_text()
    assert store.load().state is State.ENGAGED


def test_an_unknown_state_in_the_file_is_one_clear_error(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.path.write_text('{"state": "flying"}')
    with pytest.raises(FailoverError, match="state file is damaged.*unknown state 'flying'"):
        store.load()


def test_the_lock_holder_is_a_record_a_second_holder_is_refused(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.lock_holder() is None
    with store.hold("run"):
        holder = store.lock_holder()
        assert holder is not None and holder.role == "run" and holder.is_monitor
        assert isinstance(holder.pid, int)
        assert str(holder).startswith(f"pid {holder.pid}, run, since ")
        with pytest.raises(LockHeld, match=r"\(pid \d+, run, since "), store.hold("engage"):
            pass
    assert store.lock_holder() is None and store.holder() is None


def test_a_lock_text_from_an_older_engine_is_shown_but_not_taken_for_the_monitor() -> None:
    old = LockHolder.parse("pid 12, run, since 2026-01-01T00:00:00+00:00\n")
    assert not old.is_monitor
    assert str(old) == "pid 12, run, since 2026-01-01T00:00:00+00:00"
    assert str(LockHolder.parse("")) == "unknown"
