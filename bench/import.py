"""import: import_mariadb against the mariadb client, on a GOCDB-shaped dump.

A throwaway mariadbd (bench/mariadb.py) gets a GOCDB-shaped database
(`tests.fixtures.gocdb_dump.create_gocdb_narrow`: narrow rows, about 10,000 per MB of
dump as GOCDB's own, secondary indexes, foreign keys, a trigger, a view, a function) of
about 50 MB (`--quick`), 200 MB (full) or 541 MB (`--large`), dumped with
`mariadb-dump --single-transaction --routines --events --triggers`. Each round loads
that file three ways on the same server, alternating:

1. ours: `ImportMariadb.apply()` — staging database, tables in parallel over PyMySQL,
   verify, one RENAME TABLE swap into the live database (steady state: the live and
   previous databases exist from the round before, as on a standby importing hourly);
2. `mariadb db < dump.sql` into an empty database (the plain client);
3. `mariadb db -e "SOURCE dump.sql"` into an empty database (the original scripts);
4. what-if: ours with staging tables created with all their keys, as before keys moved
   after the rows (actions/mariadb_late_keys.py; `Loader(late_keys=False)`; baseline:
   ours in the same rounds), so the table says what that change buys.

myloader (Debian `mydumper`) is a peer only when installed: its input is made by
`mydumper` from the same source database. It is not installed by bin/bootstrap; the
bench says so under the table when it is absent.

Goal: ours ≤ 0.6× the plain client (staging + verify + swap), median of the per-round
ratios, with ours' peak RSS ≤ 64 MiB. Peak RSS is measured once per loader after the
timed rounds, each in its own process (`wait4`'s ru_maxrss; ours as a job runs it: a
Python process importing the step). Rows/MB, MB/s and rows/s are reported too.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Bench, Result, alternate, ratio_result, which
from bench.mariadb import Client, Ours, Server, make_dump, ours_peak_rss, run_measured

NAME = "import"
RSS_GOAL = 64 * 1024 * 1024


class MyLoader:
    """`myloader` of a `mydumper` directory into a freshly dropped database."""

    def __init__(self, server: Server, directory: Path, database: str) -> None:
        self.server, self.directory, self.database = server, directory, database
        self.peak_rss = 0

    def __call__(self) -> float:
        self.server.sql(f"DROP DATABASE IF EXISTS `{self.database}`")
        argv = [which("myloader"), f"--defaults-file={_tool_options(self.server)}",
                "--directory", str(self.directory), "--database", self.database,
                "--threads", "2", "--overwrite-tables"]
        start = time.perf_counter()
        code, rss, stderr = run_measured(argv, subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        self.peak_rss = max(self.peak_rss, rss)
        if code != 0:
            raise RuntimeError(f"myloader exited {code}: {stderr.decode(errors='replace')[-300:]}")
        return elapsed


def _tool_options(server: Server) -> Path:
    """An option file for mydumper/myloader (0600; they read their own groups)."""
    import os

    path = server.option_file.with_name("mydumper.cnf")
    text = server.option_file.read_text()
    body = text.split("\n", 1)[1]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"[mydumper]\n{body}[myloader]\n{body}")
    return path


def _mydumper(server: Server, source: str, directory: Path) -> bool:
    if not (shutil.which("mydumper") and shutil.which("myloader")):
        return False
    done = subprocess.run(
        [which("mydumper"), f"--defaults-file={_tool_options(server)}", "--database", source,
         "--outputdir", str(directory), "--triggers", "--routines", "--events", "--threads", "2"],
        stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode != 0:
        print(f"  mydumper failed: {done.stderr.decode(errors='replace')[-300:]}", flush=True)
    return done.returncode == 0


def run(bench: Bench) -> list[Result]:
    size = 541 if bench.large else 50 if bench.quick else 200
    work = Path(tempfile.mkdtemp(prefix="import-", dir=bench.work))
    server = Server(work / "mariadb", buffer_pool="1G").start()
    try:
        began = time.monotonic()
        dump, rows = make_dump(server, size, work / f"gocdb-{size}.sql", narrow=True,
                               keep_source=True)
        megabytes = dump.stat().st_size / 1e6
        bench.say(f"  generated and dumped {megabytes:.1f} MB ({rows} rows,"
                  f" {rows / megabytes:.0f} rows/MB) in {time.monotonic() - began:.0f} s")
        ours = Ours(server, dump, work / "ours")
        client = Client(server, dump, "plain")
        source = Client(server, dump, "sourced", source=True)
        early = WhatIfKeysDuringLoad(server, dump, work / "early", database="gocdb_early")
        contenders: list = [ours, client, source, early]
        myloader = None
        source_db = f"gocdb_src_{size}"
        if _mydumper(server, source_db, work / "mydumper"):
            myloader = MyLoader(server, work / "mydumper", "myloaded")
            contenders.append(myloader)
        else:
            bench.note("import: myloader is not a peer here: Debian's mydumper is not"
                       " installed or mydumper failed (apt-get install mydumper, then run"
                       " again)")
        server.sql(f"DROP DATABASE `{source_db}`")
        runs = 3 if bench.large else 5
        times = alternate(contenders, runs)
        check = server.sql("SELECT COUNT(*) FROM gocdb.downtime_services")[0][0]
        plain = server.sql("SELECT COUNT(*) FROM plain.downtime_services")[0][0]
        if check != plain:
            bench.note(f"import: ours loaded {check} downtime_services rows, the client {plain}")
        ours_rss = ours_peak_rss(server, dump, work / "ours-rss", "gocdb_rss")
    finally:
        server.stop()
    median_ours = sorted(times[0])[len(times[0]) // 2]
    median_client = sorted(times[1])[len(times[1]) // 2]
    mib = 1024 * 1024
    results = [
        ratio_result(f"import.vs-client-{size}MB [s]", times[0], times[1], 0.6),
        ratio_result(f"import.vs-source-{size}MB [s]", times[0], times[2], None),
        Result(f"import.rows-per-MB-{size}MB [rows/MB]", rows / megabytes, None, None, None,
               None, 1, None),
        Result(f"import.peak-rss-{size}MB [MiB]", ours_rss / mib, client.peak_rss / mib,
               ours_rss / max(1, client.peak_rss), "ours ≤ 64 MiB", ours_rss <= RSS_GOAL,
               1, None),
        Result(f"import.throughput-{size}MB [MB/s]", megabytes / median_ours,
               megabytes / median_client, median_client / median_ours, None, None, runs, None),
        Result(f"import.rows-{size}MB [rows/s]", rows / median_ours, rows / median_client,
               median_client / median_ours, None, None, runs, None),
    ]
    results.append(ratio_result(f"import.what-if-keys-during-load-{size}MB [s]", times[3],
                                times[0], None))
    if myloader is not None:
        results.append(ratio_result(f"import.vs-myloader-{size}MB [s]", times[0], times[4],
                                    None))
    return results


# -- what-if: keys built during the load (before the late-keys change) ----------------------
class WhatIfKeysDuringLoad(Ours):
    """Ours with every staging table created with all its keys, as before the late-keys
    change (Loader(late_keys=False)): prices what actions/mariadb_late_keys.py buys."""

    def __call__(self) -> float:
        import functools

        import actions.import_mariadb

        original = actions.import_mariadb.Loader
        actions.import_mariadb.Loader = functools.partial(  # type: ignore[misc, assignment]
            original, late_keys=False)
        try:
            return super().__call__()
        finally:
            actions.import_mariadb.Loader = original  # type: ignore[misc]
