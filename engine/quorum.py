"""Several observers decide together: verdicts and a leader key in etcd (the `quorum:` block).

Without a `quorum:` block nothing here runs and one observer decides alone. With it:

- **Verdicts.** Every cycle each observer publishes its verdict under
  `<prefix>observers/<name>` — `{"verdict": ok|failed|inconclusive, "failures": n,
  "prolonged": bool, "state": its engine's state}` — attached to its own short lease (3 ×
  the monitor interval, at least 3 s), refreshed every cycle: the verdict vanishes when
  that observer dies or is cut off from the store.
- **Freshness** comes from the etcd lease and the reader's own monotonic clock, never
  from comparing wall clocks across hosts: a verdict counts only while its key exists (read
  linearizably) and its mod revision changed within the verdict TTL by the reader's clock
  (a key first seen counts as changed then).
- **Agreement.** An actor (a name in `actors`) engages automatically only when its own
  count says the outage is prolonged and at least `engage_when.down` fresh observers, itself
  included, publish `prolonged: true`; otherwise the monitor says "quorum not reached
  (1/2)" and does not engage.
- **Leader key.** It then tries a create-if-absent transaction on `<prefix>leader` with a
  lease of `lease_ttl`; the key's create revision is the fencing token. Only the holder
  engages. A background thread renews the lease every third of its TTL; the holder's own
  deadline is the monotonic time at which its last successful renewal was *sent* + TTL −
  a margin (an etcd leader change resets leases to their full TTL, so etcd's count is not
  the one to trust). Past the deadline, or when the lease is found gone, `halt` is set:
  the runner stops before its next step (the journal keeps where it stopped).
- The holder keeps the key while the standby is busy (engaging, engaged, aborted), so no
  other actor engages a second time; it lets it go when the engine is armed again. An
  actor also refuses while a fresh verdict says another observer's engine is busy. An
  engage stopped part-way resumes (in a cycle, also after a restart) only once this
  engine holds the leader key again.
- **Store unreachable or majority lost:** nobody engages automatically; the cycle line
  (hence `status` and the log) says "quorum store unreachable: …" with each endpoint's
  problem, and the failover is *disarmed* (engine/arming.py) with STORE_DISARMED as the
  reason: `check engine` WARNING, the disarmed metric, the disarmed event (once).

- **An operator's `engage --now`** (`engage_by_operator`) takes the leader key too and
  runs fenced by it; `--without-quorum` acts without it and says so in the log and the
  audit log (`"kind": "quorum", "outcome": "without-quorum"`).

- **Shared state** (engine/quorum_shared.py): while it holds the leader key, the holder
  mirrors its engine (state, journal position, hold-down left, last transition) into
  `<prefix>shared/state` on every transition, every journal save (each step done: the
  runner's `after_save`, set by `fenced()`) and every cycle, through a transaction
  fenced by its token (`write_shared`; refused = deposed: `halt`), and writes its final
  armed state before it lets the key go. Every observer reads the prefix once a cycle
  (`observe()`): the monitor leaves that view in `quorum.json` for `status` and the
  quorum metrics, and an actor also refuses while the shared state says another engine
  is busy or held down after its restore, or `<prefix>shared/pause` says paused.
- A policy reload applies a changed `quorum:` block (the old Quorum closed, a new one
  built), except while this engine holds the key in a busy state: then once armed.

Requests through the store and `restore`/`reset`/`pause` holding the key live in
engine/quorum_requests.py; where steps may run (`x-runs-on`) in engine/runs_on.py.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.durations import parse_duration
from engine.errors import FailoverError
from engine.etcd import (
    DEFAULT_TIMEOUT,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    KeyValue,
    Security,
)
from engine.quorum_shared import SHARED_PAUSE, SHARED_STATE, SharedPause, SharedState
from engine.states import STANDBY_BUSY, State

log = logging.getLogger("failover_engine.quorum")
T = TypeVar("T")

DEFAULT_LEASE_TTL = 30.0
# The verdict lease: this many monitor intervals (a verdict missed twice is still there).
VERDICT_INTERVALS = 3
MIN_VERDICT_TTL = 3
# Engine states in which a standby is (or may be) serving: another actor must not engage.
BUSY_STATES = tuple(str(state) for state in (*STANDBY_BUSY, State.ABORTED))


@dataclass(frozen=True)
class QuorumSpec:
    """The policy's `quorum:` block, paths absolute, durations in seconds."""

    endpoints: list[str]
    name: str
    observers: list[str]
    actors: list[str]
    down: int
    prefix: str
    timeout: float = DEFAULT_TIMEOUT
    lease_ttl: float = DEFAULT_LEASE_TTL
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    user: str | None = None
    password_secret: str | None = None

    @property
    def is_actor(self) -> bool:
        """Whether this observer may engage (the others only vote)."""
        return self.name in self.actors


