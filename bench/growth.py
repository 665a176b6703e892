"""growth: how cost grows with the work — validate by policy size, import by dump size.

- validate: `engine.policy.load_policy()` (what `validate` does after start-up) on
  generated policies of 10, 100 and 1,000 engage steps (the five loopback step kinds in
  turn), in-process, the sizes alternating round by round. Goal: linear, each 10× more
  steps ≤ 12× the time. The whole process is dominated by start-up (see cli).
- import: `import_mariadb` of GOCDB-like dumps of 20, 50 and 100 MB (full run only; the
  quick run skips it). Goal: each doubling of the dump ≤ 2.2× the time; a step of
  s₁ → s₂ is normalised per doubling as (t₂ / t₁) ^ (1 / log₂(s₂ / s₁)).
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import Bench, Result, alternate, quartiles, ratio_result

NAME = "growth"
STEPS = (10, 100, 1000)
DUMPS_MB = (20, 50, 100)


def policy_with_steps(base: Path, steps: int, path: Path) -> Path:
    """The loopback policy with its engage steps repeated up to `steps` steps."""
    raw = yaml.safe_load(base.read_text())
    kinds = raw["engage"]
    raw["engage"] = [dict(kinds[i % len(kinds)]) for i in range(steps)]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def validate_growth(bench: Bench, work: Path) -> list[Result]:
    from bench.world import LoopbackWorld
    from engine.policy import load_policy

    world = LoopbackWorld(work / "world", dns=False, smtp=False)
    world.start()
    try:
        base = world.write_policy(work / "world" / "base.yaml")
        paths = [policy_with_steps(base, n, work / "world" / f"steps-{n}.yaml") for n in STEPS]
    finally:
        world.stop()
    for path, n in zip(paths, STEPS, strict=True):
        policy = load_policy(path)
        if len(policy.engage) != n:
            raise RuntimeError(f"{path}: {len(policy.engage)} steps, expected {n}")

    def timer(path: Path):  # type: ignore[no-untyped-def]
        def measure() -> float:
            start = time.perf_counter()
            load_policy(path)
            return time.perf_counter() - start
        return measure

    times = alternate([timer(p) for p in paths], bench.runs * 2, warmup=2)
    for n, series in zip(STEPS, times, strict=True):
        bench.say(f"  validate {n:5d} steps: {statistics.median(series) * 1000:8.1f} ms "
                  f"({statistics.median(series) / n * 1e6:.0f} µs per step)")
    return [
        ratio_result("growth.validate-100-vs-10-steps [s]", times[1], times[0], 12.0),
        ratio_result("growth.validate-1000-vs-100-steps [s]", times[2], times[1], 12.0),
    ]


def per_doubling(t1: list[float], t2: list[float], s1: float, s2: float) -> list[float]:
    exponent = 1 / math.log2(s2 / s1)
    return [(b / a) ** exponent for a, b in zip(t1, t2, strict=True)]


def import_growth(bench: Bench, work: Path) -> list[Result]:
    from bench.mariadb import Ours, Server, make_dump

    server = Server(work / "mariadb", buffer_pool="1G").start()
    try:
        dumps = []
        for size in DUMPS_MB:
            dump, rows = make_dump(server, size, work / f"gocdb-{size}.sql")
            dumps.append(dump)
        loaders = [Ours(server, dump, work / f"ours-{size}", database=f"gocdb_{size}")
                   for dump, size in zip(dumps, DUMPS_MB, strict=True)]
        times = alternate(loaders, 5)
    finally:
        server.stop()
    sizes = [d.stat().st_size for d in dumps]
    results = []
    for i in range(len(DUMPS_MB) - 1):
        ratios = per_doubling(times[i], times[i + 1], sizes[i], sizes[i + 1])
        q1, med, q3 = quartiles(ratios)
        bench.say(f"  import {DUMPS_MB[i]} → {DUMPS_MB[i + 1]} MB: "
                  f"{statistics.median(times[i]):.2f} s → {statistics.median(times[i + 1]):.2f} s,"
                  f" {med:.2f}× per doubling")
        results.append(Result(
            f"growth.import-{DUMPS_MB[i + 1]}-vs-{DUMPS_MB[i]}MB-per-doubling [s]",
            statistics.median(times[i + 1]), statistics.median(times[i]), med,
            "≤ 2.2× per doubling", med <= 2.2, len(ratios), (q3 - q1) / med))
    return results


def run(bench: Bench) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="growth-", dir=bench.work))
    results = validate_growth(bench, work)
    if bench.quick:
        bench.say("  import growth (20/50/100 MB) skipped in --quick")
    else:
        results += import_growth(bench, work)
    return results
