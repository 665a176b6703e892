"""The durable outbox: every event for every channel is on disk until that channel took it.

`state_dir/outbox/<event id>.<channel>.json` holds one event for one channel (written
atomically, mode 0600) with its delivery bookkeeping: when it was queued, how many
attempts failed, the last error and when the next attempt is due. A delivery removes it
only after writing `outbox/sent/<event id>.<channel>`, and an event whose marker exists
is never queued again: each event reaches each channel once (a crash between the
receiver's answer and the marker may repeat it; webhooks and mails carry the id so the
receiver can tell, Alertmanager merges it anyway).

Retries: exponential backoff from BACKOFF_START seconds, doubling, capped at BACKOFF_MAX
(a minute), by the monitor on its own schedule and by every CLI command that runs
(engine/notifier.py). Deliveries hold `outbox/.lock` (flock), so two processes never send
the same item at once; a busy lock means someone else is delivering.

`stats()` gives the depth, the oldest item's age and the must-deliver events (aborted,
disarmed) still waiting: `status`, the metrics and `check engine` show them.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine.channels import Channel, ChannelError
from engine.events import MUST_DELIVER, Event
from engine.fsutil import atomic_write, ensure_private_dir, fsync_dir
from engine.paths import StatePaths
from engine.safefile import FileRefused, read_limited
from engine.state import isotime, parse_isotime, utcnow

BACKOFF_START = 5.0
BACKOFF_MAX = 60.0
SENT_KEEP = timedelta(days=30)


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones (5, 10, 20, 40, 60, 60…)."""
    return min(BACKOFF_MAX, BACKOFF_START * 2 ** max(0, attempts - 1))


@dataclass
class Item:
    """One event waiting for one channel."""

    path: Path
    event: Event
    channel: str
    queued: str
    attempts: int = 0
    next_attempt: str | None = None
    last_error: str | None = None
    order: int = 0  # time.time_ns() when queued: events go out in the order they happened

    def record(self) -> dict[str, Any]:
        """The item file's JSON object."""
        return {"event": self.event.to_dict(), "channel": self.channel, "queued": self.queued,
                "attempts": self.attempts, "next_attempt": self.next_attempt,
                "last_error": self.last_error, "order": self.order}


@dataclass
class Delivery:
    """What one pass over the outbox did."""

    delivered: list[tuple[str, str, str]] = field(default_factory=list)  # id, channel, what
    failed: list[tuple[str, str, str]] = field(default_factory=list)     # id, channel, error
    busy: bool = False  # another process held the lock: nothing tried


@dataclass
class OutboxStats:
    """Depth, oldest age, and the must-deliver events still waiting (kind, channel, error)."""

    depth: int = 0
    oldest_age_seconds: float | None = None
    oldest_queued: str | None = None
    waiting_critical: list[dict[str, Any]] = field(default_factory=list)
    by_channel: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0

    def as_dict(self) -> dict[str, Any]:
        """For `status --json`."""
        return {"depth": self.depth, "oldest_age_seconds": self.oldest_age_seconds,
                "oldest_queued": self.oldest_queued, "by_channel": self.by_channel,
                "waiting_critical": self.waiting_critical, "unreadable": self.unreadable}


