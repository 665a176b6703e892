"""Standby readiness: prove, ahead of an outage, that a failover would succeed now.

A cold standby fails when it is needed: a rotated TSIG key, a lost update grant, a dead
standby web server, days of failed imports, an expired client certificate, a full disk.
The monitor runs these checks on their own schedule (the policy's optional `readiness:`
block; default hourly, and at start) in a background thread, and writes the verdicts to
`readiness.json` in the state dir, where `status`, the metrics and `check readiness` read
them. Every check is read-only: it changes no file, no zone and no database.

    readiness:
      interval: 1h            # how often (default 1h); also at the monitor's start
      certificate_days: 7     # a client certificate must stay valid for more than this
      disk_factor: 2          # free space for the next import: this many times the dump

The checks, each named in status, metrics and Nagios:
- `engage.N.<kind>` / `restore.N.<kind>`: each engage and restore step's `readiness()`
  proof when the kind has one (nsupdate: the key is accepted and granted for the name;
  check_dump_age: a margin of one import interval), then its `plan()`, which must not name
  a problem (probe: the standby answers). The engage steps only while engage can run next
  (watching, suspect, paused): once engaged the import is parked on purpose;
- `job.<name>.N.<kind>`: the `readiness()` proof of job steps that have one (fetch: the
  SFTP source answers, its host key matches, our key is accepted, the dump is there);
- `disk.<job>`: free space where the job fetches, at least `disk_factor` × the dump;
- `cron.N`: the cron file each `disable_cron` step parks is in place (parked while engaged),
  and `parking.N`: the directory it is parked in is writable;
- `state_dir`: the state directory is safe and writable;
- `certificate.<probe>`: a probe's client certificate is valid for more than
  `certificate_days`.

A failing check has a `reason` from the fixed set `REASONS` (metrics label it), a `detail`
line, and `warning` when it is a margin running out rather than a failure. The record keeps,
per check, since when it is in its present verdict and when it last passed. Losing
readiness (a check starts failing) and regaining it raise the events "readiness lost" and
"readiness regained" (engine/events.py).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.durations import parse_duration
from engine.errors import FailoverError
from engine.fsutil import atomic_write, state_dir_problem
from engine.paths import StatePaths
from engine.policy import Policy, Step
from engine.safefile import FileRefused, read_limited
from engine.state import isotime, parse_isotime
from engine.states import ARMED, RUNNING, State

if TYPE_CHECKING:  # actions are imported only where checks run: `status` never loads them
    from actions.base import Context, Readiness

log = logging.getLogger("failover_engine.readiness")

DEFAULT_INTERVAL = 3600.0
DEFAULT_CERTIFICATE_DAYS = 7
DEFAULT_DISK_FACTOR = 2.0
STEP_TIMEOUT = 30.0  # a step without its own timeout gets this long for its check

# Every reason a check may give (the metrics label is bounded to these; others are `other`).
REASONS = frozenset({
    "ok", "plan", "error", "other",
    # nsupdate
    "key_file", "unreachable", "no_record", "badsig", "badkey", "badtime", "refused_grant",
    "refused", "frozen", "changed_meanwhile", "notauth", "notzone", "servfail", "zone_changed",
    # check_dump_age
    "margin", "stale", "unreadable", "no_success", "no_time", "last_failed", "clock_skew",
    # fetch
    "host_key_changed", "host_key_unknown", "key_refused", "no_dump",
    # this module
    "missing", "not_writable", "unsafe", "expiring", "cannot_run", "disk_full", "unknown",
})


def bounded(reason: str) -> str:
    """`reason` when it is one of `REASONS`, else `other` (a bounded metrics label)."""
    return reason if reason in REASONS else "other"


@dataclass(frozen=True)
class ReadinessConfig:
    """The policy's `readiness:` block."""

    interval: float = DEFAULT_INTERVAL
    certificate_days: float = DEFAULT_CERTIFICATE_DAYS
    disk_factor: float = DEFAULT_DISK_FACTOR


