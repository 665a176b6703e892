"""May the standby's data be replaced now? The evidence, and the lock engage and imports share.

An import must never swap data into a standby that serves users or may be about to. The
answer rests on independent signals, so one damaged or missing file cannot open the door:

- the state file: `engaging`, `engaged`, `restoring`, or `aborted` after an engage, says so;
  a state file that is unreadable, damaged, names an unknown state (or holds `42`), or is
  missing although the engine has run here (`engine.lock` exists) counts as "possibly
  engaged" too — `failover-engine repair-state` rebuilds it from the evidence;
- the engage lock file (the `lock` step's file, default `<state_dir>/engage.lock`);
- a cron file parked by `disable_cron` (in `<state_dir>/parked/` or the step's `park_dir`).

`serving_evidence(policy)` lists what it found (empty: nothing says the standby serves).

The standby lock (`<state_dir>/jobs/standby.lock`, an flock) orders engage and an import's
swap: engage takes it before its first step and holds it for its run; an import takes it
right before its swap, re-checks the evidence under it, and holds it through the swap.
So an import still loading when engage starts is refused at its swap (live untouched), and
an engage that starts while a swap runs waits for the swap (seconds) to finish.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import StepError
from engine.fsutil import ensure_private_dir
from engine.paths import StatePaths
from engine.states import STANDBY_BUSY, State, parse_state

log = logging.getLogger("failover_engine.standby")

# How long engage waits for an import's swap to finish (a swap takes seconds; its DDL
# waits at most SWAP_LOCK_WAIT on the server's metadata locks, see import_mariadb).
ENGAGE_WAIT = 600.0
# How long an import waits for the lock (an engage run, or another job's swap).
IMPORT_WAIT = 900.0
# A swap journal holds the dump's object statements (views, triggers, routines): small.
JOURNAL_MAX = 64 << 20


class StandbyBusy(StepError):
    """The standby lock could not be had in time; the message names its holder."""


class SwapRefused(StepError):
    """The evidence says the standby serves users (or may): the swap must not happen."""


def standby_lock_path(state_dir: str | Path) -> Path:
    """`<state_dir>/jobs/standby.lock`."""
    return StatePaths(Path(state_dir)).standby_lock


def engage_lock_files(policy: Any) -> list[Path]:
    """The engage lock files the policy's `lock: {state: present}` steps create (and the
    default one, always)."""
    state_dir = Path(policy.state_dir)
    found = [state_dir / "engage.lock"]
    for step in getattr(policy, "engage", []):
        if step.kind == "lock" and step.params.get("state") == "present" and step.params.get(
                "file"):
            found.append(_policy_path(policy, step.params["file"]))
    return list(dict.fromkeys(found))


def parked_cron_files(policy: Any) -> list[Path]:
    """Where the policy's `disable_cron` steps park their cron files."""
    state_dir = Path(policy.state_dir)
    found = []
    for step in getattr(policy, "engage", []):
        if step.kind == "disable_cron" and step.params.get("file"):
            park = step.params.get("park_dir")
            folder = _policy_path(policy, park) if park else StatePaths(state_dir).parked_dir
            found.append(folder / Path(str(step.params["file"])).name)
    return found


def _policy_path(policy: Any, value: str) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else Path(policy.path).parent / path


def read_state_name(state_dir: str | Path) -> tuple[State | None, str | None, dict[str, Any]]:
    """(state, problem, raw record) from the state file, read raw (never trusting its shape).

    `problem` says why the state is not known: missing, unreadable, damaged, unknown."""
    from engine.safefile import FileRefused, read_limited

    paths = StatePaths(Path(state_dir))
    try:
        text = read_limited(paths.state_file, "state", nofollow=True).decode(
            "utf-8", errors="replace")
    except FileRefused as exc:
        if exc.missing:
            return None, f"{paths.state_file} is missing", {}
        return None, f"the state file is unusable ({exc})", {}
    try:
        data = json.loads(text)
    except ValueError:
        return None, f"{paths.state_file} is damaged (not JSON)", {}
    if not isinstance(data, dict):
        return None, f"{paths.state_file} is damaged (not a JSON object)", {}
    try:
        return parse_state(data.get("state")), None, data
    except ValueError as exc:
        return None, f"{paths.state_file}: {exc}", data


def _engaged_then_aborted(data: dict[str, Any]) -> bool:
    for key in ("run", "last_run"):
        run = data.get(key)
        if isinstance(run, dict) and run.get("phase") == "engage":
            return True
    return False


