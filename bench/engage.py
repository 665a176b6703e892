"""engage: an engage of a loopback policy in-process, against a bare script doing the same.

Ours: `engine.failover.Engine(policy).engage(manual=True)` on a policy whose engage is
notify (to an aiosmtpd sink) → check_dump_age → disable_cron → nsupdate (a loopback BIND
primary with a secondary fed by NOTIFY/IXFR, TSIG, prerequisite) → lock. The goal's
figure, `engage.decision-to-dns`, is timed from the call (the decision) to the moment
every DNS server answers the standby (polled from the moment nsupdate's apply()
returns): what users wait for. Everything the engine adds on the way is inside: the
spool-first notify, the journal written at every step, the audit lines, the fsyncs, the
read-before and read-back of nsupdate.

Baseline: the same operations written directly in one function, making the same kind of
durable writes (a crash-safe script needs them too): the decision and each step recorded
in a state file (temp + fsync + rename + directory fsync), an audit line appended and
fsynced, the mail spooled to an fsynced file before smtplib sends it, the status log's
last line parsed and its age checked, the cron file renamed into a parked dir (directory
fsynced), one TSIG-signed update with a prerequisite over TCP with dnspython, then the
same polling until every server answers the standby. Goal: ≤ 1.3×. Row
`engage.fsyncs-to-dns` gives both sides' fsync counts, so the pairing can be checked.
(The former goal, call to lock on disk against a bare script without durable writes, is
gone: the lock comes after DNS, and ours now also waits there for every server.)

Between two runs the world is put back untimed: cron file back, DNS record back to
production, a fresh state dir (so no lock, no journal, no parked file).

What-if rows run the same engage with one thing changed in the benchmark process (no
engine file is edited) and are priced against the shipped engine of the same round:
no fsync at all, and `atomic_write` fsyncing the directory only when it creates the
file. (A third, no transition mail before the first step, priced 0.78–0.82× and was
adopted: the engine no longer sends the "engaging" mail when the run's first step is a
notify.) `engage.fsyncs-to-lock` counts
the fsync calls up to the lock: a figure that does not depend on the machine.
"""
from __future__ import annotations

import contextlib
import os
import smtplib
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from bench.common import Bench, Result, alternate, ratio_result
from bench.world import NAME as RECORD
from bench.world import PRODUCTION, STANDBY, ZONE, LoopbackWorld

NAME = "engage"


class Ours:
    """One engage through the engine, timed from the call to the lock written."""

    def __init__(self, world: LoopbackWorld, policy_path: Path, work: Path, *,
                 transition_mail: bool = True, fsync: bool = True,
                 dir_fsync_on_create_only: bool = False) -> None:
        self.world = world
        self.transition_mail = transition_mail
        self.fsync = fsync
        self.dir_fsync_on_create_only = dir_fsync_on_create_only
        self.policy_path = policy_path
        self.work = work
        self.lock_written: float | None = None
        self.dns_switched: float | None = None
        self.count = 0
        self.tag = f"{int(transition_mail)}{int(fsync)}{int(dir_fsync_on_create_only)}"
        _watch_lock(self)

    def __call__(self) -> float:
        from engine.failover import Engine
        from engine.policy import load_policy

        self.count += 1
        state = self.work / f"state-{self.tag}-{self.count}"
        self.world.reset()
        policy = load_policy(self.policy_path, state_dir=state)
        engine = Engine(policy, send_mail=self.transition_mail)
        self.lock_written = None
        self.dns_switched = None
        real_fsync = os.fsync
        if not self.fsync:  # a what-if: how much of the engage is fsync
            os.fsync = lambda fd: None
        try:
            with _dir_fsync_on_create_only(self.dir_fsync_on_create_only):
                start = time.perf_counter()
                report = engine.engage(manual=True)
        finally:
            os.fsync = real_fsync
        if not report.ok or self.lock_written is None or self.dns_switched is None:
            failed = report.failed.summary if report.failed else "no lock written"
            raise RuntimeError(f"engage failed: {failed}")
        if self.world.record() != STANDBY:
            raise RuntimeError(f"engage left {RECORD} at {self.world.record()}")
        return self.dns_switched - start


