"""engine/commands/operate.py: asking a running monitor, and what its reply means for the exit."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.commands import operate
from engine.errors import FailoverError
from engine.monitor_requests import Reply, has_pending, take_pending, write_reply
from engine.paths import StatePaths
from engine.state import LockHolder, StateStore
from engine.states import State


@pytest.fixture
def monitor_lock(tmp_path: Path) -> Iterator[LockHolder]:
    """This process holds the engine lock as the monitor does (role `run`)."""
    store = StateStore(tmp_path)
    with store.hold("run"):
        holder = store.lock_holder()
        assert holder is not None and holder.is_monitor
        yield holder


def test_a_request_nobody_picks_up_is_withdrawn_and_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        monitor_lock: LockHolder) -> None:
    monkeypatch.setattr(operate, "PICKUP_TIMEOUT", 0.3)
    with pytest.raises(FailoverError, match="did not pick up the request .* nothing was done"):
        operate._ask_monitor(StateStore(tmp_path), "restore", monitor_lock)
    assert not has_pending(StatePaths(tmp_path))
    assert "asked it to restore" in capsys.readouterr().out


def _answer_once(paths: StatePaths, accepted: bool, reason: str | None, state: State) -> None:
    """The monitor's half of the protocol (engine/monitor.py uses the same two calls)."""
    def run() -> None:
        while True:
            taken = take_pending(paths)
            if taken:
                [request] = taken
                write_reply(paths, Reply(request.request_id, "engage", accepted, reason,
                                         state, "2026-11-30T06:00:01+00:00"))
                return
            threading.Event().wait(0.05)
    threading.Thread(target=run, daemon=True).start()


@pytest.mark.parametrize("accepted, reason, state, code, text", [
    (True, None, State.ENGAGED, 0, "state: engaged"),
    (True, "engage step 2 (lock) failed: disk full", State.ABORTED, 1,
     "aborted: engage step 2 (lock) failed: disk full"),
    (True, None, State.ENGAGING, 1, "the monitor stopped before the run finished"),
])
def test_an_accepted_request_exits_by_the_resulting_state(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], accepted: bool, reason: str | None,
        state: State, code: int, text: str, monitor_lock: LockHolder) -> None:
    paths = StatePaths(tmp_path)
    _answer_once(paths, accepted, reason, state)
    assert operate._ask_monitor(StateStore(tmp_path), "engage", monitor_lock) == code
    assert text in capsys.readouterr().out
    assert list(paths.requests_dir.iterdir()) == []  # the reply was collected


def test_a_refused_request_is_an_error_with_the_monitors_reason(
        tmp_path: Path, monitor_lock: LockHolder) -> None:
    paths = StatePaths(tmp_path)
    _answer_once(paths, False, "policy p: cannot engage from state engaged", State.ENGAGED)
    with pytest.raises(FailoverError, match="the monitor refused: policy p: cannot engage"):
        operate._ask_monitor(StateStore(tmp_path), "engage", monitor_lock)