def readiness_config(policy: Policy) -> ReadinessConfig | None:
    """The policy's readiness settings, or None when it has no `readiness:` block."""
    raw = policy.raw.get("readiness") if isinstance(policy.raw, dict) else None
    if not isinstance(raw, dict):
        return None
    return ReadinessConfig(
        interval=parse_duration(raw.get("interval", DEFAULT_INTERVAL)),
        certificate_days=float(raw.get("certificate_days", DEFAULT_CERTIFICATE_DAYS)),
        disk_factor=float(raw.get("disk_factor", DEFAULT_DISK_FACTOR)))


@dataclass
class Check:
    """One check's verdict now."""

    name: str
    ok: bool
    reason: str
    detail: str
    warning: bool = False
    facts: dict[str, Any] = field(default_factory=dict)  # what a proof saw (fetch: size)


# -- the checks --------------------------------------------------------------------------
def _context(policy: Policy, step_id: str, step: Step, state: str | None,
             work_dir: Path | None = None) -> Context:
    from actions.base import Context
    from engine.secrets import SecretStore

    secrets = SecretStore(policy)
    timeout = step.timeout or STEP_TIMEOUT
    return Context(policy_name=policy.name, state_dir=policy.state_dir, step_id=step_id,
                   secret=secrets.path, log=lambda message: log.debug("%s: %s", step_id, message),
                   deadline=time.monotonic() + timeout, policy=policy, engine_state=state,
                   work_dir=work_dir)