@contextlib.contextmanager
def _dir_fsync_on_create_only(active: bool) -> Iterator[None]:
    """What-if: atomic_write fsyncs the directory only when it creates the file.

    Replacing an existing file (the state file, once per step) then costs one fsync
    instead of two; the rename is still atomic, only its durability after a crash waits
    for the next fsync of the directory (the journalled steps are idempotent).
    """
    if not active:
        yield
        return
    import engine.fsutil
    import engine.state

    shipped = engine.fsutil.atomic_write

    def atomic_write(path, data, mode=0o600, *, durable=True):  # type: ignore[no-untyped-def]
        if not Path(path).exists():
            return shipped(path, data, mode, durable=durable)
        fsync_dir = engine.fsutil.fsync_dir
        engine.fsutil.fsync_dir = lambda directory: None
        try:
            return shipped(path, data, mode, durable=durable)
        finally:
            engine.fsutil.fsync_dir = fsync_dir

    engine.fsutil.atomic_write = atomic_write
    engine.state.atomic_write = atomic_write  # type: ignore[attr-defined]
    try:
        yield
    finally:
        engine.fsutil.atomic_write = shipped
        engine.state.atomic_write = shipped  # type: ignore[attr-defined]


_WATCHERS: list[Ours] = []


def _watch_lock(ours: Ours) -> None:
    """Wrap Lock.apply and NsUpdate.apply once: whoever is running notes the moment the
    lock is on disk, and the moment every DNS server answers the standby (polled as soon
    as the update step returns)."""
    import actions.lock
    import actions.nsupdate

    _WATCHERS.append(ours)
    if len(_WATCHERS) > 1:
        return
    original = actions.lock.Lock.apply
    update = actions.nsupdate.NsUpdate.apply

    def nsupdate_apply(step_self, ctx):  # type: ignore[no-untyped-def]
        outcome = update(step_self, ctx)
        now = ours.world.wait_everywhere(STANDBY)
        for watcher in _WATCHERS:
            watcher.dns_switched = now
        return outcome

    actions.nsupdate.NsUpdate.apply = nsupdate_apply  # type: ignore[method-assign]

    def apply(lock_self, ctx):  # type: ignore[no-untyped-def]
        outcome = original(lock_self, ctx)
        now = time.perf_counter()
        for watcher in _WATCHERS:
            watcher.lock_written = now
        return outcome

    actions.lock.Lock.apply = apply  # type: ignore[method-assign]


