"""engine/standby.py: the evidence that the standby may serve, and the standby lock."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.standby import (
    StandbyBusy,
    SwapRefused,
    half_done_swaps,
    hold_standby_lock,
    serving_evidence,
    swap_permit,
)


def policy(tmp_path: Path, *steps: tuple[str, dict[str, Any]]) -> Any:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    return SimpleNamespace(state_dir=state_dir, path=tmp_path / "policy.yaml",
                           engage=[SimpleNamespace(kind=k, params=p) for k, p in steps])


def write_state(p: Any, data: Any) -> None:
    (p.state_dir / "state.json").write_text(data if isinstance(data, str) else json.dumps(data))


def test_a_fresh_state_dir_has_no_evidence(tmp_path):
    assert serving_evidence(policy(tmp_path)) == []


def test_watching_with_nothing_else_has_no_evidence(tmp_path):
    p = policy(tmp_path)
    write_state(p, {"state": "watching"})
    assert serving_evidence(p) == []


@pytest.mark.parametrize("state", ["engaging", "engaged", "restoring"])
def test_busy_states(tmp_path, state):
    p = policy(tmp_path)
    write_state(p, {"state": state})
    assert serving_evidence(p) == [f"the failover is {state}"]


def test_aborted_after_an_engage_counts_but_not_after_a_restore(tmp_path):
    p = policy(tmp_path)
    write_state(p, {"state": "aborted", "last_run": {"phase": "engage"}})
    assert serving_evidence(p) == ["the failover is aborted during or after an engage"]
    write_state(p, {"state": "aborted", "last_run": {"phase": "restore"}})
    assert serving_evidence(p) == []


@pytest.mark.parametrize("content, word", [
    ("{not json", "damaged"), ("[1, 2]", "not a JSON object"),
    (json.dumps({"state": 42}), "unknown state 42"),
    (json.dumps({"state": "bogus"}), "unknown state 'bogus'"),
    (json.dumps({}), "unknown state None"),
])
def test_a_damaged_or_unknown_state_counts_as_possibly_engaged(tmp_path, content, word):
    p = policy(tmp_path)
    write_state(p, content)
    [reason] = serving_evidence(p)
    assert word in reason and "possibly engaged" in reason and "repair-state" in reason


def test_a_missing_state_counts_once_the_engine_has_run(tmp_path):
    p = policy(tmp_path)
    (p.state_dir / "engine.lock").write_text("")
    [reason] = serving_evidence(p)
    assert "missing" in reason and "possibly engaged" in reason


def test_the_policy_lock_file_and_parked_cron_file_count(tmp_path):
    lock = tmp_path / "elsewhere" / "engage.lock"
    lock.parent.mkdir()
    p = policy(tmp_path, ("lock", {"state": "present", "file": str(lock)}),
               ("disable_cron", {"file": "/etc/cron.d/refresh", "park_dir": "parked-here"}))
    write_state(p, {"state": "watching"})
    assert serving_evidence(p) == []
    lock.write_text("{}")
    (tmp_path / "parked-here").mkdir()
    (tmp_path / "parked-here" / "refresh").write_text("")
    assert serving_evidence(p) == [f"the engage lock {lock} exists",
                                   f"the cron file is parked at {tmp_path}/parked-here/refresh"]


def test_without_a_policy_the_state_dirs_own_files_count(tmp_path):
    p = policy(tmp_path)
    (p.state_dir / "parked").mkdir()
    (p.state_dir / "parked" / "x").write_text("")
    (p.state_dir / "engage.lock").write_text("")
    reasons = serving_evidence(None, p.state_dir)
    assert any("engage lock" in r for r in reasons) and any("parked" in r for r in reasons)


def test_a_second_holder_waits_then_gives_up_naming_the_first(tmp_path):
    p = policy(tmp_path)
    with (hold_standby_lock(p.state_dir, "job import", wait=1),
          pytest.raises(StandbyBusy, match="job import"),
          hold_standby_lock(p.state_dir, "engage", wait=0.3, sleep=lambda s: None)):
        pass
    with hold_standby_lock(p.state_dir, "engage", wait=0):  # free again
        pass


def test_swap_permit_refuses_on_evidence_and_force_overrides(tmp_path):
    p = policy(tmp_path)
    write_state(p, {"state": "engaged"})
    told: list[str] = []
    with (pytest.raises(SwapRefused, match="refused before the swap: the failover is engaged"),
          swap_permit(p.state_dir, p, role="t", on_refused=told.append)):
        pytest.fail("the block must not run")
    assert told and "live was left unchanged" in told[0]
    ran = []
    with swap_permit(p.state_dir, p, role="t", force=True):
        ran.append(True)
    assert ran == [True]


def test_half_done_swaps(tmp_path):
    p = policy(tmp_path)
    assert half_done_swaps(p.state_dir) == []
    folder = p.state_dir / "swap"
    folder.mkdir()
    (folder / "gocdb.json").write_text(json.dumps({"phase": "renamed", "started": "T0"}))
    (folder / "other.json").write_text(json.dumps({"phase": "damaged", "problems": [
        "missing trigger t"], "checked": "T1"}))
    (folder / "bad.json").write_text("{")
    lines = half_done_swaps(p.state_dir)
    assert len(lines) == 3
    assert "live bad is not known to be whole" in lines[0]
    assert "live gocdb may be half-swapped: a swap began at T0" in lines[1]
    assert "live other does not match its dump (missing trigger t) since T1" in lines[2]
