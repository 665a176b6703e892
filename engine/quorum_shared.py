"""The shared state in etcd (issue 14): what the leader key's holder mirrors, what every
observer reads back, and the small quorum snapshot the monitor leaves for `status` and
the metrics.

Keys under the policy's quorum prefix P (the layout every part of issue 14 uses):

- `P + "shared/state"`: `{"state", "holder", "token", "changed_by", "run", "hold_down_left",
  "reason"}`, written only by the holder of `P + "leader"` through a transaction fenced by
  its token (engine/etcd.py `put_if_created_at`): on every transition and every cycle while
  it holds the key, and once more, armed, right before it gives the key back. `run` is the
  journal position (`{"id", "phase", "steps_done", "steps", "last_step", "last_step_name",
  "finished", "ok"}`); `hold_down_left` is the seconds of hold-down left *when written*:
  no wall clock is compared across hosts, a reader counts down from the moment it saw the
  key's mod revision change, on its own monotonic clock.
- `P + "shared/pause"`: `{"paused", "by", "reason"}`, written (fenced) by the pause
  request handler (engine/quorum_requests.py); read here: a shared pause stops automatic
  engage on every observer.

This module does not talk to etcd (engine/quorum.py does) and imports nothing heavy:
`status` and the metrics read the snapshot through it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

from engine.states import STANDBY_BUSY, State

SHARED_STATE = "shared/state"
SHARED_PAUSE = "shared/pause"
SNAPSHOT_FORMAT = 1
# Engine states in which a standby is (or may be) serving: no other actor may engage.
BUSY = tuple(str(state) for state in (*STANDBY_BUSY, State.ABORTED))
# A snapshot older than this many monitor intervals (plus the store timeout; as `check
# engine` judges the monitor alive) is no longer what the store says: `status` and the
# metrics then call the shared state unknown. Never less than STALE_FLOOR seconds: a cycle
# with a sub-second interval can take longer than its interval.
STALE_INTERVALS = 3
STALE_FLOOR = 5.0


@dataclass(frozen=True)
class SharedState:
    """The holder's engine as it mirrored it into the store (see the module docstring)."""

    state: str
    holder: str
    token: int
    changed_by: str
    run: dict[str, Any] | None = None
    hold_down_left: float | None = None
    reason: str | None = None

    def to_json(self) -> str:
        """The value written under `shared/state`."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, value: bytes | str) -> SharedState | None:
        """The stored value, or None when it is not one (a reader never guesses)."""
        document = _object(value)
        if document is None:
            return None
        fields = _fields(cls, document)
        if not isinstance(fields.get("state"), str) or not isinstance(fields.get("holder"), str) \
                or not _is_int(fields.get("token")):
            return None
        fields.setdefault("changed_by", fields["holder"])
        if not isinstance(fields.get("run"), dict | None):
            fields["run"] = None
        left = fields.get("hold_down_left")
        if not (left is None or (_is_number(left) and left == left)):  # NaN != NaN
            fields["hold_down_left"] = None
        return cls(**fields)

    @property
    def busy(self) -> bool:
        """The holder's standby is (or may be) serving: engaging, engaged, restoring, aborted."""
        return self.state in BUSY


@dataclass(frozen=True)
class SharedPause:
    """`shared/pause` as the pause request handler wrote it."""

    paused: bool
    by: str | None = None
    reason: str | None = None

    @classmethod
    def parse(cls, value: bytes | str) -> SharedPause | None:
        """The stored value, or None when it is not one."""
        document = _object(value)
        if document is None:
            return None
        fields = _fields(cls, document)
        # The flag is the first field (its name is also a state's name: not spelled here).
        flag = fields.pop(dataclasses.fields(cls)[0].name, None)
        if not isinstance(flag, bool):
            return None
        return cls(flag, *(str(fields[k]) if fields.get(k) is not None else None
                           for k in ("by", "reason")))