def _step_check(name: str, action: Any, ctx: Context, *, plan: bool = True) -> Check:
    """The step's own readiness proof when it has one (its reason is the most precise),
    then its plan, which must name no problem (nsupdate: the record still holds `expect`)."""
    try:
        proof = getattr(action, "readiness", None)
        result: Readiness | None = proof(ctx) if proof is not None else None
        if result is not None and not result.ok:
            return Check(name, False, bounded(result.reason), result.detail,
                         warning=result.warning)
        if plan:
            planned = action.plan(ctx)
            if planned.problem:
                return Check(name, False, "plan", str(planned.problem).splitlines()[0])
        if result is None:
            return Check(name, True, "ok", f"plan: {planned.summary}" if plan else "ok")
    except FailoverError as exc:
        return Check(name, False, "error", str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken check must not stop the others
        log.exception("readiness check %s: unexpected error", name)
        return Check(name, False, "error", f"unexpected error: {type(exc).__name__}: {exc}")
    return Check(name, result.ok, bounded(result.reason), result.detail,
                 warning=result.warning and not result.ok, facts=dict(result.facts))


def step_checks(policy: Policy, state: str | None) -> tuple[list[Check], dict[str, int]]:
    """Every engage and restore step (readiness(), then plan), and job steps' readiness();
    also the dump sizes the jobs' fetch steps found (job name → bytes) for the disk check."""
    from actions import registry

    checks: list[Check] = []
    phases = [("restore", policy.restore)]
    if state is None or state in (*ARMED, State.PAUSED):
        # Engage can run next. Once engaged (or while a run is aborted) it cannot until a
        # restore re-arms the failover, and its preconditions (a fresh import) cannot
        # hold: the import is parked on purpose. Checking them would cry wolf.
        phases.insert(0, ("engage", policy.engage))
    for phase, steps in phases:
        for index, step in enumerate(steps):
            name = f"{phase}.{index + 1}.{step.kind}"
            try:
                action = registry.build_step(step.kind, step.params)
            except (FailoverError, ValueError, KeyError) as exc:
                checks.append(Check(name, False, "error", f"invalid options: {exc}"))
                continue
            ctx = _context(policy, f"readiness {phase} step {index + 1}", step, state)
            checks.append(_step_check(name, action, ctx))
    sizes: dict[str, int] = {}
    for job_name, job in policy.jobs.items():
        for index, step in enumerate(job.steps):
            cls = registry.step_class(step.kind)
            if not hasattr(cls, "readiness"):
                continue
            name = f"job.{job_name}.{index + 1}.{step.kind}"
            ctx = _context(policy, f"readiness job {job_name} step {index + 1}", step, state,
                           work_dir=job.work_dir)
            check = _step_check(name, cls(step.params), ctx, plan=False)
            checks.append(check)
            if check.ok and "source_bytes" in check.facts:
                sizes[job_name] = int(check.facts["source_bytes"])
    return checks, sizes


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(path: Path) -> str | None:
    """Why nothing could be created in directory `path` (or where it would be made)."""
    where = _nearest_existing(path)
    if not where.is_dir():
        return f"{where} is not a directory"
    try:
        if os.statvfs(where).f_flag & os.ST_RDONLY:
            return f"{where} is on a read-only file system"
    except OSError as exc:
        return f"{where}: {exc.strerror or exc}"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"{where} is not writable by uid {os.geteuid()}"
    return None


def file_checks(policy: Policy, state: str | None) -> list[Check]:
    """The state dir, and each disable_cron step's cron file and parking directory."""
    checks: list[Check] = []
    state_dir = Path(policy.state_dir)
    unsafe = state_dir_problem(state_dir)
    problem = unsafe or _writable(state_dir)
    checks.append(Check("state_dir", problem is None,
                        "ok" if problem is None else "unsafe" if unsafe else "not_writable",
                        problem or f"{state_dir} is writable"))
    from actions.cron import parked_path

    index = 0
    for step in policy.engage:
        if step.kind != "disable_cron":
            continue
        index += 1
        ctx = _context(policy, "readiness cron", step, state)
        cron = ctx.path(str(step.params["file"]))
        parked = parked_path(ctx, cron, step.params.get("park_dir"))
        engaged = state not in (*ARMED, State.PAUSED, None)
        want = parked if engaged else cron
        ok = want.is_file()
        detail = (f"{want} is in place" + (" (parked while engaged)" if engaged else "")
                  if ok else f"{want} is missing: the "
                  + ("parked cron file is gone" if engaged else "import job's cron file is not "
                     "installed (run `failover-engine install`)"))
        checks.append(Check(f"cron.{index}", ok, "ok" if ok else "missing", detail))
        trouble = _writable(parked.parent)
        checks.append(Check(f"parking.{index}", trouble is None,
                            "ok" if trouble is None else "not_writable",
                            trouble or f"{parked.parent} is writable"))
    return checks


def disk_checks(policy: Policy, sizes: Mapping[str, int], factor: float) -> list[Check]:
    """Free space where each job with a fetch step puts the dump: `factor` × its size."""
    checks: list[Check] = []
    for job_name, job in policy.jobs.items():
        fetches = [s for s in job.steps if s.kind == "fetch"]
        if not fetches:
            continue
        dest = Path(fetches[0].params.get("dest_dir") or job.work_dir)
        where = _nearest_existing(dest)
        name = f"disk.{job_name}"
        try:
            free = shutil.disk_usage(where).free
        except OSError as exc:
            checks.append(Check(name, False, "error", f"{where}: {exc.strerror or exc}"))
            continue
        size = sizes.get(job_name)
        if size is None:
            checks.append(Check(name, False, "unknown", f"{_gib(free)} free in {where}; the "
                                "dump's size is unknown (its fetch check failed)", warning=True))
            continue
        need = int(size * factor)
        ok = free >= need
        checks.append(Check(name, ok, "ok" if ok else "disk_full",
                            f"{_gib(free)} free in {where}, the next import needs "
                            f"{_gib(need)} ({factor:g} × the {_gib(size)} dump)"))
    return checks


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**28 else f"{size / 2**20:.1f} MiB"


def certificate_checks(policy: Policy, days: float, now: datetime | None = None) -> list[Check]:
    """Each probe's client certificate: usable, and valid for more than `days`."""
    from actions import registry

    now = now or datetime.now(UTC)
    checks: list[Check] = []
    for name, spec in policy.probes.items():
        probe = registry.probe_class(spec.kind)(spec.params)
        cannot = probe.cannot_run()
        if cannot:
            checks.append(Check(f"certificate.{name}", False, "cannot_run", cannot))
            continue
        try:
            not_after = probe.certificate_not_after()
        except (OSError, ValueError) as exc:
            checks.append(Check(f"certificate.{name}", False, "cannot_run",
                                f"client certificate of probe {name} unreadable: {exc}"))
            continue
        if not_after is None:
            continue
        left = (not_after - now).total_seconds() / 86400
        ok = left > days
        checks.append(Check(f"certificate.{name}", ok, "ok" if ok else "expiring",
                            f"client certificate of probe {name} valid until "
                            f"{not_after.strftime('%Y-%m-%d %H:%M')}Z ({left:.1f} days"
                            + (")" if ok else f", not more than {days:g})")))
    return checks


def run_checks(policy: Policy, config: ReadinessConfig, state: str | None) -> list[Check]:
    """Every readiness check of the policy, now (read-only). A group of checks that breaks
    (a bug) is one failing check naming it, never a run without a record."""
    checks, sizes = step_checks(policy, state)
    groups: list[tuple[str, Callable[[], list[Check]]]] = [
        ("files", lambda: file_checks(policy, state)),
        ("disk", lambda: disk_checks(policy, sizes, config.disk_factor)),
        ("certificates", lambda: certificate_checks(policy, config.certificate_days)),
    ]
    for group, run in groups:
        try:
            checks += run()
        except Exception as exc:  # noqa: BLE001 - the other checks still count
            log.exception("readiness: the %s checks failed", group)
            checks.append(Check(f"internal.{group}", False, "error",
                                f"the {group} checks could not run: {type(exc).__name__}: "
                                f"{exc}"))
    return checks


# -- the record ------------------------------------------------------------------------------
@dataclass
class CheckRecord:
    """A check as recorded: its verdict, since when it holds, and when it last passed."""

    ok: bool
    reason: str
    detail: str
    warning: bool = False
    since: str | None = None
    last_ok: str | None = None


@dataclass
class ReadinessRecord:
    """`readiness.json`: when the checks last ran, how often they run, and each verdict."""

    checked_at: str
    interval: float
    checks: dict[str, CheckRecord] = field(default_factory=dict)

    @property
    def failing(self) -> list[str]:
        """Names of the checks that do not pass (warnings included)."""
        return [name for name, check in self.checks.items() if not check.ok]

    @property
    def critical(self) -> list[str]:
        """Names of the failing checks that are not just a margin running out."""
        return [name for name, check in self.checks.items()
                if not check.ok and not check.warning]

    def to_json(self) -> str:
        """The record as one JSON document."""
        return json.dumps({"checked_at": self.checked_at, "interval": self.interval,
                           "checks": {n: asdict(c) for n, c in self.checks.items()}},
                          indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ReadinessRecord:
        """Parse a record; ValueError when it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("checks"), dict):
            raise ValueError("not a readiness record")
        checks = {}
        for name, raw in data["checks"].items():
            if not isinstance(raw, dict) or not isinstance(raw.get("ok"), bool):
                raise ValueError(f"check {name!r} is not a check record")
            checks[str(name)] = CheckRecord(
                raw["ok"], bounded(str(raw.get("reason", "other"))), str(raw.get("detail", "")),
                bool(raw.get("warning", False)), raw.get("since"), raw.get("last_ok"))
        interval = data.get("interval")
        if not isinstance(interval, int | float) or isinstance(interval, bool):
            raise ValueError("interval is not a number")
        return cls(str(data.get("checked_at", "")), float(interval), checks)


def load_record(state_dir: str | Path) -> ReadinessRecord | None:
    """The last readiness record, None when the checks never ran; FileRefused or ValueError
    when it is damaged."""
    path = StatePaths(Path(state_dir)).readiness
    try:
        text = read_limited(path, "readiness", nofollow=True)
    except FileRefused as exc:
        if exc.missing:
            return None
        raise
    return ReadinessRecord.from_json(text.decode("utf-8", errors="replace"))


def merge(previous: ReadinessRecord | None, checks: list[Check], interval: float,
          now: str | None = None) -> ReadinessRecord:
    """The new record: each check's verdict, `since` kept while its verdict is unchanged,
    `last_ok` now when it passes, else the previous one."""
    now = now or isotime()
    old = previous.checks if previous is not None else {}
    record = ReadinessRecord(now, interval)
    for check in checks:
        before = old.get(check.name)
        same = before is not None and before.ok == check.ok and before.reason == check.reason
        record.checks[check.name] = CheckRecord(
            check.ok, bounded(check.reason), check.detail, check.warning,
            since=before.since if same and before is not None else now,
            last_ok=now if check.ok else (before.last_ok if before is not None else None))
    return record


def age_seconds(record: ReadinessRecord, now: datetime | None = None) -> float | None:
    """How long ago the checks ran (None when the time is unreadable)."""
    try:
        when = parse_isotime(record.checked_at)
    except ValueError:
        return None
    if when is None:
        return None
    return ((now or datetime.now(UTC)) - when).total_seconds()


def is_stale(record: ReadinessRecord, now: datetime | None = None) -> bool:
    """True when the checks are overdue: more than twice their interval plus 5 minutes."""
    age = age_seconds(record, now)
    return age is None or age > 2 * record.interval + 300


# -- in the monitor --------------------------------------------------------------------------
class ReadinessRunner:
    """Runs the checks for the monitor, on their own schedule, in a background thread.

    `tick()` is called every monitor cycle and costs nothing until the checks are due (at
    start, then every `interval`); they are skipped while an engage or restore runs.
    `emit(kind, headline, summary)` raises the readiness events (the Engine's notifier).
    """

    def __init__(self, policy: Callable[[], Policy], state: Callable[[], str],
                 emit: Callable[[str, str, str, list[str]], None] | None = None) -> None:
        self._policy = policy
        self._state = state
        self._emit = emit
        self._thread: threading.Thread | None = None
        self._next = 0.0  # monotonic time the checks are next due; 0: at once

    def tick(self) -> bool:
        """Start a run in the background when due; True when one was started."""
        policy = self._policy()
        config = readiness_config(policy)
        if config is None or time.monotonic() < self._next:
            return False
        if self._thread is not None and self._thread.is_alive():
            return False
        if self._state() in RUNNING:
            return False
        self._next = time.monotonic() + config.interval
        self._thread = threading.Thread(target=self.run_once, name="readiness", daemon=True)
        self._thread.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        """Wait for a run in progress (tests, the drill)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> ReadinessRecord | None:
        """Run every check now, write the record, raise lost/regained events."""
        policy = self._policy()
        config = readiness_config(policy) or ReadinessConfig()
        paths = StatePaths(Path(policy.state_dir))
        try:
            previous = load_record(policy.state_dir)
        except (FileRefused, ValueError) as exc:
            log.warning("readiness: %s is damaged (%s); starting a new record",
                        paths.readiness, exc)
            previous = None
        try:
            checks = run_checks(policy, config, self._state())
        except Exception:  # noqa: BLE001 - the monitor must go on whatever a check does
            log.exception("readiness: the checks failed")
            return None
        record = merge(previous, checks, config.interval)
        mode = 0o640 if paths.state_dir.stat().st_mode & 0o040 else 0o600
        try:
            atomic_write(paths.readiness, record.to_json(), mode=mode, durable=False)
        except OSError as exc:
            log.error("readiness: cannot write %s: %s", paths.readiness, exc.strerror or exc)
        self._announce(previous, record)
        return record

    def _announce(self, previous: ReadinessRecord | None, record: ReadinessRecord) -> None:
        failing = record.failing
        before = set(previous.failing) if previous is not None else set()
        lines = [f"{n}: {record.checks[n].detail}" for n in failing]
        if failing:
            log.warning("readiness: %d of %d checks fail: %s", len(failing),
                        len(record.checks), "; ".join(lines))
        else:
            log.info("readiness: all %d checks pass", len(record.checks))
        if self._emit is None:
            return
        if failing and set(failing) - before:
            self._emit("lost", ", ".join(failing),
                       f"A failover would not work now: {len(failing)} readiness checks "
                       "fail.", lines)
        elif not failing and before:
            self._emit("regained", "all checks pass",
                       f"The failover would work again: all {len(record.checks)} readiness "
                       f"checks pass (failing before: {', '.join(sorted(before))}).", [])


def notifier_emit(engine: Any) -> Callable[[str, str, str, list[str]], None]:
    """The `emit` of a ReadinessRunner for the monitor: "readiness lost" / "readiness
    regained" events through the Engine's notifier (engine/notifier.py)."""
    from engine.events import Kind

    def emit(kind: str, headline: str, summary: str, lines: list[str]) -> None:
        notifier = engine.notifier
        lost = kind == "lost"
        built = notifier.engine_event(
            Kind.READINESS_LOST if lost else Kind.READINESS_REGAINED, engine.record,
            key=f"readiness-{kind}@{isotime()}", headline=headline, summary=summary,
            next_steps=[*lines, "Fix each failing check; `check readiness` shows them, and "
                        "the next run (or a monitor restart) proves them again."] if lost
            else ["Nothing to do."],
            commands=["check readiness", "status"])
        notifier.emit(built)

    return emit


# -- where it shows --------------------------------------------------------------------------
def status_data(policy: Policy) -> dict[str, Any]:
    """The readiness part of `status --json`: configured or not, when last checked, whether
    overdue, the failing checks, and each check's record."""
    config = readiness_config(policy)
    if config is None:
        return {"configured": False}
    data: dict[str, Any] = {"configured": True, "interval_seconds": config.interval,
                            "checked_at": None, "overdue": None, "failing": [], "checks": {}}
    try:
        record = load_record(policy.state_dir)
    except (FileRefused, ValueError, OSError) as exc:
        data["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return data
    if record is None:
        return data
    data.update(checked_at=record.checked_at, overdue=is_stale(record), failing=record.failing,
                checks={name: asdict(check) for name, check in record.checks.items()})
    return data


def status_lines(data: dict[str, Any]) -> list[str]:
    """The readiness lines of `status` (text) from `status_data()`."""
    if not data.get("configured"):
        return ["readiness: not checked (the policy has no `readiness:` block)"]
    if data.get("error"):
        return [f"readiness: UNKNOWN: {data['error']}"]
    if not data.get("checked_at"):
        return ["readiness: never checked yet (the monitor checks at its start, then every "
                "interval)"]
    checks: dict[str, dict[str, Any]] = data["checks"]
    failing = data["failing"]
    verdict = (f"{len(failing)} of {len(checks)} checks FAIL" if failing
               else f"all {len(checks)} checks pass")
    overdue = "; OVERDUE: is the monitor running?" if data.get("overdue") else ""
    lines = [f"readiness: {verdict} (checked {data['checked_at']}{overdue})"]
    for name, check in checks.items():
        if check["ok"]:
            lines.append(f"  {name}: ok")
            continue
        what = "near its limit" if check.get("warning") else "FAILED"
        last = check.get("last_ok") or "never"
        lines.append(f"  {name}: {what} ({check['reason']}) since {check.get('since')}, last "
                     f"passed {last}: {check['detail']}")
    return lines