def serving_evidence(policy: Any, state_dir: str | Path | None = None) -> list[str]:
    """Every signal that says the standby serves users or may (empty: none does).

    `policy` may be None (a step run outside a policy): then only the state directory's
    own files count (the state, `engage.lock`, `parked/`)."""
    state_dir = Path(state_dir if state_dir is not None else policy.state_dir)
    paths = StatePaths(state_dir)
    reasons: list[str] = []
    state, problem, data = read_state_name(state_dir)
    if problem is not None:
        if state is None and "missing" in problem and not paths.engine_lock.exists():
            pass  # a fresh state dir: no engine ever ran here, so nothing engaged through it
        else:
            reasons.append(f"{problem}, so the state is unknown and counts as possibly engaged"
                           " (`failover-engine repair-state` rebuilds it)")
    elif state in STANDBY_BUSY:
        reasons.append(f"the failover is {state.value}")
    elif state is State.ABORTED and _engaged_then_aborted(data):
        reasons.append("the failover is aborted during or after an engage")
    locks = engage_lock_files(policy) if policy is not None else [state_dir / "engage.lock"]
    for lock in locks:
        if os.path.lexists(lock):
            reasons.append(f"the engage lock {lock} exists")
    parked_files = parked_cron_files(policy) if policy is not None else []
    with contextlib.suppress(OSError):  # anything parked in the default place counts
        parked_files += sorted(paths.parked_dir.iterdir())
    for parked in dict.fromkeys(parked_files):
        if os.path.lexists(parked):
            reasons.append(f"the cron file is parked at {parked}")
    return reasons


@contextlib.contextmanager
def hold_standby_lock(state_dir: str | Path, role: str, *, wait: float,
                      stop: Callable[[], bool] = lambda: False,
                      sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold the standby lock (see the module docstring) while the block runs.

    Waits up to `wait` seconds for the holder to let go (logging who it is), then raises
    StandbyBusy; `stop()` returning True ends the wait early with StandbyBusy too."""
    path = standby_lock_path(state_dir)
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        told = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            now = time.monotonic()
            if now >= deadline or stop():
                raise StandbyBusy(f"{path}: held by {holder} for longer than we could wait;"
                                  " try again when it has finished")
            if now - told >= 10.0:
                log.warning("%s: waiting for %s to let go of the standby lock", role, holder)
                told = now
            sleep(0.2)
        with contextlib.suppress(OSError):  # the holder's text is for humans only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, {role}, since "
                          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock


@contextlib.contextmanager
def swap_permit(state_dir: str | Path, policy: Any, *, role: str, force: bool = False,
                wait: float = IMPORT_WAIT, stop: Callable[[], bool] = lambda: False,
                on_refused: Callable[[str], None] = lambda reason: None) -> Iterator[None]:
    """Hold the standby lock and check the evidence; the block may then change live.

    Raises SwapRefused (after calling `on_refused(reason)`) when any signal says the
    standby serves or may; `force` (job --force, allow_when_engaged) only logs them."""
    def refuse(evidence: list[str]) -> SwapRefused:
        reason = (f"refused before the swap: {'; '.join(evidence)}; the standby may serve"
                  " users, so live was left unchanged (restore first, or use --force if"
                  " you really mean to overwrite its data)")
        on_refused(reason)
        return SwapRefused(reason)

    # Look before waiting: an engage holds the lock for its whole run (which may wait on
    # DNS for hours), and what it has already written is reason enough to stop.
    if not force and (early := serving_evidence(policy, state_dir)):
        raise refuse(early)
    with hold_standby_lock(state_dir, role, wait=wait, stop=stop):
        evidence = serving_evidence(policy, state_dir)
        if evidence and force:
            log.warning("%s: swapping although %s (forced)", role, "; ".join(evidence))
        elif evidence:
            raise refuse(evidence)
        yield


def half_done_swaps(state_dir: str | Path) -> list[str]:
    """One line per swap journal left in `<state_dir>/swap/` (actions/mariadb_swap.py): live
    is not known to be whole until the next import completes or undoes that swap."""
    folder = StatePaths(Path(state_dir)).swap_dir
    try:
        journals = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except OSError:
        return []
    found = []
    from engine.safefile import FileRefused, read_limited

    for path in journals:
        try:
            data = json.loads(read_limited(path, "swap_journal", JOURNAL_MAX, nofollow=True))
        except (FileRefused, ValueError):
            data = None
        if not isinstance(data, dict):
            found.append(f"live {path.stem} is not known to be whole: its swap journal {path}"
                         " is unreadable; compare live with the dump by hand")
            continue
        phase, started = data.get("phase"), data.get("started", "?")
        if phase == "damaged":
            problems = ", ".join(str(p) for p in (data.get("problems") or [])[:5])
            found.append(f"live {path.stem} does not match its dump ({problems}) since"
                         f" {data.get('checked', started)}; the next import retries")
        else:
            found.append(f"live {path.stem} may be half-swapped: a swap began at {started} and"
                         f" did not finish ({path}); the next import completes or undoes it")
    return found
