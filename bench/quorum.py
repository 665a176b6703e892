"""quorum: what the `quorum:` block costs in detection and memory (issue 14).

A 3-member etcd (Debian `etcd-server`, `engine.drillkit.etcd.EtcdLab`) and a plain HTTP
production on loopback. Rounds alternate, back to back:

- **ours**: three observers, `bin/failover-engine run` as real processes, "standby" the
  one actor, "obs1" and "obs2" voters, two must agree (`engage_when: {down: 2}`), each
  round on its own key prefix and state dirs;
- **baseline**: the standby alone, the same policy without the `quorum:` block.

Production is stopped once every observer has cycled twice, and the round ends when the
standby engages. **Detection** is the number of failed probes the standby counted when it
decided to engage — the `(N/3)` of its "engaging the failover" log line — that is, the
cycles from production down to the engage decision (3 = the threshold, nothing added).
Goal: the quorum adds at most one cycle (the voters' own counts must reach the threshold
too, and they are up to one cycle out of phase with the actor). The row's `ours` and
`baseline` are the medians; a second row gives the worst round's difference.

**Peak RSS** is `VmHWM` from /proc/PID/status of every observer process just before it
is stopped (after the engage and `SOAK` more cycles), the largest of the three observers
over all rounds against the lone standby's largest. Goal: ≤ 60 MB per observer. The first
round is a warm-up (it fills the bytecode cache, which costs memory) and not counted.
Rounds: 3 (quick) or 7 (full).

Full run only: three observers with a quorum run 600 cycles at 100 ms with production up;
each one's `VmRSS` at cycles 100 and 600 (growth ≤ 1 MB, as `footprint` asks of a lone
observer) and its `VmHWM` at the end (≤ 60 MB).
"""
from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import LAUNCHER, PYTHON, Bench, BenchError, Result, child_env

if TYPE_CHECKING:
    from engine.drillkit.https import HttpsServer

NAME = "quorum"
NAMES = ("standby", "obs1", "obs2")
INTERVAL_MS = 300
FAILURES = 3
SOAK = 10  # cycles every observer runs after the engage, before its VmHWM is read
QUICK_SOAK = 5
# The long run (full mode only): three observers with a quorum, production up.
LONG_INTERVAL_MS = 100
LONG_MARKS = (100, 600)
MAX_RSS_MB = 60.0
DECISION = re.compile(r"probe \S+ failed \((\d+)/\d+\)[^\n]*\); engaging the failover")


def policy_text(name: str, url: str, endpoints: list[str] | None, prefix: str,
                interval_ms: int = INTERVAL_MS) -> str:
    """One observer's policy; without `endpoints`, the same policy with no quorum."""
    quorum = "" if endpoints is None else f"""\
quorum:
  endpoints: {json.dumps(endpoints)}
  prefix: {prefix}
  name: {name}
  observers: {json.dumps(list(NAMES))}
  actors: [standby]
  engage_when: {{down: 2}}
  lease_ttl: 5s
  timeout: {interval_ms // 3}ms
"""
    return f"""\
version: 1
name: bench-quorum
state_dir: state-{name}
probes:
  production:
    http: {{url: "{url}", timeout: {interval_ms // 3}ms}}
monitor:
  target: production
  interval: {interval_ms}ms
  failures_to_engage: {FAILURES}
{quorum}engage:
  - lock: {{state: present}}
restore:
  - lock: {{state: absent}}
"""


