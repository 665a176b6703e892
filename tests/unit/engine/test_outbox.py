"""The durable outbox: once per channel, backoff, stats; delivered through a real program."""
from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

from engine.channels.command import CommandChannel
from engine.events import Kind, make_event
from engine.outbox import BACKOFF_MAX, Outbox, backoff
from engine.paths import StatePaths
from engine.state import parse_isotime, utcnow

# Appends the event's id to argv[1]; fails (exit 1) while the file argv[2] exists.
PROGRAM = """
import json, os, sys
event = json.load(sys.stdin)
if os.path.exists(sys.argv[2]):
    sys.exit("receiver down")
with open(sys.argv[1], "a") as out:
    out.write(event["kind"] + " " + event["id"] + "\\n")
"""


def _channel(tmp_path: Path, name: str = "command") -> CommandChannel:
    argv = [sys.executable, "-c", PROGRAM, str(tmp_path / f"{name}.got"),
            str(tmp_path / f"{name}.down")]
    return CommandChannel(name, {"argv": argv}, lambda n: tmp_path)


def _event(kind: Kind = Kind.ENGAGED, key: str = "k"):
    return make_event(kind, policy="p", key=key, state="engaged", time="2026-11-30T06:00:00+00:00",
                      headline="h", summary="s", host="h1")


def _got(tmp_path: Path, name: str = "command") -> list[str]:
    path = tmp_path / f"{name}.got"
    return path.read_text().splitlines() if path.exists() else []


def test_each_event_reaches_each_channel_once(tmp_path):
    outbox = Outbox(tmp_path / "state")
    channels = {"command": _channel(tmp_path)}
    event = _event()
    assert outbox.enqueue(event, ["command"]) == ["command"]
    assert outbox.enqueue(event, ["command"]) == []  # already waiting
    item = StatePaths(tmp_path / "state").outbox_dir / f"{event.id}.command.json"
    assert item.stat().st_mode & 0o777 == 0o640
    assert json.loads(item.read_text())["event"]["id"] == event.id
    result = outbox.deliver(channels)
    assert [(i, c) for i, c, _ in result.delivered] == [(event.id, "command")]
    assert outbox.enqueue(event, ["command"]) == []  # delivered: never queued again
    assert outbox.deliver(channels, due_only=False).delivered == []
    assert _got(tmp_path) == [f"engaged {event.id}"]
    assert outbox.stats().depth == 0


def test_a_failing_channel_backs_off_and_the_item_waits(tmp_path):
    outbox = Outbox(tmp_path / "state")
    channels = {"command": _channel(tmp_path)}
    (tmp_path / "command.down").touch()
    event = _event(Kind.ABORTED)
    outbox.enqueue(event, ["command"])
    now = utcnow()
    result = outbox.deliver(channels, now=now)
    assert result.failed and "receiver down" in result.failed[0][2]
    (item,), bad = outbox.items()
    assert bad == 0 and item.attempts == 1 and "receiver down" in item.last_error
    assert now < parse_isotime(item.next_attempt) <= now + timedelta(seconds=backoff(1))
    # Not due yet: a pass on the schedule leaves it alone.
    assert outbox.deliver(channels, now=now).failed == []
    stats = outbox.stats(now + timedelta(minutes=11))
    assert stats.depth == 1 and stats.oldest_age_seconds >= 600
    assert stats.waiting_critical == [{"kind": "aborted", "channel": "command",
                                       "queued": item.queued, "error": item.last_error}]
    # The receiver is back: the next due pass delivers it, once.
    (tmp_path / "command.down").unlink()
    later = now + timedelta(seconds=backoff(1) + 1)
    assert [c for _, c, _ in outbox.deliver(channels, now=later).delivered] == ["command"]
    assert _got(tmp_path) == [f"aborted {event.id}"] and outbox.stats().depth == 0


def test_backoff_doubles_and_is_capped_at_a_minute():
    delays = [backoff(n) for n in range(1, 9)]
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]
    assert max(delays) == BACKOFF_MAX == 60.0 and delays == sorted(delays)


def test_a_dead_channel_does_not_keep_another_from_delivering(tmp_path):
    outbox = Outbox(tmp_path / "state")
    channels = {"command": _channel(tmp_path), "other": _channel(tmp_path, "other")}
    (tmp_path / "command.down").touch()
    first, second = _event(key="1"), _event(key="2")
    outbox.enqueue(first, ["command", "other"])
    outbox.enqueue(second, ["command", "other"])
    result = outbox.deliver(channels)
    assert sorted((i, c) for i, c, _ in result.delivered) == sorted(
        [(first.id, "other"), (second.id, "other")])
    # The dead channel was asked once in this pass, not once per item.
    assert [e for _, _, e in result.failed].count("not tried: the channel failed earlier in "
                                                  "this pass") == 1
    assert outbox.stats().by_channel == {"command": 2}


def test_an_item_for_a_channel_no_longer_configured_says_so(tmp_path):
    outbox = Outbox(tmp_path / "state")
    outbox.enqueue(_event(), ["gone"])
    result = outbox.deliver({"command": _channel(tmp_path)})
    assert "not in the policy's notify block" in result.failed[0][2]
    assert outbox.stats().depth == 1


def test_a_delivery_in_progress_elsewhere_is_not_repeated(tmp_path):
    outbox = Outbox(tmp_path / "state")
    outbox.enqueue(_event(), ["command"])
    with outbox._lock(0) as held:
        assert held
        assert Outbox(tmp_path / "state").deliver({"command": _channel(tmp_path)}).busy
    assert _got(tmp_path) == []
