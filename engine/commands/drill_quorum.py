"""`failover-engine drill --quorum`: three observers agree through a real etcd (issue 14).

On 127.0.0.1, in a temporary directory, it starts a 3-member etcd (Debian's etcd-server,
`engine/drillkit/etcd.py`), a plain HTTP "production" and, per scenario, three observer
engines: real `failover-engine run` processes (the production code), each with its own
policy and state dir. One observer, "standby", is the only actor; "obs1" and "obs2" only
vote; two must agree (`engage_when: {down: 2}`). Each scenario has its own key prefix
in the store and its own state dirs, so none inherits another's leader key or state.

- S1 production down → exactly one engage, by the standby (counted in the three audit
  logs), and the leader key is the standby's.
- S2 the standby cut from production only (its probe points at a closed loopback port)
  while production is up → no engage, and its `status` says "quorum not reached (1/2)".
- S3 obs2 cut from everything (restarted with closed ports for production and etcd) →
  its verdict vanishes from the store (its lease runs out), it never acts, its status says
  the store is unreachable; with production really down the other two engage once.

Short intervals (500 ms cycles, 3 failures to engage) keep the whole drill under a
minute on an idle machine. Every claim is checked against the store and the observers'
own files and commands, not taken from the drill's own bookkeeping.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.commands.drill import say, wait_for
from engine.drillkit.ports import LOOPBACK, free_port
from engine.errors import FailoverError
from engine.paths import StatePaths
from engine.runner import step_label
from engine.states import STANDBY_BUSY, State

ACTOR = "standby"
NAMES = (ACTOR, "obs1", "obs2")
INTERVAL = 0.5  # seconds per cycle
FAILURES = 3  # failures_to_engage
# After the first engage, every observer goes on cycling this many times: still one engage.
CONFIRM_CYCLES = 2 * FAILURES
ENGAGE_STEP = step_label("engage", 0)
SCENARIOS = (
    ("S1", "production down → exactly one engage, by the standby"),
    ("S2", "the standby cut from production only → no engage, quorum not reached (1/2)"),
    ("S3", "obs2 cut from everything → it never acts and its verdict vanishes; "
           "production down → the other two engage once"),
)
# Log lines relayed to the timeline: those that contain one of these.
RELAYED = ("quorum", "engaging the failover", "state.changed", "step.finish", "disarmed")
# Python that runs the engine's own CLI: the same code path as the installed command.
CLI = "import sys; from engine.cli import main; sys.exit(main())"


def _engine_env() -> dict[str, str]:
    """The observers' environment: the engine package importable wherever it lives."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