def journal_position(run: dict[str, Any] | None, last_run: dict[str, Any] | None,
                     names: dict[str, list[str]]) -> dict[str, Any] | None:
    """Where the engage/restore journal stands: the run in progress, else the last one.
    `names` maps a phase to its step names (the policy's engage and restore lists)."""
    current = run if isinstance(run, dict) and run.get("phase") in names else None
    source = current or (last_run if isinstance(last_run, dict) else None)
    if source is None:
        return None
    phase = str(source.get("phase"))
    steps = names.get(phase, [])
    done: list[int] = []
    raw = source.get("steps")
    if isinstance(raw, dict):  # the journal of a run in progress: {"0": entry, ...}
        done = sorted(int(k) for k in raw if str(k).isdigit())
    elif isinstance(raw, list):  # a finished run: a list of step reports
        done = [i for i, s in enumerate(raw) if isinstance(s, dict)
                and s.get("status") not in ("failed", None)]
    last = done[-1] if done else None
    position: dict[str, Any] = {
        "id": f"{phase}@{source.get('started')}", "phase": phase,
        "steps_done": len(done), "steps": len(steps),
        "last_step": last + 1 if last is not None else None,  # numbered from 1
        "last_step_name": steps[last] if last is not None and last < len(steps) else None,
        "finished": current is None,
    }
    if current is None:
        position["ok"] = source.get("ok")
    return position


def describe_run(run: dict[str, Any] | None) -> str:
    """`engage step 2/3 (lock) done` for a status line; '' without a run."""
    if not isinstance(run, dict):
        return ""
    phase, total = run.get("phase"), run.get("steps")
    if run.get("finished"):
        ok = run.get("ok")
        verdict = "ok" if ok is True else "FAILED" if ok is False else "finished"
        return f"last {phase} {verdict}"
    last = run.get("last_step")
    if last is None:
        return f"{phase} started, no step done yet"
    return f"{phase} step {last}/{total} ({run.get('last_step_name')}) done"


