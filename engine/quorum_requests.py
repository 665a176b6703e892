"""Operator requests through the quorum's store, and the leader key for restore and reset.

With a `quorum:` block (engine/quorum.py) an operator may ask on any observer:

- **On an observer that is not an actor** (`quorum.actors` does not name it), `engage
  --now`, `restore`, `reset`, `pause` and `resume` leave a request in the store and wait
  for an actor's reply (`ask`). So does `pause`/`resume` on an actor whose monitor runs
  (the pause is shared: it is written to the store under the leader key).
- **An actor's monitor** picks requests up once a cycle (`pump`, called from the monitor's
  request handling), unless another engine holds the leader key (the request is then the
  holder's to answer). It claims one by deleting it in a transaction (exactly one actor
  wins), records it in its audit log with who asked and through which observer, acts
  (`execute`) and writes the reply, fenced by its token while it holds the leader key.
- **On an actor**, `engage --now`, `restore` and `reset` keep their local path (the
  command itself, or a request to the local monitor), but `restore`, `reset`, `pause` and
  `resume` hold or take the leader key first, checked in the store (a linearizable read),
  and are refused with the reason otherwise: "restore needs the quorum's leader key:
  leader key held by obs2 (…)" or "…: quorum store unreachable: …". `engage --now` does
  the same through `engage_by_operator` (engine/quorum.py).

Keys under the policy's prefix P:

    P+"requests/<id>"  {"request_id", "kind", "requested_by", "requested_at", "via",
                        "force", "reason"}   (lease REQUEST_TTL: unhandled, it vanishes)
    P+"replies/<id>"   {"request_id", "kind", "accepted", "reason", "state",
                        "replied_at", "actor"}   (lease REPLY_TTL; the asker deletes it)
    P+"shared/pause"   {"paused", "by", "reason"}   written only while the writer's token
                        is the leader key's create revision (put fenced by the token)

`via` is the observer the request was made on; `kind` is engage, restore, reset, pause or
resume; ids are engine/monitor_requests.py's (they sort in creation order).
"""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import FailoverError
from engine.etcd import EtcdError, KeyValue
from engine.monitor_requests import BadRequest, caller, new_request_id, request_fields
from engine.quorum import (
    BUSY_STATES,
    _holder,
    _store_problem,
    engage_by_operator,
    fenced,
    mirror_engine,
)
from engine.quorum_shared import SHARED_PAUSE
from engine.state import isotime
from engine.states import ARMED, State

log = logging.getLogger("failover_engine.quorum")

KINDS = ("engage", "restore", "reset", "pause", "resume")
# The request's lease: longer than the default pick-up wait, so it is still there while
# the command waits, and gone soon after when nobody took it.
REQUEST_TTL = 30
# A reply nobody collected goes with its lease.
REPLY_TTL = 300
PICKUP_TIMEOUT = 15.0
FOLLOW_TIMEOUT = 120.0


@dataclass(frozen=True)
class StoreRequest:
    """One operator request in the store."""

    request_id: str
    kind: str
    requested_by: str
    requested_at: str
    via: str  # the observer the command ran on
    force: bool = False  # engage --now --force
    reason: str = ""  # pause --reason


@dataclass(frozen=True)
class StoreReply:
    """An actor's answer to one request."""

    request_id: str
    kind: str
    accepted: bool
    reason: str | None
    state: str
    replied_at: str
    actor: str


# -- keys and records ---------------------------------------------------------------------
def request_key(prefix: str, request_id: str = "") -> str:
    """`<prefix>requests/<id>` (the prefix of every request without an id)."""
    return f"{prefix}requests/{request_id}"


def reply_key(prefix: str, request_id: str) -> str:
    """`<prefix>replies/<id>`."""
    return f"{prefix}replies/{request_id}"


def pause_key(prefix: str) -> str:
    """`<prefix>shared/pause`: the pause every observer's monitor honours."""
    return prefix + SHARED_PAUSE


def new_request(kind: str, via: str, *, requested_by: str | None = None, force: bool = False,
                reason: str = "") -> StoreRequest:
    """A request record (who asks: the user, pid and host, unless given)."""
    if kind not in KINDS:
        raise ValueError(f"unknown request kind {kind!r} (known: {', '.join(KINDS)})")
    who = requested_by or f"{caller()} on {socket.gethostname()}"
    return StoreRequest(new_request_id(kind), kind, who, isotime(), via,
                        force=force and kind == "engage",
                        reason=reason if kind == "pause" else "")


