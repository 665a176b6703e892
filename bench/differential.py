"""`bench/run --differential N`: the import differential test for N seeds (long runs).

The same comparison as tests/integration/test_import_differential.py (which runs the
fixed seeds 0-29): tests/fixtures/random_dump.py builds a random database, dumps it with
the real `mariadb-dump`, loads it with import_mariadb and with `mariadb < dump`, and
compares counts, checksums and SHOW CREATE of every object. Seeds start at 1000 by
default so a long run covers new ground. Disagreeing dumps are kept in `keep_dir` and
listed; the exit status is 1 when any seed disagreed.
"""
from __future__ import annotations

import time
from pathlib import Path

from bench.mariadb import Server


def run(count: int, work: Path, keep_dir: Path, first_seed: int = 1000) -> int:
    """Run `count` seeds; print one line per disagreement and a summary; problems found."""
    from tests.fixtures.random_dump import cleanup, run_case

    server = Server(work / "mariadb", buffer_pool="256M").start()
    problems = 0
    started = time.monotonic()
    try:
        for seed in range(first_seed, first_seed + count):
            try:
                problem = run_case(server, seed, keep_dir)
            except Exception as exc:  # noqa: BLE001 - a broken seed is a finding, not a stop
                problem = f"seed {seed}: {type(exc).__name__}: {exc}"
            if problem:
                problems += 1
                print(f"MISMATCH {problem}", flush=True)
            done = seed - first_seed + 1
            if done % 50 == 0:
                print(f"  {done}/{count} seeds, {problems} mismatches,"
                      f" {time.monotonic() - started:.0f} s", flush=True)
        cleanup(server)
    finally:
        server.stop()
    print(f"differential: {count} seeds ({first_seed}..{first_seed + count - 1}),"
          f" {problems} mismatches, {time.monotonic() - started:.0f} s"
          + (f"; dumps kept in {keep_dir}" if problems else ""))
    return problems