class Outbox:
    """The outbox of one state directory; see the module docstring."""

    def __init__(self, state_dir: Path | str) -> None:
        self.dir = StatePaths(Path(state_dir)).outbox_dir
        self.sent_dir = self.dir / "sent"

    def _item_path(self, event_id: str, channel: str) -> Path:
        return self.dir / f"{event_id}.{channel}.json"

    def _marker(self, event_id: str, channel: str) -> Path:
        return self.sent_dir / f"{event_id}.{channel}"

    def was_sent(self, event_id: str, channel: str) -> bool:
        """True when this event already reached this channel."""
        return self._marker(event_id, channel).exists()

    def enqueue(self, event: Event, channels: list[str]) -> list[str]:
        """Queue `event` for each channel that has neither got it nor has it waiting; return
        the channels it was queued for."""
        queued = []
        for channel in channels:
            path = self._item_path(event.id, channel)
            if path.exists() or self.was_sent(event.id, channel):
                continue
            ensure_private_dir(self.dir)
            item = Item(path, event, channel, isotime(), order=time.time_ns())
            # 0640: `check engine` (a monitoring group, install --check-group) reads the
            # items' age and kind; an event holds no secret.
            atomic_write(path, json.dumps(item.record(), sort_keys=True).encode(), mode=0o640)
            queued.append(channel)
        return queued

    def items(self) -> tuple[list[Item], int]:
        """The waiting items, oldest first, and how many item files could not be read."""
        if not self.dir.is_dir():
            return [], 0
        found, bad = [], 0
        for path in self.dir.glob("*.json"):
            try:
                data = json.loads(read_limited(path, "outbox_item", nofollow=True))
                found.append(Item(path, Event.from_dict(data["event"]), str(data["channel"]),
                                  str(data["queued"]), int(data.get("attempts", 0)),
                                  data.get("next_attempt"), data.get("last_error"),
                                  int(data.get("order", 0))))
            except FileNotFoundError:
                continue  # delivered by another process meanwhile
            except (FileRefused, OSError, ValueError, KeyError, TypeError):
                bad += 1
        found.sort(key=lambda i: (i.order, i.queued, i.path.name))
        return found, bad

    @contextlib.contextmanager
    def _lock(self, wait: float) -> Iterator[bool]:
        ensure_private_dir(self.dir)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(fd)

    def deliver(self, channels: Mapping[str, Channel], *, budget: float = 30.0,
                due_only: bool = True, only: str | None = None, now: datetime | None = None,
                wait: float = 0.0) -> Delivery:
        """Try the waiting items (those due, unless `due_only` is False), oldest first, within
        `budget` seconds; failures get the next backoff. `only` limits it to one channel."""
        result = Delivery()
        if not self.dir.is_dir() or not any(self.dir.glob("*.json")):
            return result
        with self._lock(wait) as held:
            if not held:
                result.busy = True
                return result
            deadline = time.monotonic() + budget
            dead: set[str] = set()  # a channel that failed in this pass is not asked again
            for item in self.items()[0]:
                moment = now or utcnow()
                if only is not None and item.channel != only:
                    continue
                if due_only and (due := parse_isotime(item.next_attempt)) and due > moment:
                    continue
                if not item.path.exists():
                    continue
                left = deadline - time.monotonic()
                channel = channels.get(item.channel)
                if channel is None:
                    error = (f"channel {item.channel} is not in the policy's notify block any"
                             " more; add it back or delete the file")
                elif item.channel in dead:
                    error = "not tried: the channel failed earlier in this pass"
                elif left <= 0:
                    break
                else:
                    try:
                        what = channel.send(item.event, left)
                    except ChannelError as exc:
                        error = str(exc)
                        dead.add(item.channel)
                    except Exception as exc:  # noqa: BLE001 - one bad channel never stops the rest
                        error = f"{type(exc).__name__}: {exc}"
                        dead.add(item.channel)
                    else:
                        self._done(item)
                        result.delivered.append((item.event.id, item.channel, what))
                        continue
                self._failed(item, error, moment)
                result.failed.append((item.event.id, item.channel, error))
            self._prune(now or utcnow())
        return result

    def _done(self, item: Item) -> None:
        ensure_private_dir(self.sent_dir)
        atomic_write(self._marker(item.event.id, item.channel), item.event.kind.encode() + b"\n")
        item.path.unlink(missing_ok=True)
        fsync_dir(self.dir)

    def _failed(self, item: Item, error: str, now: datetime) -> None:
        item.attempts += 1
        item.last_error = error
        item.next_attempt = isotime(now + timedelta(seconds=backoff(item.attempts)))
        atomic_write(item.path, json.dumps(item.record(), sort_keys=True).encode(), mode=0o640,
                     durable=False)

    def _prune(self, now: datetime) -> None:
        # Markers only need to outlive any re-emission of their event (a restart, a retry).
        if not self.sent_dir.is_dir():
            return
        limit = (now - SENT_KEEP).timestamp()
        for marker in self.sent_dir.iterdir():
            with contextlib.suppress(OSError):
                if marker.stat().st_mtime < limit:
                    marker.unlink()

    def stats(self, now: datetime | None = None) -> OutboxStats:
        """Depth, oldest age and the must-deliver events waiting; see OutboxStats."""
        now = now or utcnow()
        items, bad = self.items()
        stats = OutboxStats(depth=len(items) + bad, unreadable=bad)
        for item in items:
            stats.by_channel[item.channel] = stats.by_channel.get(item.channel, 0) + 1
            if item.event.kind in MUST_DELIVER and item.attempts > 0:
                stats.waiting_critical.append({"kind": str(item.event.kind),
                                               "channel": item.channel,
                                               "queued": item.queued,
                                               "error": item.last_error})
        if items:
            stats.oldest_queued = items[0].queued
            queued = parse_isotime(items[0].queued)
            if queued is not None:
                stats.oldest_age_seconds = round(max(0.0, (now - queued).total_seconds()), 3)
        return stats
