"""Requests from the command line to a running monitor, and the monitor's replies.

While `failover-engine run` holds the engine lock, `engage --now`, `restore` and `reset`
cannot act themselves: they leave a request for the monitor and wait for its reply. Both
are JSON records written atomically under `requests/` in the state directory
(engine/paths.py), one pair of files per request:

    <id>.request.json   {"request_id", "kind", "requested_by", "requested_at", "force",
                         "without_quorum"}
    <id>.reply.json     {"request_id", "kind", "accepted", "reason", "state", "replied_at"}

The monitor removes the request file when it picks the request up (so the command knows
it was seen) and writes the reply when it has acted: `accepted` false with the `reason`
when the machine refused (e.g. `restore` while watching), else true with the resulting
`state` (and the aborted reason as `reason` if the run aborted). The command reads the
reply and removes it; nothing is ever matched on display text. Request ids start with the
time in nanoseconds (hex), so sorting by name is the order they were made in.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.errors import FailoverError
from engine.fsutil import atomic_write, ensure_private_dir
from engine.paths import StatePaths
from engine.safefile import FileRefused, read_limited
from engine.state import isotime
from engine.states import State, parse_state

KINDS = ("engage", "restore", "reset")
_REQUEST_SUFFIX = ".request.json"
_REPLY_SUFFIX = ".reply.json"
# A reply nobody collected (the command was interrupted) is removed after this long.
REPLY_KEEP_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Request:
    """One request from the command line."""

    request_id: str
    kind: str
    requested_by: str
    requested_at: str
    force: bool = False  # engage --now --force: a failing probe step is overridden
    without_quorum: bool = False  # engage --now --without-quorum (engine/quorum.py)


@dataclass(frozen=True)
class Reply:
    """The monitor's answer to one request."""

    request_id: str
    kind: str
    accepted: bool
    reason: str | None
    state: State
    replied_at: str


