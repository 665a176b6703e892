"""engine/monitor_requests.py: the JSON records the CLI and the monitor exchange."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from engine.errors import FailoverError
from engine.monitor_requests import (
    REPLY_KEEP_SECONDS,
    BadRequest,
    Reply,
    Request,
    collect_reply,
    has_pending,
    picked_up,
    prune_replies,
    submit,
    take_pending,
    withdraw,
    write_reply,
)
from engine.paths import StatePaths
from engine.states import State


def test_a_request_is_a_private_json_record_taken_once(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    request = submit(paths, "restore", "alice (pid 1)")
    data = json.loads(paths.request_file(request.request_id).read_text())
    assert data == {"request_id": request.request_id, "kind": "restore",
                    "requested_by": "alice (pid 1)", "requested_at": request.requested_at,
                    "force": False, "without_quorum": False}
    assert stat.S_IMODE(paths.request_file(request.request_id).stat().st_mode) == 0o600
    assert has_pending(paths) and not picked_up(paths, request.request_id)
    assert take_pending(paths) == [request]
    assert picked_up(paths, request.request_id) and not has_pending(paths)
    assert take_pending(paths) == []


def test_requests_come_out_oldest_first(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    made = [submit(paths, kind) for kind in ("engage", "restore", "reset", "engage")]
    taken = take_pending(paths)
    assert [r.request_id for r in taken if isinstance(r, Request)] == [
        r.request_id for r in made]


def test_an_unknown_kind_is_refused_at_both_ends(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    with pytest.raises(ValueError, match="unknown request kind 'fly'"):
        submit(paths, "fly")
    paths.requests_dir.mkdir()
    paths.request_file("1-fly-x").write_text(json.dumps({"request_id": "1-fly-x",
                                                         "kind": "fly"}))
    paths.request_file("2-reset-x").write_text(json.dumps({"request_id": "other",
                                                           "kind": "reset"}))
    taken = take_pending(paths)
    assert all(isinstance(t, BadRequest) for t in taken)
    assert "unknown request kind 'fly'" in str(taken[0])
    assert "does not match its file name" in str(taken[1])
    assert not has_pending(paths)


def test_a_withdrawn_request_is_never_taken(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    request = submit(paths, "engage")
    assert withdraw(paths, request.request_id)
    assert not withdraw(paths, request.request_id)  # already gone: say so
    assert take_pending(paths) == []


def test_a_reply_round_trips_and_is_collected_once(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    reply = Reply("1-reset-a", "reset", False, "cannot reset from state watching",
                  State.WATCHING, "2026-11-30T06:00:00+00:00")
    write_reply(paths, reply)
    assert json.loads(paths.reply_file("1-reset-a").read_text())["accepted"] is False
    assert collect_reply(paths, "1-reset-a") == reply
    assert collect_reply(paths, "1-reset-a") is None


def test_a_damaged_reply_is_an_error_not_a_guess(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    paths.requests_dir.mkdir()
    paths.reply_file("1-engage-a").write_text('{"accepted": true}')
    with pytest.raises(FailoverError, match="unreadable reply from the monitor"):
        collect_reply(paths, "1-engage-a")


def test_uncollected_replies_are_pruned_after_a_day(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    for request_id in ("1-engage-old", "2-engage-new"):
        write_reply(paths, Reply(request_id, "engage", True, None, State.ENGAGED, "t"))
    old = paths.reply_file("1-engage-old")
    now = old.stat().st_mtime
    os.utime(old, (now - REPLY_KEEP_SECONDS - 1, now - REPLY_KEEP_SECONDS - 1))
    prune_replies(paths, now=now)
    assert not old.exists() and paths.reply_file("2-engage-new").exists()