def encode(record: StoreRequest | StoreReply) -> str:
    """The record as stored (JSON, sorted keys)."""
    return json.dumps(asdict(record), sort_keys=True)


def parse_request(request_id: str, raw: bytes) -> StoreRequest:
    """A stored request; BadRequest (engine/monitor_requests.py) when it is not one."""
    data = request_fields(request_id, raw, KINDS, "key")
    kind = data["kind"]
    for field in ("requested_by", "via", "reason"):
        if not isinstance(data.get(field, ""), str):
            raise BadRequest(request_id, f"{field} is not a string")
    return StoreRequest(request_id, kind, str(data.get("requested_by") or "unknown"),
                        str(data.get("requested_at") or ""), str(data.get("via") or "unknown"),
                        force=data.get("force") is True, reason=str(data.get("reason") or ""))


def parse_reply(raw: bytes) -> StoreReply:
    """A stored reply; FailoverError when it cannot be read (the asker does not guess)."""
    try:
        data = json.loads(raw)
        if not isinstance(data["accepted"], bool):
            raise TypeError("accepted is not a boolean")
        return StoreReply(str(data["request_id"]), str(data["kind"]), data["accepted"],
                          data.get("reason"), str(data["state"]), str(data["replied_at"]),
                          str(data.get("actor") or "an actor"))
    except (ValueError, KeyError, TypeError) as exc:
        raise FailoverError(f"unreadable reply in the quorum store ({exc}); check "
                            "`failover-engine status` on the actor for what it did") from None


def pause_document(paused: bool, by: str, reason: str = "") -> str:
    """The value of `<prefix>shared/pause`."""
    return json.dumps({"paused": paused, "by": by, "reason": reason}, sort_keys=True)


# -- the actor's side -----------------------------------------------------------------------
def _problem(exc: BaseException) -> str:
    return _store_problem(exc)  # the same words as the cycle line's


@contextlib.contextmanager
def leader_key(quorum: Any, engine: Any, kind: str) -> Iterator[int]:
    """Hold the leader key for an operator's `kind` (taking it if free), checked in the
    store, and run fenced by it (`halt` as the runner's stop); FailoverError naming the
    holder or the store's problem otherwise, before anything is done."""
    token = quorum.holds()
    try:
        current = quorum.client.get(quorum.leader_key)
    except EtcdError as exc:
        raise FailoverError(f"{kind} needs the quorum's leader key: {_problem(exc)}; nothing "
                            "was done") from None
    if token is None or current is None or current.create_revision != token:
        taken = quorum.take_leader()
        if isinstance(taken, str):
            raise FailoverError(f"{kind} needs the quorum's leader key: {taken}; nothing was "
                                "done")
        token = taken
    with fenced(quorum, engine):
        yield token


def release_if_idle(quorum: Any, engine: Any) -> None:
    """After an operator's request: mirror our engine into the shared state while we hold
    the key (a command acting without a monitor has no other mirror), then give the key
    back unless the standby serves (or may): it is kept while engaging, engaged, restoring
    or aborted (engine/quorum.py)."""
    if quorum is None or quorum.holding is None:
        return
    mirror_engine(quorum, engine)
    if str(engine.record.state) not in BUSY_STATES:
        quorum.release()


def set_pause_switch(engine: Any, paused: bool, reason: str = "") -> None:
    """This engine's pause: the `paused` switch file (kept across restarts) and the state."""
    from engine.fsutil import atomic_write
    from engine.paths import StatePaths

    switch = StatePaths(engine.policy.state_dir).paused
    try:
        if paused:
            atomic_write(switch, f"paused at {isotime()}{': ' + reason if reason else ''}\n",
                         0o644)
        else:
            switch.unlink(missing_ok=True)
    except OSError as exc:
        raise FailoverError(f"{switch}: cannot {'write' if paused else 'remove'} the pause "
                            f"switch ({exc.strerror}); check the state directory's owner, "
                            "mode and free space") from None
    if paused and engine.record.state in ARMED:
        engine.pause()
    elif not paused:
        engine.resume()