def quorum_spec(policy: Any) -> QuorumSpec | None:
    """The policy's quorum block (None without one); relative paths against its directory."""
    raw = (getattr(policy, "raw", None) or {}).get("quorum")
    if not isinstance(raw, dict):
        return None
    base = Path(policy.path).parent

    def path(key: str) -> Path | None:
        value = raw.get(key)
        if not value:
            return None
        candidate = Path(str(value)).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    return QuorumSpec(
        endpoints=list(raw["endpoints"]), name=raw["name"], observers=list(raw["observers"]),
        actors=list(raw["actors"]), down=int(raw["engage_when"]["down"]),
        prefix=raw.get("prefix") or f"/failover-engine/{policy.name}/",
        timeout=parse_duration(raw.get("timeout", DEFAULT_TIMEOUT)),
        lease_ttl=parse_duration(raw.get("lease_ttl", DEFAULT_LEASE_TTL)),
        ca=path("ca"), client_cert=path("client_cert"), client_key=path("client_key"),
        user=raw.get("user"), password_secret=raw.get("password_secret"))


def quorum_reference_problems(raw: dict[str, Any], interval: Any = None
                              ) -> list[tuple[tuple[Any, ...], str]]:
    """What the schema cannot say about a quorum block: (path inside it, one line).
    `interval` is the monitor's (as written): a store call cut off must not make a cycle
    overrun it, or `check engine` would say the monitor is not running."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    try:
        every = parse_duration(interval) if interval is not None else None
        timeout = parse_duration(raw.get("timeout", DEFAULT_TIMEOUT))
    except (ValueError, TypeError, FailoverError):
        every = timeout = None  # the schema check reports a bad duration
    if every is not None and timeout is not None and timeout * 2 > every:
        problems.append((("timeout",), f"{raw.get('timeout', DEFAULT_TIMEOUT)} is too long "
                                       f"for a monitor interval of {interval}: at most half "
                                       "the interval (a cycle waits for the store)"))
    listed = raw.get("observers")
    observers: list[Any] = listed if isinstance(listed, list) else []
    known = ", ".join(str(o) for o in observers) or "none"
    name = raw.get("name")
    if isinstance(name, str) and observers and name not in observers:
        problems.append((("name",), f"observer {name!r} is not one of quorum.observers "
                                    f"({known}); add it there"))
    for index, actor in enumerate(raw.get("actors") or []):
        if isinstance(actor, str) and observers and actor not in observers:
            problems.append((("actors", index), f"actor {actor!r} is not one of "
                                                f"quorum.observers ({known})"))
    down = (raw.get("engage_when") or {}).get("down") \
        if isinstance(raw.get("engage_when"), dict) else None
    if isinstance(down, int) and observers and down > len(observers):
        problems.append((("engage_when", "down"), f"{down} observers can never agree: only "
                                                  f"{len(observers)} are listed"))
    if raw.get("client_cert") and raw.get("user"):
        problems.append((("user",), "choose a client certificate or a user/password: etcd "
                                    "refuses both together on its JSON gateway"))
    https = [e for e in raw.get("endpoints") or [] if isinstance(e, str)
             and e.startswith("https://")]
    plain = [e for e in raw.get("endpoints") or [] if isinstance(e, str)
             and e.startswith("http://")]
    if https and plain:
        problems.append((("endpoints",), "mix of http:// and https:// endpoints; use one"))
    if raw.get("user") and plain:
        problems.append((("user",), "a password over plain http:// would travel in clear; "
                                    "use https:// endpoints"))
    return problems


@dataclass(frozen=True)
class Count:
    """What the observers say now: how many fresh ones call the outage prolonged, and
    which fresh ones report a busy standby (engaging, engaged, restoring, aborted)."""

    down: int
    needed: int
    fresh: tuple[str, ...]
    busy: tuple[tuple[str, str], ...] = ()

    @property
    def reached(self) -> bool:
        """Enough fresh observers agree."""
        return self.down >= self.needed

    def line(self) -> str:
        """`quorum reached (2/2)` or `quorum not reached (1/2)`."""
        word = "reached" if self.reached else "not reached"
        return f"quorum {word} ({self.down}/{self.needed})"


@dataclass(frozen=True)
class Decision:
    """May this engine engage automatically now, and why (or why not)."""

    allowed: bool
    reason: str
    token: int | None = None


@dataclass
class Holding:
    """The leader key while we hold it: token, lease, own monotonic deadline."""

    token: int
    lease: int
    ttl: float
    deadline: float


class Halt(threading.Event):
    """`Quorum.halt`: set when we must stop acting — and set, whatever the renewer thread
    has done yet, as soon as our own deadline has passed. A holder frozen (SIGSTOP, a VM
    paused) past its deadline may be woken in the runner's thread before the renewer's;
    the runner's check before each step must see the deadline then, not a moment later."""

    def __init__(self, past_deadline: Callable[[], bool]) -> None:
        super().__init__()
        self._past_deadline = past_deadline

    def is_set(self) -> bool:
        return super().is_set() or self._past_deadline()


