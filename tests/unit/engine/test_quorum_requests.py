"""The records of requests through the quorum's store (engine/quorum_requests.py)."""
from __future__ import annotations

import json

import pytest

from engine.errors import FailoverError
from engine.monitor_requests import BadRequest
from engine.quorum_requests import (
    KINDS,
    StoreReply,
    encode,
    new_request,
    parse_reply,
    parse_request,
    pause_document,
    pause_key,
    reply_key,
    request_key,
)
from engine.quorum_shared import SharedPause


def test_keys_sit_under_the_prefix() -> None:
    assert request_key("/fe/") == "/fe/requests/"
    assert request_key("/fe/", "abc") == "/fe/requests/abc"
    assert reply_key("/fe/", "abc") == "/fe/replies/abc"
    assert pause_key("/fe/") == "/fe/shared/pause"


def test_a_request_names_who_asked_and_through_which_observer() -> None:
    request = new_request("pause", "obs2", reason="maintenance")
    document = json.loads(encode(request))
    assert set(document) == {"request_id", "kind", "requested_by", "requested_at", "via",
                             "force", "reason"}
    assert document["kind"] == "pause" and document["via"] == "obs2"
    assert document["reason"] == "maintenance"
    assert "(pid " in document["requested_by"] and " on " in document["requested_by"]
    assert request.request_id.split("-")[1] == "pause"
    assert parse_request(request.request_id, encode(request).encode()) == request


def test_force_only_for_engage_and_a_reason_only_for_pause() -> None:
    assert new_request("engage", "obs2", force=True).force is True
    assert new_request("restore", "obs2", force=True).force is False
    assert new_request("resume", "obs2", reason="why").reason == ""
    with pytest.raises(ValueError, match="unknown request kind 'repair'"):
        new_request("repair", "obs2")
    assert KINDS == ("engage", "restore", "reset", "pause", "resume")


def test_request_ids_sort_in_creation_order() -> None:
    ids = [new_request("reset", "obs3").request_id for _ in range(5)]
    assert ids == sorted(ids)


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"request_id": "x", "kind": "repair"}', "unknown request kind 'repair'"),
    (b'{"request_id": "y", "kind": "reset"}', "does not match its key"),
    (b'{"request_id": "x", "kind": "reset", "via": 3}', "via is not a string"),
])
def test_a_damaged_request_is_a_bad_request(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as caught:
        parse_request("x", raw)
    assert caught.value.request_id == "x"


def test_a_request_without_optional_fields_reads_with_defaults() -> None:
    request = parse_request("x", b'{"request_id": "x", "kind": "engage", "force": "yes"}')
    assert (request.requested_by, request.via, request.force, request.reason) == \
        ("unknown", "unknown", False, "")  # only a JSON true forces


def test_a_reply_round_trips_and_a_damaged_one_is_refused() -> None:
    reply = StoreReply("x", "restore", False, "cannot restore from state watching",
                       "watching", "2026-11-30T09:00:00Z", "obs1")
    document = json.loads(encode(reply))
    assert set(document) == {"request_id", "kind", "accepted", "reason", "state",
                             "replied_at", "actor"}
    assert parse_reply(encode(reply).encode()) == reply
    for raw in (b"nope", b'{"request_id": "x"}', b'{"request_id": "x", "kind": "reset", '
                b'"accepted": "yes", "state": "watching", "replied_at": ""}'):
        with pytest.raises(FailoverError, match="unreadable reply in the quorum store"):
            parse_reply(raw)


def test_the_shared_pause_reads_back_as_the_mirror_reads_it() -> None:
    # engine/quorum_shared.py parses what the actor writes for every observer's monitor.
    paused = SharedPause.parse(pause_document(True, "alice through observer obs2", "window"))
    assert paused == SharedPause(True, "alice through observer obs2", "window")
    resumed = SharedPause.parse(pause_document(False, "bob"))
    assert resumed is not None and resumed.paused is False


@pytest.mark.parametrize("value", ["soon", "0s", "-1s", "2h"])
def test_a_bad_wait_is_one_line_and_exit_2(value: str) -> None:
    import argparse

    from engine.commands.operate import _wait
    from engine.errors import UsageError

    with pytest.raises(UsageError, match=f"--wait {value}: ") as caught:
        _wait(argparse.Namespace(wait=value))
    assert caught.value.exit_code == 2
    assert _wait(argparse.Namespace(wait="2s")) == 2.0
    assert _wait(argparse.Namespace(wait=None), 40.0) == 40.0
