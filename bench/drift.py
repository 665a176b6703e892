"""drift: does the monitor keep its schedule? 2,000 cycles at a 10 ms interval (quick: 300).

The real `engine.monitor.Monitor`, with an `Engine` on a policy whose target is a
loopback HTTPS server demanding a client certificate (in a child process, so it does not
share the monitor's GIL) and whose guard is a plain HTTP server. The benchmark wraps the
instance's `cycle()` to note when each cycle starts; no engine code is changed.

Goals: mean period error ≤ 1 % ((last start − first start) / (N − 1) against the
interval), and no cumulative drift: cycle N starts within one interval of
first start + N × interval. Probe latency percentiles (target probe) are reported.

A cycle that overruns its interval makes the monitor skip the slots it missed (by
design), which fails both goals at 10 ms whenever the cycle itself takes about 10 ms.
So the same checks also run at 50 ms, an interval the cycle fits in (the scheduler on
its own), and `slot-offset-p99` says how far after its slot boundary a cycle starts.
`fsyncs-per-cycle` counts the fsync calls of one cycle (the metrics file, rewritten every
cycle, is no longer fsynced since a what-if here priced it at 0.87–0.94× of the cycle).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import Bench, Result, percentile
from bench.world import LoopbackWorld

NAME = "drift"
INTERVAL = 0.010
SLOW_INTERVAL = 0.050


def run_monitor(policy_path: Path, state_dir: Path, cycles: int,
                durations: list[float] | None = None) -> tuple[list[float], list[float], int]:
    """(cycle start times, target probe latencies, failed probes) of `cycles` cycles."""
    from engine.failover import Engine
    from engine.monitor import Monitor
    from engine.policy import load_policy

    policy = load_policy(policy_path, state_dir=state_dir)
    engine = Engine(policy, send_mail=False)
    monitor = Monitor(engine)
    starts: list[float] = []
    latencies: list[float] = []
    failed = [0]
    cycle, check = monitor.cycle, monitor._check
    target = policy.monitor.target

    def timed_cycle() -> str:
        started = time.monotonic()
        starts.append(started)
        line = cycle()
        if durations is not None:
            durations.append(time.monotonic() - started)
        return line

    def timed_check(name: str):  # type: ignore[no-untyped-def]
        result = check(name)
        if name == target:
            latencies.append(result.latency)
            failed[0] += 0 if result.ok else 1
        return result

    monitor.cycle = timed_cycle  # type: ignore[method-assign]
    monitor._check = timed_check  # type: ignore[method-assign]
    monitor.run_forever(max_cycles=cycles)
    return starts, latencies, failed[0]


def schedule_figures(starts: list[float], interval: float) -> tuple[float, float, int]:
    """(mean period, worst lag behind first + N × interval, cycles that started late)."""
    first = starts[0]
    mean_period = (starts[-1] - first) / (len(starts) - 1)
    lags = [s - (first + n * interval) for n, s in enumerate(starts)]
    late = sum(1 for lag in lags if lag > interval)
    return mean_period, max(lags), late


def slot_offsets(starts: list[float], interval: float) -> list[float]:
    """How late each start is after the slot boundary it was scheduled on.

    A cycle that overran makes the monitor skip slots (by design), but every start should
    still sit just after a boundary first + k × interval: the clock does not drift.
    """
    first = starts[0]
    return [((s - first) % interval) for s in starts]


def _fsyncs_per_cycle(policy: Path, state_dir: Path, cycles: int = 20) -> float:
    """fsync calls per monitor cycle (a machine-independent figure)."""
    import os

    real = os.fsync
    calls = [0]

    def counting(fd: int) -> None:
        calls[0] += 1
        real(fd)

    run_monitor(policy, state_dir, 2)  # the first save creates the state dir and files
    os.fsync = counting
    try:
        run_monitor(policy, state_dir, cycles)
    finally:
        os.fsync = real
    return calls[0] / cycles


def run(bench: Bench) -> list[Result]:
    cycles = 300 if bench.quick else 2000
    work = Path(tempfile.mkdtemp(prefix="drift-", dir=bench.work))
    world = LoopbackWorld(work / "world", dns=False, smtp=False, https_in_child=True).start()
    try:
        policy = world.write_policy(work / "world" / "bench.yaml", interval="10ms")
        run_monitor(policy, work / "warmup", 20)  # imports, TLS context, caches
        durations: list[float] = []
        starts, latencies, failed = run_monitor(policy, work / "state", cycles, durations)
        fsyncs = _fsyncs_per_cycle(policy, work / "fsyncs")
        # The same monitor at an interval its cycle fits in: the scheduler on its own.
        slow = world.write_policy(work / "world" / "slow.yaml", interval="50ms")
        slow_cycles = 100 if bench.quick else 400
        slow_starts, _, _ = run_monitor(slow, work / "slow", slow_cycles)
    finally:
        world.stop()
    mean_period, worst_lag, late = schedule_figures(starts, INTERVAL)
    error = abs(mean_period - INTERVAL) / INTERVAL
    bench.say(f"  {len(starts)} cycles in {starts[-1] - starts[0]:.2f} s: mean period "
              f"{mean_period * 1000:.3f} ms, worst lag {worst_lag * 1000:.2f} ms, "
              f"{late} cycles more than one interval late; {failed} failed probes")
    if failed:
        bench.note(f"drift: {failed} of {len(latencies)} target probes failed")
    ms = [x * 1000 for x in latencies]
    results = [
        Result("drift.mean-period [ms]", mean_period * 1000, INTERVAL * 1000,
               mean_period / INTERVAL, "error ≤ 1%", error <= 0.01, len(starts), None),
        Result("drift.worst-lag [ms]", worst_lag * 1000, INTERVAL * 1000,
               worst_lag / INTERVAL, "≤ 1 interval", worst_lag <= INTERVAL, len(starts), None),
    ]
    for pct in (50, 95, 99):
        results.append(Result(f"drift.probe-latency-p{pct} [ms]", percentile(ms, pct), None,
                              None, None, None, len(ms), None))
    offsets = [x * 1000 for x in slot_offsets(starts, INTERVAL)]
    results += [
        Result("drift.cycle-duration-p50 [ms]", percentile(durations, 50) * 1000,
               INTERVAL * 1000, percentile(durations, 50) / INTERVAL, None, None,
               len(durations), None),
        Result("drift.slot-offset-p99 [ms]", percentile(offsets, 99), INTERVAL * 1000,
               percentile(offsets, 99) / (INTERVAL * 1000), None, None, len(offsets), None),
        Result("drift.fsyncs-per-cycle [calls]", fsyncs, None, None, None, None, 20, None),
    ]
    slow_period, slow_lag, slow_late = schedule_figures(slow_starts, SLOW_INTERVAL)
    slow_error = abs(slow_period - SLOW_INTERVAL) / SLOW_INTERVAL
    bench.say(f"  at 50 ms: mean period {slow_period * 1000:.3f} ms, worst lag "
              f"{slow_lag * 1000:.2f} ms, {slow_late} cycles late")
    results += [
        Result("drift.at-50ms.mean-period [ms]", slow_period * 1000, SLOW_INTERVAL * 1000,
               slow_period / SLOW_INTERVAL, "error ≤ 1%", slow_error <= 0.01, len(slow_starts),
               None),
        Result("drift.at-50ms.worst-lag [ms]", slow_lag * 1000, SLOW_INTERVAL * 1000,
               slow_lag / SLOW_INTERVAL, "≤ 1 interval", slow_lag <= SLOW_INTERVAL,
               len(slow_starts), None),
    ]
    return results