class Observer:
    """A `failover-engine run` process on one policy."""

    def __init__(self, directory: Path, name: str, text: str) -> None:
        self.name = name
        self.policy = directory / f"{name}.yaml"
        self.policy.write_text(text)
        self.state_file = directory / f"state-{name}" / "state.json"
        self.log = directory / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [PYTHON, str(LAUNCHER), "--policy", str(self.policy), "run"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=child_env())

    def record(self) -> dict:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def cycles(self) -> int:
        return int(self.record().get("cycles", 0) or 0)

    def decision(self) -> int | None:
        """The failure count at the engage decision (from its log), None before it."""
        found = DECISION.search(self.log.read_text(errors="replace"))
        return int(found.group(1)) if found else None

    def memory_mb(self, field: str = "VmHWM") -> float:
        """`VmHWM` (peak) or `VmRSS` (now) from /proc/PID/status, in MB."""
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
        raise BenchError(f"no {field} for {self.name} (pid {self.process.pid})")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-3:]
            raise BenchError(f"{self.name} exited {self.process.returncode}: "
                             + " | ".join(tail))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def wait(condition: Callable[[], bool], group: list[Observer], timeout: float,
         what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for observer in group:
            observer.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def one_round(work: Path, label: str, production: HttpsServer, endpoints: list[str] | None,
              soak: int) -> tuple[int, list[float]]:
    """(failures counted at the engage decision, each observer's VmHWM in MB)."""
    directory = work / label
    directory.mkdir()
    production.start()  # idempotent; the first start picks the port the URL names
    url = production.url("/health")
    names = NAMES if endpoints is not None else NAMES[:1]
    group = [Observer(directory, n, policy_text(n, url, endpoints, f"/bench/{label}/"))
             for n in names]
    try:
        wait(lambda: all(o.cycles() >= 2 for o in group), group, 60, "two cycles each")
        production.stop()
        standby = group[0]
        wait(lambda: standby.decision() is not None, group, 60, "the engage decision")
        marks = [o.cycles() for o in group]
        wait(lambda: all(o.cycles() >= m + soak for o, m in zip(group, marks, strict=True)),
             group, 60, f"{soak} more cycles")
        decision = standby.decision()
        assert decision is not None
        return decision, [o.memory_mb() for o in group]
    finally:
        for observer in group:
            observer.stop()


def run(bench: Bench) -> list[Result]:
    from engine.drillkit.etcd import EtcdLab
    from engine.drillkit.https import HttpsServer

    work = Path(tempfile.mkdtemp(prefix="quorum-", dir=bench.work))
    lab = EtcdLab(work / "etcd").start()
    production = HttpsServer(cert=None, key=None, routes={"/health": (200, "OK")})
    with_quorum: list[int] = []
    alone: list[int] = []
    rss_quorum: list[float] = []
    rss_alone: list[float] = []
    runs = 3 if bench.quick else bench.runs
    soak = QUICK_SOAK if bench.quick else SOAK
    long_rows: list[Result] = []
    try:
        for index in range(1 + runs):  # the first round is a warm-up
            decision_q, rss_q = one_round(work, f"q{index}", production, lab.endpoints, soak)
            decision_a, rss_a = one_round(work, f"a{index}", production, None, soak)
            bench.say(f"  round {index}{' (warm-up)' if index == 0 else ''}: engage decided "
                      f"after {decision_q} failed cycles with the quorum, {decision_a} "
                      f"alone; VmHWM {max(rss_q):.1f} MB (max of 3) vs {rss_a[0]:.1f} MB")
            if index == 0:
                continue
            with_quorum.append(decision_q)
            alone.append(decision_a)
            rss_quorum += rss_q
            rss_alone += rss_a
        if bench.quick:
            bench.say(f"  the {LONG_MARKS[1]}-cycle run with a quorum: full run only")
        else:
            long_rows = long_run(bench, work, production, lab.endpoints)
    finally:
        production.stop()
        lab.stop()
    extra = [q - a for q, a in zip(with_quorum, alone, strict=True)]
    ratios = [q / a for q, a in zip(with_quorum, alone, strict=True)]
    median_extra = statistics.median(extra)
    bench.note(f"quorum detection: extra cycles per round {extra} (interval "
               f"{INTERVAL_MS} ms, threshold {FAILURES}); peak RSS per observer "
               f"{min(rss_quorum):.1f}–{max(rss_quorum):.1f} MB with the quorum, "
               f"{min(rss_alone):.1f}–{max(rss_alone):.1f} MB alone")
    peak_q, peak_a = max(rss_quorum), max(rss_alone)
    return [
        Result("quorum.detection [cycles]", statistics.median(with_quorum),
               statistics.median(alone), statistics.median(ratios), "≤ +1 cycle",
               median_extra <= 1, runs, None),
        Result("quorum.detection-extra-worst [cycles]", float(max(extra)), 1.0, None,
               "≤ 1", max(extra) <= 1, runs, None),
        Result("quorum.peak-rss-per-observer [MB]", peak_q, peak_a, peak_q / peak_a,
               "≤ 60 MB", peak_q <= MAX_RSS_MB, len(rss_quorum), None),
        *long_rows,
    ]


def long_run(bench: Bench, work: Path, production: HttpsServer, endpoints: list[str]
             ) -> list[Result]:
    """Three quorum observers for LONG_MARKS[1] cycles at LONG_INTERVAL_MS, production up:
    each one's VmRSS at both marks (growth) and its VmHWM at the end."""
    directory = work / "long"
    directory.mkdir()
    production.start()
    url = production.url("/health")
    group = [Observer(directory, n, policy_text(n, url, endpoints, "/bench/long/",
                                                LONG_INTERVAL_MS)) for n in NAMES]
    first, last = LONG_MARKS
    budget = last * LONG_INTERVAL_MS / 1000 * 2 + 60
    try:
        wait(lambda: all(o.cycles() >= first for o in group), group, budget, f"{first} cycles")
        rss_first = [o.memory_mb("VmRSS") for o in group]
        wait(lambda: all(o.cycles() >= last for o in group), group, budget, f"{last} cycles")
        rss_last = [o.memory_mb("VmRSS") for o in group]
        peaks = [o.memory_mb() for o in group]
    finally:
        for observer in group:
            observer.stop()
    growth = max(b - a for a, b in zip(rss_first, rss_last, strict=True))
    bench.say(f"  {last} cycles at {LONG_INTERVAL_MS} ms with a quorum: VmRSS "
              + ", ".join(f"{a:.1f} → {b:.1f}" for a, b in zip(rss_first, rss_last,
                                                                 strict=True))
              + f" MB; VmHWM max {max(peaks):.1f} MB")
    return [
        Result(f"quorum.peak-rss-at-{last} [MB]", max(peaks), MAX_RSS_MB,
               max(peaks) / MAX_RSS_MB, "≤ 60 MB", max(peaks) <= MAX_RSS_MB, last, None),
        Result(f"quorum.rss-growth-{first}-{last} [MB]", growth, 1.0, None, "≤ 1 MB",
               growth <= 1.0, last - first, None),
    ]