def execute(quorum: Any, engine: Any, kind: str, *, who: str, force: bool = False,
            reason: str = "", without_quorum: bool = False) -> Any:
    """Act on an operator's `kind` on this engine: the RunReport of engage and restore,
    None for the others. With a quorum, engage goes through `engage_by_operator`, the
    others hold the leader key (`leader_key`); pause and resume also write the shared
    pause, fenced by the token. Without one: what the engine did before. A refusal is a
    FailoverError; the caller gives a key taken here back (`release_if_idle`)."""
    if kind == "engage":
        return engage_by_operator(quorum, engine, lambda: engine.engage(manual=True, force=force),
                                  without_quorum=without_quorum, who=who)
    held = leader_key(quorum, engine, kind) if quorum is not None else contextlib.nullcontext()
    with held as token:
        if kind == "restore":
            return engine.restore()
        if kind == "reset":
            engine.reset()
            return None
        paused = kind == "pause"
        if quorum is None:
            set_pause_switch(engine, paused, reason)
            return None
        document = pause_document(paused, who, reason)
        try:
            written = quorum.client.put_if_created_at(
                quorum.leader_key, token, pause_key(quorum.spec.prefix), document)
        except EtcdError as exc:
            raise FailoverError(f"{kind}: the shared pause was not written: {_problem(exc)}; "
                                "nothing was done") from None
        if not written:
            raise FailoverError(f"{kind}: the leader key changed hands before the shared "
                                "pause was written; nothing was done")
        set_pause_switch(engine, paused, reason)
        return None


def audit(engine: Any, request: StoreRequest, outcome: str, actor: str, detail: str = "") -> None:
    """One audit-log line for a request taken from the store: who asked, through which
    observer, which actor acts (`phase` "request", so repair-state reads no run into it)."""
    from engine.fsutil import append_line
    from engine.paths import StatePaths

    summary = (f"{request.kind} requested by {request.requested_by} through observer "
               f"{request.via}; actor {actor}: {outcome}" + (f": {detail}" if detail else ""))
    entry = {"time": isotime(), "policy": engine.policy.name, "phase": "request",
             "step": f"{request.kind} (request {request.request_id})", "kind": "request",
             "outcome": outcome, "summary": summary, "requested_by": request.requested_by,
             "via": request.via, "request_id": request.request_id, "before": None,
             "after": None}
    append_line(StatePaths(engine.policy.state_dir).audit_log,
                json.dumps(entry, sort_keys=True), mode=0o600)


def pump(monitor: Any) -> int:
    """An actor's monitor: answer the requests waiting in the store (oldest first); how
    many it answered. Nothing on an observer that only votes, while this cycle found the
    store cut off, or while another engine holds the leader key (the holder answers)."""
    quorum = monitor.quorum
    engine = monitor.engine
    if quorum is None or not quorum.spec.is_actor or quorum.last_problem is not None \
            or engine.stop.is_set():
        return 0
    prefix = quorum.spec.prefix
    client = quorum.client
    try:
        waiting = client.range(request_key(prefix), prefix=True)
        if not waiting:
            return 0
        leader = client.get(quorum.leader_key)
    except EtcdError as exc:
        log.warning("quorum: requests not read: %s", _problem(exc))
        return 0
    mine = quorum.holds()
    if leader is not None and leader.create_revision != mine:
        log.info("quorum: %d request(s) waiting; the leader key's holder answers them",
                 len(waiting))
        return 0
    answered = 0
    for kv in sorted(waiting, key=lambda k: k.key):
        if engine.stop.is_set():
            break
        if _answer_one(quorum, engine, kv):
            answered += 1
    return answered


def _answer_one(quorum: Any, engine: Any, kv: KeyValue) -> bool:
    prefix = quorum.spec.prefix
    client = quorum.client
    request_id = kv.key.decode(errors="replace")[len(request_key(prefix)):]
    try:  # the claim: exactly one actor deletes this very key
        if not client.delete_if_created_at(kv.key, kv.create_revision):
            return False
    except EtcdError as exc:
        log.warning("quorum: request %s not claimed: %s", request_id, _problem(exc))
        return False
    me = quorum.spec.name
    try:
        request = parse_request(request_id, kv.value)
    except BadRequest as exc:
        log.error("quorum: request %s ignored: %s", request_id, exc)
        _reply(quorum, StoreReply(request_id, "unknown", False, f"bad request: {exc}",
                                  str(engine.record.state), isotime(), me))
        return True
    log.warning("quorum: request %s from %s through observer %s", request.kind,
                request.requested_by, request.via)
    audit(engine, request, "executing", me)
    who = f"{request.requested_by} through observer {request.via}"
    try:
        execute(quorum, engine, request.kind, who=who, force=request.force,
                reason=request.reason)
    except FailoverError as exc:
        log.error("quorum: request %s refused: %s", request.kind, exc)
        audit(engine, request, "refused", me, str(exc))
        engine.record.last_outcome = f"request {request.kind} refused: {exc}"
        engine.save()
        reply = StoreReply(request_id, request.kind, False, str(exc), str(engine.record.state),
                           isotime(), me)
    else:
        state = str(engine.record.state)
        why = engine.record.aborted_reason if state == State.ABORTED else None
        reply = StoreReply(request_id, request.kind, True, why, state, isotime(), me)
    _reply(quorum, reply)
    release_if_idle(quorum, engine)
    return True