class DurableBare:
    """The bare script with the durable writes a crash-safe engage needs, timed to DNS
    switched on every server (the goal's baseline; see the module docstring)."""

    def __init__(self, world: LoopbackWorld, work: Path) -> None:
        import dns.tsigkeyring

        self.world = world
        self.work = work
        self.count = 0
        key = world.lab.update_key
        self.keyring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})

    def __call__(self) -> float:
        self.count += 1
        state = self.work / f"durable-{self.count}"
        state.mkdir(mode=0o700)
        self.world.reset()
        start = time.perf_counter()
        self.engage(state)
        return self.switched - start

    def engage(self, state: Path) -> None:
        import dns.query
        import dns.rcode
        import dns.update

        from engine.fsutil import atomic_write, fsync_dir

        world = self.world

        def record(step: str) -> None:  # the journal: durable before each step
            atomic_write(state / "state.json", f'{{"state": "engaging", "step": "{step}"}}\n')

        record("decided")
        with open(state / "audit.jsonl", "a") as audit:
            audit.write('{"event": "engage", "reason": "manual"}\n')
            audit.flush()
            os.fsync(audit.fileno())
        # 1. mail: spooled durably, then sent
        record("notify")
        message = EmailMessage()
        message["From"] = "failover-engine@bench.test"
        message["To"] = "admins@bench.test"
        message["Subject"] = "bench"
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid()
        message.set_content("Production failed 3 probes in a row; engaging.\n")
        spool = state / "spool"
        spool.mkdir(mode=0o700)
        atomic_write(spool / "1.eml", message.as_string())
        with smtplib.SMTP("127.0.0.1", world.sink.port, timeout=10) as smtp:
            smtp.send_message(message)
        (spool / "1.eml").unlink()
        # 2. the last import completed ok less than 7 hours ago
        record("check_dump_age")
        last = world.status_log.read_text().splitlines()[-1]
        stamp, _, rest = last.partition(" ")
        if "completed ok" not in rest:
            raise RuntimeError("last import not ok")
        if datetime.now(UTC) - datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z") > timedelta(
                hours=7):
            raise RuntimeError("last import too old")
        # 3. park the cron file
        record("disable_cron")
        parked = state / "parked"
        parked.mkdir(mode=0o700)
        os.rename(world.cron, parked / world.cron.name)
        fsync_dir(parked)
        fsync_dir(world.cron.parent)
        # 4. repoint the alias, only if it still points at production; wait for every server
        record("nsupdate")
        update = dns.update.UpdateMessage(f"{ZONE}.", keyring=self.keyring)
        update.present(RECORD, "CNAME", PRODUCTION)
        update.replace(RECORD, 60, "CNAME", STANDBY)
        reply = dns.query.tcp(update, "127.0.0.1", port=world.dns_port, timeout=5)
        if reply.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update refused: {dns.rcode.to_text(reply.rcode())}")
        self.switched = world.wait_everywhere(STANDBY)


def count_calls(call: Callable[[], Any], until: Callable[[], float | None]) -> int:
    """fsync calls made by `call()` up to the moment `until()` names (machine-independent)."""
    real = os.fsync
    calls: list[float] = []

    def counting(fd: int) -> None:
        calls.append(time.perf_counter())
        real(fd)

    os.fsync = counting
    try:
        call()
    finally:
        os.fsync = real
    moment = until() or float("inf")
    return sum(1 for at in calls if at <= moment)


def run(bench: Bench) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="engage-", dir=bench.work))
    world = LoopbackWorld(work / "world", dns=True, smtp=True, secondary=True).start()
    try:
        policy = world.write_policy(work / "world" / "bench.yaml")
        ours, durable = Ours(world, policy, work), DurableBare(world, work)
        # What-ifs pricing proposals: no fsync at all, directory fsync on create only.
        no_fsync = Ours(world, policy, work, fsync=False)
        dir_once = Ours(world, policy, work, dir_fsync_on_create_only=True)
        runs = bench.runs * 3
        warmup = 2
        times = alternate([ours, durable, no_fsync, dir_once], runs, warmup=warmup)
        engages = ours.count + no_fsync.count + dir_once.count
        bench.say(f"  {engages} engages and {durable.count} bare runs; the sink"
                  f" received {len(world.sink.received)} mails; DNS servers:"
                  f" {', '.join(world.lab.servers)}")
        fsyncs = count_calls(ours, lambda: ours.dns_switched)
        bare_fsyncs = count_calls(durable, lambda: durable.switched)
        bench.say(f"  up to DNS switched: the engage makes {fsyncs} fsync calls, the durable"
                  f" bare script {bare_fsyncs}")
        # What-ifs are priced against the shipped engine of the same round (baseline = ours).
        return [
            ratio_result("engage.decision-to-dns [s]", times[0], times[1], 1.3),
            Result("engage.fsyncs-to-dns [calls]", float(fsyncs), float(bare_fsyncs), None,
                   None, None, 1, None),
            ratio_result("engage.what-if-no-fsync [s]", times[2], times[0], None),
            ratio_result("engage.what-if-dir-fsync-on-create-only [s]", times[3], times[0],
                         None),
        ]
    finally:
        world.stop()