@dataclass(frozen=True)
class Observation:
    """One linearizable read of the whole prefix: the count, the shared state and pause,
    the leader key; `at` and `shared_seen` are on the reader's own monotonic clock."""

    count: Count
    at: float
    shared: SharedState | None = None
    shared_seen: float | None = None
    shared_problem: str | None = None  # a value that is not a shared state
    pause: SharedPause | None = None
    leader: KeyValue | None = None

    def hold_down_left(self, now: float) -> float | None:
        """Seconds of the holder's hold-down left by our clock: what it wrote, less the
        time since we saw that write (never a wall clock from another host)."""
        if self.shared is None or self.shared.hold_down_left is None \
                or self.shared_seen is None:
            return None
        return max(0.0, self.shared.hold_down_left - (now - self.shared_seen))


class Quorum:
    """One observer's view of the store; see the module docstring. The monitor calls
    `publish()` every cycle and `may_engage()` when its own count says prolonged."""

    def __init__(self, spec: QuorumSpec, *, interval: float, password: str | None = None,
                 stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.client = EtcdClient(spec.endpoints, timeout=spec.timeout, security=Security(
            ca=spec.ca, cert=spec.client_cert, key=spec.client_key, user=spec.user,
            password=password))
        self.verdict_ttl = max(MIN_VERDICT_TTL, math.ceil(VERDICT_INTERVALS * interval))
        self.margin = min(spec.lease_ttl / 3, max(spec.timeout, spec.lease_ttl / 10))
        self.clock = clock
        self.stop = stop or threading.Event()
        # Set when we must stop acting (deadline, lease gone); see Halt.
        self.halt = Halt(self._past_deadline)
        self.holding: Holding | None = None
        self._verdict_lease: int | None = None
        self._seen: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self.last_problem: str | None = None
        # The last read of the prefix (None until one succeeds) and why the latest failed.
        self.observation: Observation | None = None
        self.observe_problem: str | None = "the store was not read yet"
        self._shared_seen: tuple[int, float] | None = None

    # -- keys ---------------------------------------------------------------------------
    @property
    def leader_key(self) -> str:
        return self.spec.prefix + "leader"

    def verdict_key(self, name: str) -> str:
        return f"{self.spec.prefix}observers/{name}"

    # -- verdicts -----------------------------------------------------------------------
    def publish(self, verdict: str, failures: int, prolonged: bool, *,
                state: str | None = None) -> str | None:
        """Publish this cycle's verdict (and our engine's state) under our own lease; None,
        or the problem (one line, e.g. "quorum store unreachable: …") for the cycle line."""
        value = json.dumps({"verdict": verdict, "failures": failures, "prolonged": prolonged,
                            "state": state})
        try:
            if self._verdict_lease is not None:
                try:
                    self.client.keepalive(self._verdict_lease)
                except EtcdUnavailable:
                    raise
                except EtcdError:  # expired while we were cut off: a new one
                    self._verdict_lease = None
            if self._verdict_lease is None:
                self._verdict_lease = self.client.grant(self.verdict_ttl).id
            self.client.put(self.verdict_key(self.spec.name), value, lease=self._verdict_lease)
        except EtcdError as exc:
            self.last_problem = _store_problem(exc)
            return self.last_problem
        self.last_problem = None
        return None

    def count(self) -> Count:
        """The fresh observers' verdicts, read linearizably (EtcdError when it cannot)."""
        under = (self.spec.prefix + "observers/").encode()
        return self._count(self.client.range(under, prefix=True), self.clock())

    def _count(self, found: list[KeyValue], now: float) -> Count:
        under = (self.spec.prefix + "observers/").encode()
        down, fresh, busy = 0, [], []
        present = set()
        for kv in found:
            if not kv.key.startswith(under):
                continue
            name = kv.key[len(under):].decode(errors="replace")
            if name not in self.spec.observers:
                continue  # an unknown name does not vote
            present.add(name)
            seen = self._seen.get(name)
            if seen is None or seen[0] != kv.mod_revision:
                seen = self._seen[name] = (kv.mod_revision, now)
            if now - seen[1] > self.verdict_ttl:
                continue  # not renewed for a whole verdict TTL by our clock: stale
            fresh.append(name)
            try:
                document = json.loads(kv.value)
            except ValueError:
                continue
            if not isinstance(document, dict):
                continue
            if document.get("prolonged") is True:
                down += 1
            if document.get("state") in BUSY_STATES and name != self.spec.name:
                busy.append((name, str(document["state"])))
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return Count(down, self.spec.down, tuple(sorted(fresh)), tuple(sorted(busy)))

    def observe(self) -> Observation | None:
        """Read the whole prefix once, linearizably: the verdicts, the leader key, the
        shared state and pause (kept as `observation`). None when the store cannot be read
        (`observe_problem` says why; this cycle's publish already failing counts, so a cut
        off store is not waited for twice in one cycle)."""
        if self.last_problem is not None:
            self.observe_problem = self.last_problem
            return None
        try:
            found = self.client.range(self.spec.prefix, prefix=True)
        except EtcdError as exc:
            self.observe_problem = _store_problem(exc)
            return None
        now = self.clock()
        keys = {kv.key: kv for kv in found}
        shared_kv = keys.get((self.spec.prefix + SHARED_STATE).encode())
        pause_kv = keys.get((self.spec.prefix + SHARED_PAUSE).encode())
        shared = SharedState.parse(shared_kv.value) if shared_kv else None
        seen: float | None = None
        if shared_kv is not None:
            if self._shared_seen is None or self._shared_seen[0] != shared_kv.mod_revision:
                self._shared_seen = (shared_kv.mod_revision, now)
            seen = self._shared_seen[1]
        else:
            self._shared_seen = None
        self.observation = Observation(
            count=self._count(found, now), at=now, shared=shared, shared_seen=seen,
            shared_problem=(f"{self.spec.prefix}{SHARED_STATE} holds no shared state "
                            "this engine can read") if shared_kv and shared is None else None,
            pause=SharedPause.parse(pause_kv.value) if pause_kv else None,
            leader=keys.get(self.leader_key.encode()))
        self.observe_problem = None
        return self.observation

    # -- the shared state ---------------------------------------------------------------
    def write_shared(self, state: str, *, run: dict[str, Any] | None = None,
                     hold_down_left: float | None = None, reason: str | None = None,
                     changed_by: str | None = None) -> bool | None:
        """Mirror our engine into `<prefix>shared/state`, fenced by our token. True when
        written; False when the store refused it because the leader key no longer carries
        our token: we were deposed, `halt` is set and no step runs after this; None when we
        do not hold the key or the store could not be reached (the renewer's deadline
        decides then)."""
        with self._lock:
            holding = self.holding
        if holding is None:
            return None
        value = SharedState(state=state, holder=self.spec.name, token=holding.token,
                            changed_by=changed_by or self.spec.name, run=run,
                            hold_down_left=hold_down_left, reason=reason)
        try:
            written = self.client.put_if_created_at(self.leader_key, holding.token,
                                                    self.spec.prefix + SHARED_STATE,
                                                    value.to_json())
        except EtcdError as exc:
            log.warning("quorum: shared state not written (%s)", _store_problem(exc))
            return None
        if not written:
            self._lose(f"deposed: the store refused the fenced write of the shared state (the "
                       f"leader key no longer carries token {holding.token})")
            return False
        return True

    def snapshot(self) -> dict[str, Any]:
        """What the monitor leaves for `status` and the metrics (engine/quorum_shared.py
        reads it): the store reachable, the count, the leader key, the shared state, the
        shared pause; durations as seconds left by our clock when taken."""
        now = self.clock()
        observation = self.observation if self.observe_problem is None else None
        with self._lock:
            holding = self.holding
        held = holding is not None and self.holds() is not None
        leader = observation.leader if observation else None
        shared: dict[str, Any] = {"known": observation is not None,
                                  "problem": self.observe_problem}
        if observation is not None and observation.shared_problem:
            shared.update(known=False, problem=observation.shared_problem)
        elif observation is not None and observation.shared is not None:
            shared.update(json.loads(observation.shared.to_json()))
            shared["hold_down_left"] = observation.hold_down_left(now)
        count = observation.count if observation else None
        pause = observation.pause if observation else None
        return {
            "name": self.spec.name, "actor": self.spec.is_actor, "timeout": self.spec.timeout,
            "store": {"reachable": observation is not None, "problem": self.observe_problem},
            "agreeing": count.down if count else None,
            "fresh": list(count.fresh) if count else None,
            "leader": {"held": held,
                       "token": holding.token if held and holding else
                       (leader.create_revision if leader else None),
                       "holder": self.spec.name if held else
                       (_holder(leader.value) if leader else None),
                       "deadline_left": round(holding.deadline - now, 3)
                       if held and holding else None},
            "shared": shared,
            "pause": {"active": pause.paused, "by": pause.by, "reason": pause.reason}
            if pause else None,
        }

    # -- the leader key -----------------------------------------------------------------
    def may_engage(self) -> Decision:
        """Called when our own count says the outage is prolonged: may we engage now?"""
        if not self.spec.is_actor:
            return Decision(False, f"observer {self.spec.name} only votes (not one of "
                                   "quorum.actors)")
        if self.last_problem is not None:
            # This cycle's publish already found the store cut off: do not wait for it a
            # second time in the same cycle.
            return Decision(False, self.last_problem)
        observation = self.observe()
        if observation is None:
            return Decision(False, self.observe_problem or "quorum store error")
        count = observation.count
        if not count.reached:
            return Decision(False, count.line())
        pause = observation.pause
        if pause is not None and pause.paused:
            return Decision(False, f"{count.line()}; paused through the quorum store by "
                                   f"{pause.by or 'unknown'} ({pause.reason or 'no reason'})")
        if count.busy:
            # Another observer's engine already engages or serves from the standby: a
            # second engage must not start.
            who = ", ".join(f"{n} is {s}" for n, s in count.busy)
            return Decision(False, f"{count.line()}; {who}")
        shared = observation.shared
        if observation.shared_problem is not None:
            return Decision(False, f"{count.line()}; {observation.shared_problem}")
        if shared is not None and shared.holder != self.spec.name:
            # The holder's mirror outlives its verdict and its lease: an engine that
            # engaged and then died still serves from the standby.
            if shared.busy:
                return Decision(False, f"{count.line()}; shared state: {shared.state} by "
                                       f"{shared.holder} (token {shared.token})")
            left = observation.hold_down_left(self.clock())
            if left:
                return Decision(False, f"{count.line()}; hold-down after the restore by "
                                       f"{shared.holder}: {left:.0f}s left")
        held = self.holds()
        if held is not None:
            return Decision(True, f"{count.line()}; leader key held (token {held})", held)
        taken = self.take_leader()
        if isinstance(taken, str):
            return Decision(False, f"{count.line()}; {taken}")
        return Decision(True, f"{count.line()}; leader key taken (token {taken})", taken)

    def take_leader(self) -> int | str:
        """Try for the leader key: our fencing token, or why not (one line)."""
        # The deadline counts from before the grant is sent: etcd's countdown cannot have
        # started earlier than that.
        sent = self.clock()
        try:
            lease = self.client.grant(max(1, math.ceil(self.spec.lease_ttl)))
            owner = json.dumps({"name": self.spec.name, "host": socket.gethostname(),
                                "pid": os.getpid()})
            result = self.client.create(self.leader_key, owner, lease=lease.id)
        except EtcdError as exc:
            return _store_problem(exc)
        if not result.created or result.current is None:
            with contextlib.suppress(EtcdError):  # else it expires on its own
                self.client.revoke(lease.id)
            holder = _holder(result.current.value if result.current else b"")
            token = result.current.create_revision if result.current else 0
            return f"leader key held by {holder} (token {token})"
        with self._lock:
            self.holding = Holding(result.current.create_revision, lease.id, float(lease.ttl),
                                   sent + lease.ttl - self.margin)
            self.halt.clear()
        self._start_renewer()
        log.warning("quorum: leader key taken (token %d, lease %ds)",
                    result.current.create_revision, lease.ttl)
        return result.current.create_revision

    def holds(self) -> int | None:
        """Our token while our own deadline has not passed, else None."""
        with self._lock:
            holding = self.holding
        if holding is None or self.halt.is_set() or self.clock() >= holding.deadline:
            return None
        return holding.token

    def renew(self) -> bool:
        """Refresh the leader lease once; True while we still hold it (see `halt`)."""
        with self._lock:
            holding = self.holding
        if holding is None:
            return False
        sent = self.clock()
        try:
            ttl = self.client.keepalive(holding.lease)
        except EtcdUnavailable as exc:
            if self.clock() >= holding.deadline:
                self._lose(f"no renewal before the deadline ({_store_problem(exc)})")
                return False
            return True
        except EtcdError as exc:
            self._lose(f"the leader lease is gone ({exc})")
            return False
        with self._lock:
            if self.holding is holding:
                holding.deadline = max(holding.deadline, sent + ttl - self.margin)
        return True

    def _lose(self, why: str) -> None:
        with self._lock:
            holding, self.holding = self.holding, None
        self.halt.set()
        if holding is not None:
            log.error("quorum: leader key lost (token %d): %s; no step runs after this",
                      holding.token, why)

    def _start_renewer(self) -> None:
        if self._renewer is not None and self._renewer.is_alive():
            return
        self._renewer = threading.Thread(target=self._renew_loop, name="quorum-lease",
                                         daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        """Renew every third of the TTL; set `halt` at our own deadline at the latest."""
        while True:
            with self._lock:
                holding = self.holding
            if holding is None:
                return
            if self.stop.is_set():
                self.halt.set()  # the engine is stopping: the runner stops too
                return
            now = self.clock()
            if now >= holding.deadline:
                self._lose("our own deadline passed (last renewal + TTL - margin)")
                return
            due = holding.deadline - (holding.ttl - self.margin) + holding.ttl / 3
            if now >= due and not self.renew():
                return
            self.stop.wait(max(0.05, min(0.2, holding.deadline - now)))

    def _past_deadline(self) -> bool:
        """Our own deadline has passed while we (still) hold the key: no step may start.
        Read without the lock: `holding` is replaced whole, never changed in place,
        except its deadline moved later by a renewal."""
        holding = self.holding
        return holding is not None and self.clock() >= holding.deadline

    def release(self) -> None:
        """Give the leader key back (the engine is armed again)."""
        with self._lock:
            holding, self.holding = self.holding, None
        if holding is None:
            return
        try:
            self.client.delete_if_created_at(self.leader_key, holding.token)
            self.client.revoke(holding.lease)
        except EtcdError as exc:
            log.warning("quorum: leader key not released (it expires on its own): %s", exc)
        log.info("quorum: leader key released (token %d)", holding.token)

    def close(self) -> None:
        """On shutdown: withdraw our verdict (its lease) at once. The leader key is kept
        until its lease ends, so no other actor engages a second time meanwhile."""
        if self._verdict_lease is not None:
            with contextlib.suppress(EtcdError):  # else it expires within the verdict TTL
                self.client.revoke(self._verdict_lease)
            self._verdict_lease = None


def build_quorum(policy: Any, stop: threading.Event | None = None) -> Quorum | None:
    """The Quorum for the policy's block (None without one); reads the password secret."""
    spec = quorum_spec(policy)
    if spec is None:
        return None
    password = store_password(policy, spec)
    return Quorum(spec, interval=policy.monitor.interval, password=password, stop=stop)


def store_password(policy: Any, spec: QuorumSpec) -> str | None:
    """The etcd user's password from the policy's `password_secret` (None without one);
    the secret file is checked (owner, mode) and read with a size limit. OSError or
    FailoverError when it cannot be read."""
    if not spec.password_secret:
        return None
    from engine.safefile import read_limited
    from engine.secrets import SecretStore

    path = SecretStore(policy).path(spec.password_secret)
    return read_limited(path, "secret").decode(errors="replace").strip()


STORE_DISARMED = ("the quorum store (etcd) is unreachable or has lost its majority: nobody "
                  "engages automatically")


def disarm_reason(note: str) -> str | None:
    """The monitor's disarm reason for a cycle's quorum note (stable while it lasts, so the
    disarmed event goes out once): the store cannot be reached; None otherwise."""
    return STORE_DISARMED if note.startswith("quorum store ") else None


def _store_problem(exc: BaseException) -> str:
    if isinstance(exc, EtcdUnavailable):
        return f"quorum store unreachable: {str(exc).removeprefix('etcd unreachable: ')}"
    return f"quorum store error: {exc}"


def _holder(value: bytes) -> str:
    try:
        document = json.loads(value)
    except ValueError:
        return "another engine"
    if isinstance(document, dict) and isinstance(document.get("name"), str):
        return f"{document['name']} (pid {document.get('pid')} on {document.get('host')})"
    return "another engine"


def mirror_engine(quorum: Quorum, engine: Any, transition: str | None = None) -> bool | None:
    """Mirror `engine` (its state, journal position, hold-down left and the last transition
    or abort reason) into the store's shared state, fenced by our token: what the monitor
    does on every transition and cycle while it holds the key; a command that holds the
    key without a monitor may call it too. See `Quorum.write_shared` for the answer."""
    from engine.clock import remaining
    from engine.quorum_shared import journal_position
    from engine.state import parse_isotime, utcnow

    record, policy = engine.record, engine.policy
    run = journal_position(record.run, record.last_run,
                           {"engage": [s.name for s in policy.engage],
                            "restore": [s.name for s in policy.restore]})
    left = remaining(record.monotonic, "hold_down_until",
                     parse_isotime(record.hold_down_until), utcnow())
    reason = transition or f"{record.state} since {record.since}"
    if record.state == State.ABORTED and record.aborted_reason:
        reason = f"{reason}: {record.aborted_reason}"
    return quorum.write_shared(str(record.state), run=run,
                               hold_down_left=round(left, 3) if left and left > 0 else None,
                               reason=reason)


def engage_by_operator(quorum: Quorum | None, engine: Any, run: Callable[[], T], *,
                       without_quorum: bool, who: str) -> T:
    """An operator's `engage --now` with a quorum block: it takes (or keeps) the leader key
    and runs fenced by it (`halt` as the runner's stop); with `--without-quorum` it runs
    without the key — the day etcd itself is gone — and says so in the log and the audit
    log. Without a quorum block: just `run()`. A key held elsewhere or a store that cannot
    be reached is a FailoverError naming the way out."""
    if quorum is None:
        return run()
    if without_quorum:
        log.warning("quorum: engage --now --without-quorum by %s: acting without the "
                    "quorum's leader key", who)
        _audit_without_quorum(engine.policy, who)
        return run()
    if quorum.holds() is None:
        taken = quorum.take_leader()
        if isinstance(taken, str):
            raise FailoverError(f"engage needs the quorum's leader key: {taken}; nothing was "
                                "done (`engage --now --without-quorum` acts without it, for "
                                "the day etcd itself is gone)")
    with fenced(quorum, engine):
        return run()


@contextlib.contextmanager
def fenced(quorum: Quorum, engine: Any, mirror: Callable[[], object] | None = None
           ) -> Iterator[None]:
    """Run the engine's steps fenced by our leader key: the runner's stop is `halt` (our
    deadline passed, the lease gone, a fenced write refused) and every journal save is
    mirrored into the shared state by a transaction that checks the key still carries our
    token, so a deposed holder stops before its next step. `mirror` defaults to
    `mirror_engine(quorum, engine)`."""
    runner = engine.runner
    saved_stop, saved_after = runner.stop, runner.after_save
    runner.stop = quorum.halt
    runner.after_save = mirror or (lambda: mirror_engine(quorum, engine))
    try:
        yield
    finally:
        runner.stop, runner.after_save = saved_stop, saved_after


def _audit_without_quorum(policy: Any, who: str) -> None:
    """One audit-log line: this engage did not ask the quorum (engine/runner.py's fields)."""
    from engine.fsutil import append_line
    from engine.paths import StatePaths
    from engine.state import isotime

    entry = {"time": isotime(), "policy": policy.name, "phase": "engage",
             "step": "engage (quorum)", "kind": "quorum", "outcome": "without-quorum",
             "summary": f"engage --now --without-quorum by {who}: the quorum's leader key "
                        "was not taken", "before": None, "after": None}
    append_line(StatePaths(policy.state_dir).audit_log, json.dumps(entry, sort_keys=True),
                mode=0o600)