def _reply(quorum: Any, reply: StoreReply) -> None:
    """Write the reply under its own lease: fenced by our token while we hold the key;
    plainly otherwise (a refusal changed nothing, and the asker must hear of it)."""
    client = quorum.client
    key = reply_key(quorum.spec.prefix, reply.request_id)
    try:
        lease = client.grant(REPLY_TTL).id
        token = quorum.holds()
        if token is not None and client.put_if_created_at(quorum.leader_key, token, key,
                                                          encode(reply), lease=lease):
            return
        client.put(key, encode(reply), lease=lease)
    except EtcdError as exc:
        log.error("quorum: the reply to request %s was not written: %s", reply.request_id,
                  _problem(exc))


# -- the asking side ------------------------------------------------------------------------
def ask(quorum: Any, kind: str, *, force: bool = False, reason: str = "",
        pickup: float = PICKUP_TIMEOUT, follow: float = FOLLOW_TIMEOUT,
        say: Any = print) -> StoreReply:
    """Leave a request in the store and wait for an actor's reply; FailoverError (exit 1)
    when the store cannot be reached, no actor picks it up within `pickup` seconds (it is
    withdrawn: nothing was done), or no reply comes within `follow` seconds."""
    spec = quorum.spec
    client = quorum.client
    request = new_request(kind, spec.name, force=force, reason=reason)
    key = request_key(spec.prefix, request.request_id)
    actors = ", ".join(spec.actors) or "none"
    try:
        lease = client.grant(max(REQUEST_TTL, int(pickup) + 5)).id
        client.put(key, encode(request), lease=lease)
        created = client.get(key)
    except EtcdError as exc:
        raise FailoverError(f"{kind} not asked: {_problem(exc)}; nothing was done") from None
    try:
        say(f"asked the quorum's actors ({actors}) through the store to {kind}; waiting up to "
            f"{pickup:g}s for one to pick the request up", flush=True)
        _wait_pickup(quorum, request, key, created, pickup)
        say(f"picked up; waiting up to {follow:g}s for the actor's reply", flush=True)
        return _wait_reply(quorum, request, follow)
    finally:
        with contextlib.suppress(EtcdError):
            client.revoke(lease)


def _wait_pickup(quorum: Any, request: StoreRequest, key: str, created: KeyValue | None,
                 pickup: float) -> None:
    client = quorum.client
    deadline = time.monotonic() + pickup
    problem = ""
    while True:
        try:
            if client.get(key) is None:
                return
            problem = ""
        except EtcdError as exc:
            problem = f" (last try: {_problem(exc)})"
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    withdrawn = False
    with contextlib.suppress(EtcdError):
        withdrawn = created is None or client.delete_if_created_at(key, created.create_revision)
    if not withdrawn:
        return  # an actor took it in the last moment
    raise FailoverError(
        f"no actor ({', '.join(quorum.spec.actors) or 'none'}) picked up the {request.kind} "
        f"request within {pickup:g}s{problem}{_holder_note(quorum)}; nothing was done; is an "
        "actor's monitor (`failover-engine run`) running and reaching the store?")


def _holder_note(quorum: Any) -> str:
    try:
        current = quorum.client.get(quorum.leader_key)
    except EtcdError:
        return ""
    if current is None:
        return "; the leader key is free"
    return f"; leader key held by {_holder(current.value)} (token {current.create_revision})"


def _wait_reply(quorum: Any, request: StoreRequest, follow: float) -> StoreReply:
    client = quorum.client
    key = reply_key(quorum.spec.prefix, request.request_id)
    deadline = time.monotonic() + follow
    while True:
        with contextlib.suppress(EtcdError):  # a store briefly cut off: keep asking
            found = client.get(key)
            if found is not None:
                with contextlib.suppress(EtcdError):
                    client.delete(key)
                return parse_reply(found.value)
        if time.monotonic() >= deadline:
            raise FailoverError(
                f"an actor picked up the {request.kind} request but did not reply within "
                f"{follow:g}s; it may still be acting: check `failover-engine status` on the "
                f"actors ({', '.join(quorum.spec.actors)})")
        time.sleep(0.3)
