"""footprint: memory and CPU of `failover-engine run`, a real process, over many cycles.

`bin/failover-engine --policy P run` watches a loopback HTTPS server (client certificate
required) and a plain HTTP guard at a 10 ms interval. The benchmark reads the cycle count
from `state.json`, and RSS (`VmRSS`) and CPU time (`utime + stime`) from /proc:

- RSS after 1,000 cycles ≤ 60 MB, and no growth between cycle 1,000 and 2,000
  (≤ 1 MB; quick: cycles 300 and 600);
- CPU seconds per hour at the production interval of 10 s, extrapolated:
  360 × (CPU per cycle, measured between the two marks) + 3,600 × (CPU per second of a
  monitor idling between cycles, measured on a second process whose interval is 1 h:
  it wakes every 200 ms to look for requests and signals).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import LAUNCHER, PYTHON, REPO, Bench, BenchError, Result, child_env
from bench.world import LoopbackWorld

NAME = "footprint"
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of the live threads, in ns precision (/proc/PID/task/*/schedstat).

    Finer than the 10 ms ticks of /proc/PID/stat, but blind to threads that have exited:
    right for an idle monitor, whose only thread is the main one.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def cycles(state_file: Path) -> int:
    try:
        return int(json.loads(state_file.read_text()).get("cycles", 0))
    except (OSError, ValueError):
        return 0


class RunProcess:
    """`failover-engine run` on a policy, in the background, stderr to a log file.

    With `tick`, the process is started through `python -c` that sets
    `engine.monitor.TICK` first: a what-if for the idle wake-up period.
    """

    def __init__(self, policy: Path, state_dir: Path, log: Path, tick: float | None = None
                 ) -> None:
        self.state_file = state_dir / "state.json"
        self.log = log
        args = ["--policy", str(policy), "--state-dir", str(state_dir), "run"]
        argv = [PYTHON, str(LAUNCHER), *args]
        if tick is not None:
            argv = [PYTHON, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                    f"import engine.monitor; engine.monitor.TICK = {tick!r}; "
                    f"from engine.cli import main; sys.exit(main({args!r}))"]
        with open(log, "wb") as err:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env=child_env())

    def wait_cycles(self, count: int, timeout: float) -> tuple[float, float, float]:
        """Wait until `count` cycles are done; (RSS MB, CPU s, monotonic time) right then."""
        deadline = time.monotonic() + timeout
        while cycles(self.state_file) < count:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace").splitlines()[-3:]
                raise BenchError(f"`run` exited {self.process.returncode}: {' | '.join(tail)}")
            if time.monotonic() > deadline:
                raise BenchError(f"`run` did only {cycles(self.state_file)} of {count} cycles "
                                 f"in {timeout:.0f} s")
            time.sleep(0.02)
        pid = self.process.pid
        return rss_mb(pid), cpu_seconds(pid), time.monotonic()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def idle_cpu(policy: Path, work: Path, label: str, seconds: float,
             tick: float | None = None) -> tuple[float, float]:
    """(CPU seconds per second, RSS MB) of a `run` idling between two cycles."""
    idle = RunProcess(policy, work / f"state-{label}", work / f"{label}.log", tick=tick)
    try:
        idle.wait_cycles(1, timeout=60)
        time.sleep(1.0)  # past the first cycle's tail
        cpu_a, ta = thread_cpu_seconds(idle.process.pid), time.monotonic()
        time.sleep(seconds)
        cpu_b, tb = thread_cpu_seconds(idle.process.pid), time.monotonic()
        rss = rss_mb(idle.process.pid)
    finally:
        idle.stop()
    return (cpu_b - cpu_a) / (tb - ta), rss


def run(bench: Bench) -> list[Result]:
    first, second = (300, 600) if bench.quick else (1000, 2000)
    idle_seconds = 5.0 if bench.quick else 20.0
    work = Path(tempfile.mkdtemp(prefix="footprint-", dir=bench.work))
    world = LoopbackWorld(work / "world", dns=False, smtp=False).start()
    try:
        fast = world.write_policy(work / "world" / "fast.yaml", interval="10ms")
        slow = world.write_policy(work / "world" / "slow.yaml", interval="1h")
        monitor = RunProcess(fast, work / "state-fast", work / "fast.log")
        try:
            rss1, cpu1, t1 = monitor.wait_cycles(first, timeout=first * 0.2 + 60)
            rss_mid, _, _ = monitor.wait_cycles((first + second) // 2, timeout=first * 0.2 + 60)
            rss2, cpu2, t2 = monitor.wait_cycles(second, timeout=first * 0.2 + 60)
        finally:
            monitor.stop()
        done = second - first
        per_cycle = (cpu2 - cpu1) / done
        bench.say(f"  RSS {rss1:.1f} MB at cycle {first}, {rss_mid:.1f} MB at "
                  f"{(first + second) // 2}, {rss2:.1f} MB at {second}; {done} cycles in "
                  f"{t2 - t1:.1f} s; CPU {per_cycle * 1000:.2f} ms per cycle")
        idle_rate, idle_rss = idle_cpu(slow, work, "idle", idle_seconds)
        per_hour = 360 * per_cycle + 3600 * idle_rate
        bench.say(f"  idle monitor: {idle_rate * 1000:.2f} ms CPU per second "
                  f"({idle_rate * 3600:.1f} s/h); RSS {idle_rss:.1f} MB; CPU at a 10 s interval: "
                  f"{360 * per_cycle:.1f} s/h cycling + {3600 * idle_rate:.1f} s/h idling")
    finally:
        world.stop()
    growth = rss2 - rss1
    return [
        Result(f"footprint.rss-at-{first} [MB]", rss1, 60.0, rss1 / 60.0, "≤ 60 MB",
               rss1 <= 60.0, first, None),
        Result(f"footprint.rss-growth-{first}-{second} [MB]", growth, 1.0, None, "≤ 1 MB",
               growth <= 1.0, done, None),
        Result("footprint.cpu-per-cycle [ms]", per_cycle * 1000, None, None, None, None, done,
               None),
        Result("footprint.cpu-per-hour-at-10s [s]", per_hour, None, None, None, None, done,
               None),
        Result("footprint.idle-cpu-per-hour [s]", idle_rate * 3600, None, None, None, None, 1,
               None),
    ]