# -- the monitor's snapshot (engine/paths.py StatePaths.quorum_snapshot) ------------------
def snapshot_age(data: dict[str, Any], now: datetime) -> float | None:
    """Seconds since the monitor wrote the snapshot (monotonic on this boot)."""
    from engine.clock import elapsed
    from engine.state import parse_isotime

    try:
        wall = parse_isotime(data.get("written"))
    except (TypeError, ValueError):
        wall = None
    age = elapsed(data.get("monotonic"), "written", wall, now)
    return None if age.seconds is None or age.skew else age.seconds


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The snapshot as the monitor left it; None when there is none or it is unreadable."""
    from engine.safefile import FileRefused, read_limited

    try:
        document = json.loads(read_limited(path, "record", nofollow=True))
    except (FileRefused, OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        return None
    return document


def write_snapshot(path: Path, data: dict[str, Any], mode: int) -> None:
    """Replace the snapshot atomically (not fsynced: it is rewritten every cycle)."""
    from engine.fsutil import atomic_write

    atomic_write(path, json.dumps(data, sort_keys=True) + "\n", mode=mode, durable=False)


def current_view(policy: Any, path: Path, now: datetime) -> dict[str, Any] | None:
    """The quorum as `status` and the metrics show it: the snapshot, with `stale` set when
    no monitor has read the store lately (then nothing it says is current: `shared.known`
    is false). None without a quorum block."""
    raw = (getattr(policy, "raw", None) or {}).get("quorum")
    if not isinstance(raw, dict):
        return None
    engage_when = raw.get("engage_when")
    needed = engage_when.get("down") if isinstance(engage_when, dict) else None
    data = read_snapshot(path)
    if data is None:
        return {"name": raw.get("name"), "needed": needed, "stale": True, "age_seconds": None,
                "why_unknown": "no monitor has read the quorum store yet",
                "store": {"reachable": None, "problem": None}, "shared": {"known": False},
                "leader": {"held": False}, "pause": None}
    age = snapshot_age(data, now)
    interval = float(getattr(getattr(policy, "monitor", None), "interval", 0) or 0)
    limit = STALE_INTERVALS * interval + float(data.get("timeout") or 0)
    stale = age is None or age > max(limit, STALE_FLOOR)
    view = dict(data)
    view.update(needed=needed, stale=stale, age_seconds=None if age is None else round(age, 3))
    if stale:
        view["why_unknown"] = "the monitor has not read the quorum store lately" \
            + (f" (last read {age:.0f}s ago)" if age is not None else "")
        # Nothing old passes for current: the last shared state is kept, as such.
        view.update(shared={"known": False, "problem": view["why_unknown"],
                            "last_known": data.get("shared")},
                    store={"reachable": None, "problem": None}, agreeing=None, fresh=None,
                    leader={"held": False, "token": None, "holder": None,
                            "deadline_left": None}, pause=None)
        return view
    left = (data.get("leader") or {}).get("deadline_left")
    if _is_number(left) and age is not None:
        view["leader"] = {**data["leader"], "deadline_left": round(max(0.0, left - age), 3)}
    shared = data.get("shared") or {}
    hold = shared.get("hold_down_left")
    if _is_number(hold) and age is not None:
        view["shared"] = {**shared, "hold_down_left": round(max(0.0, hold - age), 3)}
    return view


def status_lines(view: dict[str, Any] | None) -> list[str]:
    """`status`'s quorum lines (none without a quorum block)."""
    if view is None:
        return []
    role = "actor" if view.get("actor") else "votes only"
    lines = [f"quorum: observer {view.get('name')} ({role})"]
    store = view.get("store") or {}
    if view.get("stale"):
        lines.append(f"  store: unknown ({view.get('why_unknown')})")
    elif store.get("reachable"):
        fresh = view.get("fresh") or []
        lines.append(f"  store: reachable; {view.get('agreeing')}/{view.get('needed')} fresh "
                     f"observers say the outage is prolonged (fresh: "
                     f"{', '.join(fresh) or 'none'})")
    else:
        lines.append(f"  store: UNREACHABLE ({store.get('problem')})")
    lines.append("  " + shared_line(view))
    pause = view.get("pause")
    if isinstance(pause, dict) and pause.get("active") is True and not view.get("stale"):
        lines.append(f"  shared pause: yes, by {pause.get('by') or 'unknown'} "
                     f"({pause.get('reason') or 'no reason given'}): no observer engages "
                     "automatically")
    leader = view.get("leader") or {}
    if view.get("stale"):
        pass
    elif leader.get("held"):
        left = leader.get("deadline_left")
        lines.append(f"  leader key: held by this engine (token {leader.get('token')}"
                     + (f", {left:.1f}s before its deadline)" if _is_number(left) else ")"))
    elif leader.get("token") is not None:
        lines.append(f"  leader key: held by {leader.get('holder') or 'another engine'} "
                     f"(token {leader.get('token')})")
    elif store.get("reachable"):
        lines.append("  leader key: free")
    return lines


def shared_line(view: dict[str, Any]) -> str:
    """`shared: engaged by standby (token 1234), …`, or why it is unknown."""
    shared = view.get("shared") or {}
    if view.get("stale"):
        return f"shared: unknown ({view.get('why_unknown')})"
    if not shared.get("known"):
        return f"shared: unknown ({shared.get('problem') or 'the store was not read'})"
    if shared.get("state") is None:
        return "shared: nothing in the store yet (no engine has held the leader key)"
    text = (f"shared: {shared['state']} by {shared.get('holder')} (token {shared.get('token')})"
            f", changed by {shared.get('changed_by')}")
    if shared.get("reason"):
        text += f": {shared['reason']}"
    run = describe_run(shared.get("run"))
    if run:
        text += f"; {run}"
    hold = shared.get("hold_down_left")
    if _is_number(hold) and hold > 0:
        text += f"; hold-down {hold:.0f}s left"
    return text


# -- small helpers ----------------------------------------------------------------------
def _object(value: bytes | str) -> dict[str, Any] | None:
    try:
        document = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _fields(cls: Any, document: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in document.items() if k in known}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)

