"""`repair-state [--yes]`: rebuild a missing, damaged or wrong state file from the evidence.

A state file that cannot be read (or names no known state) makes every data-changing
command treat the standby as possibly engaged. Moving it aside is never the answer: the
engine would then believe it is `watching`. This command reads what the engine left
elsewhere and concludes the state from it:

- the engage lock file(s) of the policy's `lock` steps (present: an engage ran);
- cron files parked by `disable_cron` (present: an engage ran, no restore since);
- the run journal in the state file, when the file is still readable as JSON;
- the audit log (`audit.jsonl`): the last engage or restore phase it records, and whether a
  step of it failed;
- DNS as read now: what each alias's primary server answers, labelled "standby" (the
  engage's nsupdate value) or "production" (the restore's);
- the `paused` switch file.

It prints every piece of evidence and the conclusion. Without `--yes` it writes nothing
(exit 0 when the state file already says what the evidence says, 1 when it would change
it). With `--yes` it takes the engine lock (no monitor may run) and writes the state file
atomically. The conclusion: any sign of an engage (lock, parked cron file, DNS on the
standby, an engage last in the audit log) gives `engaged` — or `aborted` when the audit
log shows that engage failing — else `paused` when the switch file exists, else `watching`.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from engine.commands import load
from engine.errors import FailoverError
from engine.paths import StatePaths
from engine.policy import Policy
from engine.standby import engage_lock_files, parked_cron_files, read_state_name
from engine.state import EngineState, StateStore, isotime
from engine.states import State


@dataclass
class Evidence:
    """What was found, one line each, and what it points to."""

    lines: list[str] = field(default_factory=list)
    engaged: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    failed_engage: str | None = None

    def note(self, line: str, *, engaged: bool = False, released: bool = False) -> None:
        self.lines.append(line)
        if engaged:
            self.engaged.append(line)
        if released:
            self.released.append(line)


def _files(policy: Policy, evidence: Evidence) -> None:
    for lock in engage_lock_files(policy):
        if lock.exists() or lock.is_symlink():
            evidence.note(f"engage lock {lock} exists", engaged=True)
        else:
            evidence.note(f"engage lock {lock} absent")
    parked = list(parked_cron_files(policy))
    folder = StatePaths(policy.state_dir).parked_dir
    if folder.is_dir():
        parked += [p for p in sorted(folder.iterdir()) if p not in parked]
    for path in dict.fromkeys(parked):
        if path.exists() or path.is_symlink():
            evidence.note(f"cron file parked at {path}", engaged=True)
        else:
            evidence.note(f"no cron file parked at {path}")


def _audit(policy: Policy, evidence: Evidence) -> None:
    from engine.safefile import FileRefused, read_limited

    path = StatePaths(policy.state_dir).audit_log
    try:
        data = read_limited(path, "audit_log", from_end=True)
    except FileRefused as exc:
        evidence.note(f"audit log: {exc}")
        return
    except OSError as exc:
        evidence.note(f"audit log {path}: unreadable ({exc.strerror})")
        return
    last_phase: str | None = None
    last_time = ""
    failed: str | None = None
    for raw in data.decode("utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("phase") not in ("engage", "restore"):
            continue
        if entry["phase"] != last_phase:
            last_phase, failed = str(entry["phase"]), None
        last_time = str(entry.get("time", ""))
        if entry.get("outcome") == "failed":
            failed = f"{entry.get('step')}: {str(entry.get('summary'))[:200]}"
    if last_phase is None:
        evidence.note(f"audit log {path}: no engage or restore recorded")
    elif last_phase == "engage":
        evidence.note(f"audit log: the last run recorded is an engage (last entry {last_time})"
                      + (f", which failed at {failed}" if failed else ""), engaged=True)
        evidence.failed_engage = failed
    else:
        evidence.note(f"audit log: the last run recorded is a restore (last entry {last_time})"
                      + (f", which failed at {failed}" if failed else ""),
                      released=failed is None)


def _dns(policy: Policy, evidence: Evidence) -> None:
    try:
        from actions.dnsread import IO_TIMEOUT, read_record, show
        from engine.commands.dns import aliases
        found = aliases(policy)
    except (FailoverError, ImportError) as exc:
        evidence.note(f"DNS: not read ({exc})")
        return
    if not found:
        evidence.note("DNS: the policy has no nsupdate step")
    for alias in found:
        where = f"DNS {alias.update.name} {alias.update.rdtype} on {alias.primary}"
        try:
            answer = read_record(alias.primary, alias.update.name, alias.update.rdtype,
                                 IO_TIMEOUT)
        except FailoverError as exc:
            evidence.note(f"{where}: no answer ({exc})")
            continue
        label = alias.labels.get(answer.values)
        text = f"{where}: {show(answer.values)}" + (f" ({label})" if label else " (unknown)")
        evidence.note(text, engaged=label == "standby", released=label == "production")


def conclude(policy: Policy, evidence: Evidence) -> tuple[State, str]:
    """The state the evidence supports, and why."""
    if evidence.engaged:
        if evidence.failed_engage:
            return State.ABORTED, f"an engage failed ({evidence.failed_engage})"
        return State.ENGAGED, "; ".join(evidence.engaged)
    if StatePaths(policy.state_dir).paused.exists():
        return State.PAUSED, "the paused switch file exists and nothing shows an engage"
    return State.WATCHING, "nothing shows an engage"


def rebuilt(old: dict[str, Any], state: State, why: str) -> EngineState:
    """A fresh record in `state`, keeping the counts of the old one when it had them."""
    record = EngineState(state=state, since=isotime(),
                         last_outcome=f"state rebuilt by repair-state: {why}"[:500])
    counts = old.get("counts")
    if isinstance(counts, dict):
        record.counts = {k: v for k, v in counts.items()
                         if isinstance(k, str) and isinstance(v, int)} or record.counts
    if state is State.ABORTED:
        record.aborted_reason = f"rebuilt by repair-state: {why}"[:500]
        record.last_run = {"phase": "engage", "ok": False, "finished": isotime(), "steps": []}
    elif state is State.ENGAGED:
        record.last_run = {"phase": "engage", "ok": True, "finished": isotime(), "steps": []}
    return record


def main(args: argparse.Namespace) -> int:
    """Show the evidence and the conclusion; write the state file with --yes."""
    policy = load(args)
    current, problem, old = read_state_name(policy.state_dir)
    evidence = Evidence()
    print(f"state file: {problem or f'says {current.value if current else current}'}")
    _files(policy, evidence)
    run = old.get("run")
    if isinstance(run, dict) and run.get("phase") in ("engage", "restore"):
        steps = run.get("steps")
        done = len(steps) if isinstance(steps, dict) else 0
        evidence.note(f"state file journal: a {run['phase']} run with {done} steps done",
                      engaged=run["phase"] == "engage")
    _audit(policy, evidence)
    _dns(policy, evidence)
    for line in evidence.lines:
        print(f"  {line}")
    state, why = conclude(policy, evidence)
    print(f"conclusion: {state.value} ({why})")
    if problem is None and current is state:
        print("the state file already says so; nothing to write")
        return 0
    if not getattr(args, "yes", False):
        print("nothing written; run again with --yes to write this state")
        return 1
    store = StateStore(policy.state_dir)
    with store.hold("repair-state"):
        store.save(rebuilt(old, state, why))
    print(f"wrote {store.path}: state {state.value}")
    return 0

