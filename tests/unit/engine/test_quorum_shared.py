"""engine/quorum_shared.py: the shared state's value, the journal position, and how
`status` and the metrics read the monitor's quorum snapshot (stale means unknown)."""
from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from engine.clock import boot_id
from engine.quorum_shared import (
    SharedPause,
    SharedState,
    current_view,
    journal_position,
    status_lines,
    write_snapshot,
)
from engine.state import isotime, utcnow

NAMES = {"engage": ["lock", "dns", "mail"], "restore": ["unlock"]}


def test_shared_state_round_trip_and_bad_values() -> None:
    value = SharedState("engaged", "standby", 1234, "standby", hold_down_left=None,
                        reason="engaging → engaged (engaged)")
    assert SharedState.parse(value.to_json()) == value
    assert SharedState.parse(value.to_json()).busy  # type: ignore[union-attr]
    for bad in ("not json", "[]", '{"state": "engaged"}', '{"state": 1, "holder": "a", '
                '"token": 1}', '{"state": "engaged", "holder": "a", "token": true}'):
        assert SharedState.parse(bad) is None, bad
    odd = SharedState.parse('{"state": "watching", "holder": "a", "token": 3, '
                            '"run": 5, "hold_down_left": "soon", "extra": 1}')
    assert odd == SharedState("watching", "a", 3, "a")
    assert SharedPause.parse('{"paused": true, "by": "ops", "reason": "patching"}') == \
        SharedPause(True, "ops", "patching")
    assert SharedPause.parse('{"paused": "yes"}') is None


def test_journal_position_of_a_run_in_progress_and_a_finished_one() -> None:
    running = {"phase": "engage", "started": "T1", "steps": {"0": {}, "1": {}},
               "progress": {}}
    assert journal_position(running, None, NAMES) == {
        "id": "engage@T1", "phase": "engage", "steps_done": 2, "steps": 3, "last_step": 2,
        "last_step_name": "dns", "finished": False}
    finished = {"phase": "restore", "started": "T2", "finished": "T3", "ok": True,
                "steps": [{"step": "restore step 1", "status": "applied"}]}
    position = journal_position(None, finished, NAMES)
    assert position is not None
    assert (position["finished"], position["ok"], position["last_step_name"]) == (
        True, True, "unlock")
    assert journal_position(None, None, NAMES) is None


def policy(tmp_path: Path, interval: float = 1.0) -> SimpleNamespace:
    return SimpleNamespace(raw={"quorum": {"name": "obs2", "engage_when": {"down": 2}}},
                           monitor=SimpleNamespace(interval=interval), state_dir=tmp_path)


def snapshot(tmp_path: Path, *, age: float) -> Path:
    path = tmp_path / "quorum.json"
    write_snapshot(path, {
        "format": 1, "written": isotime(utcnow() - timedelta(seconds=age)),
        "monotonic": {"written": {"mono": time.monotonic() - age, "boot": boot_id()}},
        "name": "obs2", "actor": False, "timeout": 0.2,
        "store": {"reachable": True, "problem": None}, "agreeing": 1, "fresh": ["obs1", "obs2"],
        "leader": {"held": False, "token": 1234, "holder": "obs1 (pid 9 on h)",
                   "deadline_left": None},
        "shared": {"known": True, "problem": None, "state": "engaged", "holder": "obs1",
                   "token": 1234, "changed_by": "obs1", "reason": "engaging → engaged",
                   "run": {"phase": "engage", "last_step": 2, "steps": 3,
                           "last_step_name": "dns", "finished": False},
                   "hold_down_left": None},
        "pause": {"active": True, "by": "ops", "reason": "patching"}}, 0o600)
    return path


def test_a_fresh_snapshot_is_shown(tmp_path: Path) -> None:
    view = current_view(policy(tmp_path), snapshot(tmp_path, age=0.5), utcnow())
    assert view is not None and view["stale"] is False and view["needed"] == 2
    text = "\n".join(status_lines(view))
    assert "quorum: observer obs2 (votes only)" in text
    assert "store: reachable; 1/2 fresh observers say the outage is prolonged" in text
    assert ("shared: engaged by obs1 (token 1234), changed by obs1: engaging → engaged; "
            "engage step 2/3 (dns) done") in text
    assert "shared pause: yes, by ops (patching)" in text
    assert "leader key: held by obs1 (pid 9 on h) (token 1234)" in text


def test_a_stale_or_missing_snapshot_is_unknown_never_the_old_answer(tmp_path: Path) -> None:
    view = current_view(policy(tmp_path), snapshot(tmp_path, age=30), utcnow())
    assert view is not None and view["stale"] is True
    assert view["shared"]["known"] is False and view["store"]["reachable"] is None
    assert "state" not in view["shared"] and view["shared"]["last_known"]["state"] == "engaged"
    assert view["leader"]["token"] is None and view["agreeing"] is None and view["pause"] is None
    text = "\n".join(status_lines(view))
    assert "shared: unknown (the monitor has not read the quorum store lately (last read " \
        in text
    assert "engaged by" not in text and "shared pause" not in text
    (tmp_path / "quorum.json").unlink()
    view = current_view(policy(tmp_path), tmp_path / "quorum.json", utcnow())
    assert view is not None and view["stale"]
    assert "shared: unknown (no monitor has read the quorum store yet)" in \
        "\n".join(status_lines(view))
    (tmp_path / "quorum.json").write_text(json.dumps({"format": 99}))
    assert current_view(policy(tmp_path), tmp_path / "quorum.json", utcnow())["stale"]
    assert current_view(SimpleNamespace(raw={}), tmp_path / "quorum.json", utcnow()) is None