class BadRequest(ValueError):
    """A request file that cannot be read or is not a request record."""

    def __init__(self, request_id: str, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id


def caller() -> str:
    """Who runs this command: `user (pid N)`."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = f"uid {os.getuid()}"
    return f"{user} (pid {os.getpid()})"


def new_request_id(kind: str) -> str:
    """A unique id that sorts in creation order: `<ns since epoch, hex>-<kind>-<random>`."""
    return f"{time.time_ns():016x}-{kind}-{secrets.token_hex(4)}"


def submit(paths: StatePaths, kind: str, requested_by: str | None = None, *,
           force: bool = False, without_quorum: bool = False) -> Request:
    """Leave a request for the monitor; returns it (its id names the reply to wait for)."""
    if kind not in KINDS:
        raise ValueError(f"unknown request kind {kind!r} (known: {', '.join(KINDS)})")
    request = Request(new_request_id(kind), kind, requested_by or caller(), isotime(),
                      force=force and kind == "engage",
                      without_quorum=without_quorum and kind == "engage")
    ensure_private_dir(paths.requests_dir)
    atomic_write(paths.request_file(request.request_id),
                 json.dumps(asdict(request), sort_keys=True) + "\n")
    return request


def withdraw(paths: StatePaths, request_id: str) -> bool:
    """Remove a request nobody picked up; True if it was still there (so never acted on)."""
    try:
        paths.request_file(request_id).unlink()
    except FileNotFoundError:
        return False
    return True


def picked_up(paths: StatePaths, request_id: str) -> bool:
    """True once the monitor has taken the request (its file is gone)."""
    return not paths.request_file(request_id).exists()


def _ids(paths: StatePaths, suffix: str) -> list[str]:
    try:
        names = sorted(p.name for p in paths.requests_dir.iterdir())
    except FileNotFoundError:
        return []
    return [n[: -len(suffix)] for n in names if n.endswith(suffix) and not n.startswith(".")]


def has_pending(paths: StatePaths) -> bool:
    """Whether any request waits for the monitor."""
    return bool(_ids(paths, _REQUEST_SUFFIX))


def request_fields(request_id: str, text: str | bytes, kinds: tuple[str, ...],
                   where: str) -> dict[str, Any]:
    """The JSON object of a request record whose `kind` is one of `kinds` and whose
    `request_id` is `request_id` (`where`: what names it, "file name" or "key");
    BadRequest saying what is wrong otherwise. Shared by the state dir's requests and the
    quorum store's (engine/quorum_requests.py)."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise BadRequest(request_id, f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadRequest(request_id, "not a JSON object")
    kind = data.get("kind")
    if kind not in kinds:
        raise BadRequest(request_id, f"unknown request kind {kind!r} "
                                     f"(known: {', '.join(kinds)})")
    if data.get("request_id") != request_id:
        raise BadRequest(request_id, f"its request_id does not match its {where}")
    return data


def _parse_request(request_id: str, text: str) -> Request:
    data = request_fields(request_id, text, KINDS, "file name")
    kind = data["kind"]
    return Request(request_id, kind, str(data.get("requested_by") or "unknown"),
                   str(data.get("requested_at") or ""), force=data.get("force") is True,
                   without_quorum=data.get("without_quorum") is True)


def take_pending(paths: StatePaths) -> list[Request | BadRequest]:
    """Pick up every waiting request, oldest first: each file is read, then removed."""
    taken: list[Request | BadRequest] = []
    for request_id in _ids(paths, _REQUEST_SUFFIX):
        path = paths.request_file(request_id)
        try:  # a regular file, no link, at most 64 KiB (engine/safefile.py)
            text = read_limited(path, "request", nofollow=True).decode("utf-8", "replace")
        except FileRefused as exc:
            if exc.missing:  # withdrawn meanwhile
                continue
            taken.append(BadRequest(request_id, f"unreadable ({exc})"))
        else:
            try:
                taken.append(_parse_request(request_id, text))
            except BadRequest as exc:
                taken.append(exc)
        path.unlink(missing_ok=True)
    return taken


def write_reply(paths: StatePaths, reply: Reply) -> None:
    """The monitor's answer, written atomically beside the (now removed) request."""
    ensure_private_dir(paths.requests_dir)
    atomic_write(paths.reply_file(reply.request_id),
                 json.dumps(asdict(reply), sort_keys=True) + "\n")


def read_reply(paths: StatePaths, request_id: str) -> Reply | None:
    """The reply to `request_id`, or None while there is none yet; a damaged reply is a
    FailoverError (the command cannot know what the monitor did, so it does not guess)."""
    try:
        data = json.loads(read_limited(paths.reply_file(request_id), "request", nofollow=True))
        return Reply(request_id=str(data["request_id"]), kind=str(data["kind"]),
                     accepted=bool(data["accepted"]), reason=data.get("reason"),
                     state=parse_state(data["state"]), replied_at=str(data["replied_at"]))
    except FileRefused as exc:
        if exc.missing:
            return None
        raise FailoverError(f"unreadable reply from the monitor: {exc}; check "
                            "`failover-engine status` for what it did") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FailoverError(f"{paths.reply_file(request_id)}: unreadable reply from the monitor "
                            f"({exc}); check `failover-engine status` for what it did") from None


def collect_reply(paths: StatePaths, request_id: str) -> Reply | None:
    """Read the reply and remove its file (the command that asked is its only reader)."""
    reply = read_reply(paths, request_id)
    if reply is not None:
        paths.reply_file(request_id).unlink(missing_ok=True)
    return reply


def prune_replies(paths: StatePaths, *, now: float | None = None) -> None:
    """Remove replies older than REPLY_KEEP_SECONDS that no command collected."""
    moment = time.time() if now is None else now
    for request_id in _ids(paths, _REPLY_SUFFIX):
        path: Path = paths.reply_file(request_id)
        with contextlib.suppress(FileNotFoundError):
            if moment - path.stat().st_mtime > REPLY_KEEP_SECONDS:
                path.unlink()