@dataclass
class Observer:
    """One `failover-engine run` process with its policy, state dir and log."""

    name: str
    policy: Path
    state_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", CLI, "--policy", str(self.policy), "run"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=_engine_env())

    def record(self) -> dict[str, Any]:
        """Its state.json as it is now ({} before the first save or mid-replace)."""
        try:
            data = json.loads(StatePaths(self.state_dir).state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def cycles(self) -> int:
        value = self.record().get("cycles", 0)
        return value if isinstance(value, int) else 0

    def state(self) -> str:
        return str(self.record().get("state", ""))

    def engages(self) -> int:
        """How many engage runs its audit log shows (each starts with engage step 1)."""
        try:
            lines = StatePaths(self.state_dir).audit_log.read_text().splitlines()
        except FileNotFoundError:
            return 0
        count = 0
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("step") == ENGAGE_STEP:
                count += 1
        return count

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> str:
        """`failover-engine status` for this observer, through the CLI."""
        done = subprocess.run([sys.executable, "-c", CLI, "--policy", str(self.policy),
                               "status"], capture_output=True, text=True, timeout=60,
                              env=_engine_env(), check=False)
        return done.stdout + done.stderr

    def kill(self) -> None:
        """SIGKILL: the observer is lost at once (nothing withdrawn on its way out)."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
        if self.process is not None:
            self.process.wait(30)

    def terminate(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()

    def reap(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])


@dataclass
class Scenario:
    """One scenario's verdict: what it claims, the checks made, and whether all held."""

    key: str
    claim: str
    checks: list[tuple[str, bool]] = field(default_factory=list)
    error: str | None = None

    @property
    def held(self) -> bool:
        return self.error is None and bool(self.checks) and all(ok for _, ok in self.checks)


class QuorumDrill:
    """The world (etcd, production) and the scenarios run against it."""

    def __init__(self, work: Path, endpoints: list[str], production: Any) -> None:
        self.work = work
        self.endpoints = endpoints
        self.production = production
        self.start = time.monotonic()
        self.groups: list[list[Observer]] = []
        self._read: dict[Path, int] = {}  # log → bytes relayed so far
        self._last: dict[str, str] = {}  # observer → the last line relayed

    def relay(self) -> None:
        """Print the observers' new log lines about the quorum, the state and the steps
        (each observer's line once while it repeats): the timeline of the scenario."""
        for observer in self.groups[-1] if self.groups else []:
            try:
                with observer.log.open("rb") as handle:
                    handle.seek(self._read.get(observer.log, 0))
                    chunk = handle.read()
            except OSError:
                continue
            complete = chunk[:chunk.rfind(b"\n") + 1]
            self._read[observer.log] = self._read.get(observer.log, 0) + len(complete)
            for raw in complete.decode(errors="replace").splitlines():
                message = raw.split(" ", 1)[-1]
                if not any(word in message for word in RELAYED) or message.startswith(
                        ("probe.cycle", "event.")):
                    continue
                if self._last.get(observer.name) != message:
                    self._last[observer.name] = message
                    self.say(f"{observer.name}: {message}")

    # -- plumbing -----------------------------------------------------------------------
    def say(self, message: str) -> None:
        say(self.start, message)

    def wait(self, condition: Callable[[], bool], timeout: float, what: str,
             group: list[Observer] | None = None) -> None:
        """Poll `condition` (relaying the observers' lines meanwhile); FailoverError naming
        `what` on timeout, or at once naming an observer of `group` that died."""
        def ready() -> bool:
            self.relay()
            for observer in group or []:
                if observer.process is not None and not observer.alive():
                    raise FailoverError(f"{observer.name} exited "
                                        f"{observer.process.returncode}: {observer.tail()}")
            return condition()

        wait_for(ready, timeout, what)

    def client(self) -> Any:
        from engine.etcd import EtcdClient

        return EtcdClient(self.endpoints, timeout=2.0)

    def verdicts(self, prefix: str) -> list[str]:
        """Names of the observers whose verdict is in the store now (linearizable read)."""
        under = f"{prefix}observers/"
        return sorted(kv.key.decode()[len(under):]
                      for kv in self.client().range(under, prefix=True))

    def leader(self, prefix: str) -> str | None:
        """Who holds the leader key (its value names the holder), None when nobody does."""
        kv = self.client().get(f"{prefix}leader")
        if kv is None:
            return None
        try:
            return str(json.loads(kv.value).get("name"))
        except (ValueError, AttributeError):
            return "(unreadable)"

    def write_policy(self, directory: Path, name: str, url: str, endpoints: list[str],
                     prefix: str) -> Path:
        """One observer's policy: its own state dir, one actor, two of three must agree."""
        path = directory / f"{name}.yaml"
        path.write_text(f"""\
version: 1
name: drill-quorum
state_dir: state-{name}
probes:
  production:
    http: {{url: "{url}", timeout: 300ms}}
monitor:
  target: production
  interval: {int(INTERVAL * 1000)}ms
  failures_to_engage: {FAILURES}
quorum:
  endpoints: {json.dumps(endpoints)}
  prefix: {prefix}
  name: {name}
  observers: {json.dumps(list(NAMES))}
  actors: [{ACTOR}]
  engage_when: {{down: 2}}
  lease_ttl: 5s
  timeout: 200ms
engage:
  - lock: {{state: present}}
restore:
  - lock: {{state: absent}}
""")
        return path

    def observers(self, scenario: str, urls: dict[str, str],
                  endpoints: dict[str, list[str]] | None = None) -> list[Observer]:
        """Write the three policies under `<work>/<scenario>/` and start the observers."""
        directory = self.work / scenario
        directory.mkdir()
        prefix = f"/failover-drill/{scenario}/"
        group = []
        for name in NAMES:
            policy = self.write_policy(directory, name, urls[name],
                                       (endpoints or {}).get(name, self.endpoints), prefix)
            group.append(Observer(name, policy, directory / f"state-{name}",
                                  directory / f"{name}.log"))
        self.groups.append(group)
        for observer in group:
            observer.start()
        return group

    def stop(self, group: list[Observer]) -> None:
        self.relay()
        for observer in group:
            observer.terminate()
        for observer in group:
            observer.reap()

    def stop_all(self) -> None:
        for group in self.groups:
            self.stop(group)

    @staticmethod
    def engages(group: list[Observer]) -> dict[str, int]:
        return {o.name: o.engages() for o in group if o.engages()}

    def confirm(self, group: list[Observer], what: str) -> None:
        """Let every observer run CONFIRM_CYCLES more cycles (well past the threshold)."""
        marks = {o.name: o.cycles() for o in group}
        self.wait(lambda: all(o.cycles() >= marks[o.name] + CONFIRM_CYCLES for o in group),
                  30, what, group)

    # -- the scenarios ------------------------------------------------------------------
    def s1(self, result: Scenario) -> None:
        group = self.observers("s1", {n: self.production.url("/health") for n in NAMES})
        prefix = "/failover-drill/s1/"
        try:
            self.wait(lambda: all(o.cycles() >= 2 for o in group), 30,
                      "two cycles on each observer", group)
            self.wait(lambda: self.verdicts(prefix) == sorted(NAMES), 10,
                      "the three verdicts in the store", group)
            self.say(f"three observers cycling, verdicts in etcd: "
                     f"{', '.join(self.verdicts(prefix))}; stopping production")
            self.production.stop()
            self.wait(lambda: bool(self.engages(group)), 30, "an engage", group)
            self.relay()
            self.say(f"engaged: {_counts(self.engages(group))} (audit logs); "
                     f"{CONFIRM_CYCLES} more cycles on every observer")
            self.confirm(group, "more cycles on every observer")
            engages = self.engages(group)
            standby = group[0]
            holder = self.leader(prefix)
            self.say(f"audit logs: {_counts(engages)}; leader key held by {holder}; "
                     f"states: {_states(group)}")
            result.checks += [
                ("exactly one engage across the three audit logs",
                 sum(engages.values()) == 1),
                ("it is the standby's", engages == {ACTOR: 1}),
                ("the standby is engaged", standby.state() == State.ENGAGED),
                ("the leader key is the standby's", holder == ACTOR),
                ("the voters did not act", all(o.state() not in STANDBY_BUSY
                                               for o in group[1:])),
            ]
        finally:
            self.stop(group)

    def s2(self, result: Scenario) -> None:
        self.production.start()
        closed = f"http://{LOOPBACK}:{free_port()}/health"
        urls = {n: self.production.url("/health") for n in NAMES} | {ACTOR: closed}
        group = self.observers("s2", urls)
        prefix = "/failover-drill/s2/"
        standby = group[0]
        try:
            self.say(f"production up; the standby probes {closed} (closed)")
            # Past its threshold, then as many cycles again: time for an engage to show.
            self.wait(lambda: standby.cycles() >= FAILURES + CONFIRM_CYCLES, 30,
                      "the standby past its threshold", group)
            status = standby.status()
            line = next((s.strip() for s in status.splitlines()
                         if s.startswith("last cycle:")), "(no last cycle line)")
            self.say(f"`failover-engine status` on the standby: {line}")
            engages = self.engages(group)
            result.checks += [
                ("no engage in any audit log", not engages),
                ("the standby's status says quorum not reached (1/2)",
                 "quorum not reached (1/2)" in status),
                ("the standby stays suspect", standby.state() == State.SUSPECT),
                ("nobody holds the leader key", self.leader(prefix) is None),
            ]
        finally:
            self.stop(group)

    def s3(self, result: Scenario) -> None:
        group = self.observers("s3", {n: self.production.url("/health") for n in NAMES})
        prefix = "/failover-drill/s3/"
        cut = group[2]
        try:
            self.wait(lambda: self.verdicts(prefix) == sorted(NAMES), 30,
                      "the three verdicts in the store", group)
            # Lost at once (SIGKILL, nothing withdrawn), back cut from production and etcd.
            cut.kill()
            closed = f"http://{LOOPBACK}:{free_port()}"
            cut.policy = self.write_policy(
                cut.policy.parent, cut.name, f"{closed}/health",
                [f"http://{LOOPBACK}:{free_port()}" for _ in range(3)], prefix)
            cut.start()
            self.say(f"{cut.name} restarted with closed ports for production and etcd")
            self.wait(lambda: cut.name not in self.verdicts(prefix), 15,
                      f"{cut.name}'s verdict to vanish", group)
            self.say(f"{cut.name}'s verdict vanished from etcd (its lease ran out); "
                     "stopping production")
            self.production.stop()
            self.wait(lambda: bool(self.engages(group)), 30, "an engage", group)
            self.confirm(group, "more cycles on every observer")
            engages = self.engages(group)
            running = cut.alive()
            status = cut.status()
            self.say(f"audit logs: {_counts(engages)}; leader key held by "
                     f"{self.leader(prefix)}; states: {_states(group)}")
            result.checks += [
                ("exactly one engage, the standby's", engages == {ACTOR: 1}),
                (f"{cut.name} kept running, cut off", running),
                (f"{cut.name} never acted", cut.engages() == 0
                 and cut.state() not in STANDBY_BUSY),
                (f"{cut.name}'s verdict is gone from the store",
                 cut.name not in self.verdicts(prefix)),
                (f"{cut.name}'s status says the store is unreachable",
                 "quorum store unreachable" in status),
            ]
        finally:
            self.stop(group)


def _counts(engages: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(engages.items())) or "none"


def _states(group: list[Observer]) -> str:
    return ", ".join(f"{o.name} {o.state() or '?'}" for o in group)


def main(args: argparse.Namespace) -> int:
    """Run S1–S3; exit 0 only when every scenario held, 1 naming those that did not."""
    from engine.drillkit.etcd import find_etcd

    binary = find_etcd()  # before anything starts: one line naming etcd-server
    # A SIGTERM (a test runner's timeout, systemd) must still stop etcd and the observers.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _drill(args, binary)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _drill(args: argparse.Namespace, binary: str) -> int:
    from engine.drillkit.etcd import EtcdLab, EtcdLabError
    from engine.drillkit.https import HttpsServer

    work = Path(tempfile.mkdtemp(prefix="failover-drill-quorum-"))
    print(f"failover-engine drill --quorum — etcd and three observers on 127.0.0.1, "
          f"files in {work}", flush=True)
    lab = EtcdLab(work / "etcd", binary=binary)
    production = HttpsServer(cert=None, key=None, routes={"/health": (200, "OK")})
    drill: QuorumDrill | None = None
    results: list[Scenario] = []
    try:
        try:
            lab.start()
        except EtcdLabError as exc:
            raise FailoverError(f"--quorum: cannot start etcd: {exc}") from None
        production.start()
        drill = QuorumDrill(work, lab.endpoints, production)
        drill.say(f"etcd members {', '.join(lab.endpoints)}; production "
                  f"{production.url('/health')}; observers standby (acts), obs1, obs2 "
                  f"(vote), {INTERVAL:g} s cycles, {FAILURES} failures, 2 must agree")
        for key, claim, run in ((*SCENARIOS[0], drill.s1), (*SCENARIOS[1], drill.s2),
                                (*SCENARIOS[2], drill.s3)):
            scenario = Scenario(key, claim)
            print(f"\n{key}: {claim}", flush=True)
            try:
                run(scenario)
            except FailoverError as exc:
                scenario.error = str(exc)
            results.append(scenario)
            _report(drill, scenario)
    finally:
        if drill is not None:
            drill.stop_all()
        production.stop()
        lab.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [s.key for s in results if not s.held]
    print()
    for scenario in results:
        print(f"{scenario.key} {'held' if scenario.held else 'FAILED'}: {scenario.claim}")
    print("\ndrill --quorum passed" if not failed else
          f"\ndrill --quorum FAILED: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


def _report(drill: QuorumDrill, scenario: Scenario) -> None:
    for text, ok in scenario.checks:
        print(f"    {'✔' if ok else '✘'} {text}", flush=True)
    if scenario.error:
        print(f"    ✘ {scenario.error}", flush=True)
        for observer in drill.groups[-1] if drill.groups else []:
            print(f"      {observer.name}: {observer.tail()}", flush=True)
    drill.say(f"{scenario.key} {'held' if scenario.held else 'FAILED'}")

