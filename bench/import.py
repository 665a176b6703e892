"""import: import_mariadb against the mariadb client loading the same GOCDB-like dump.

A throwaway mariadbd (bench/mariadb.py) gets a generated GOCDB-like database of 20 MB
(quick) or 200 MB (full), dumped with `mariadb-dump --routines --events --triggers`:
eight InnoDB tables with foreign keys, a view, a trigger, two routines, multi-row
INSERTs. Each round loads that file four ways on the same server:

1. ours: `ImportMariadb.apply()` — staging database, tables in parallel over PyMySQL,
   verify, one RENAME TABLE swap into the live database (steady state: the live and
   previous databases exist from the round before, as on a standby importing hourly);
2. `mariadb db < dump.sql` into an empty database;
3. `mariadb db -e "SOURCE dump.sql"` into an empty database (the original scripts);
4. what-if: ours with a loader that also splits each table's INSERTs across the
   connections (the largest table no longer bounds the load) — bench-only code that
   prices a proposal for actions/mariadb_load.py.

Goal: ours ≤ 0.7× the plain client load. MB/s and rows/s are reported too.
"""
from __future__ import annotations

import queue
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Bench, Result, alternate, ratio_result
from bench.mariadb import Client, Ours, Server, make_dump

NAME = "import"


def split_loader_class() -> type:
    """A Loader that runs all DDL first, then feeds every INSERT to `parallel` workers."""
    from actions.mariadb_dumpfile import iter_statements
    from actions.mariadb_load import SECTION_SKIPPED, Cancelled, Loader

    class SplitLoader(Loader):  # type: ignore[misc, valid-type]
        def load(self) -> None:
            path = self.index.path
            sections = list(self.index.sections)
            conn = self.connect()
            try:
                self._run(conn, self.index.header, f"database {self.database}")
                with open(path, "rb") as handle:
                    for section in sections:
                        self._run(conn, (s for s in iter_statements(handle, section.start,
                                                                    section.end)
                                         if s.kind != "insert"),
                                  f"table {section.table}", SECTION_SKIPPED)
            finally:
                conn.close()
            work: queue.Queue = queue.Queue(maxsize=8 * self.parallel)
            errors: list[BaseException] = []

            def worker() -> None:
                conn = self.connect()
                try:
                    self._run(conn, self.index.header, f"database {self.database}")
                    while True:
                        item = work.get()
                        if item is None:
                            return
                        if not errors:
                            self._run(conn, [item], f"database {self.database}")
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    errors.append(exc)
                    self.cancel.set()
                    while work.get() is not None:  # drain so the producer never blocks
                        pass
                finally:
                    conn.close()

            threads = [threading.Thread(target=worker, daemon=True)
                       for _ in range(self.parallel)]
            for thread in threads:
                thread.start()
            with open(path, "rb") as handle:
                for section in sections:
                    for statement in iter_statements(handle, section.start, section.end):
                        if statement.kind == "insert" and not errors:
                            work.put(statement)
            for _ in threads:
                work.put(None)
            for thread in threads:
                thread.join()
            real = [e for e in errors if not isinstance(e, Cancelled)]
            if errors:
                raise (real or errors)[0]
            conn = self.connect()
            try:
                self._run(conn, self.index.rest, f"database {self.database}")
            finally:
                conn.close()

    return SplitLoader


class WhatIfSplit(Ours):
    """Ours with SplitLoader in place of the shipped Loader."""

    def __call__(self) -> float:
        import actions.import_mariadb

        original = actions.import_mariadb.Loader
        actions.import_mariadb.Loader = split_loader_class()
        try:
            return super().__call__()
        finally:
            actions.import_mariadb.Loader = original


def run(bench: Bench) -> list[Result]:
    size = 20 if bench.quick else 200
    work = Path(tempfile.mkdtemp(prefix="import-", dir=bench.work))
    server = Server(work / "mariadb", buffer_pool="1G").start()
    try:
        began = time.monotonic()
        dump, rows = make_dump(server, size, work / f"gocdb-{size}.sql")
        megabytes = dump.stat().st_size / 1e6
        bench.say(f"  generated and dumped {megabytes:.1f} MB ({rows} rows) in "
                  f"{time.monotonic() - began:.0f} s")
        ours = Ours(server, dump, work / "ours")
        client = Client(server, dump, "plain")
        source = Client(server, dump, "sourced", source=True)
        split = WhatIfSplit(server, dump, work / "split", database="gocdb_split")
        runs = bench.runs if bench.quick else 5
        times = alternate([ours, client, source, split], runs)
        check = server.sql("SELECT COUNT(*) FROM gocdb.downtimes")[0][0]
        plain = server.sql("SELECT COUNT(*) FROM plain.downtimes")[0][0]
        if check != plain:
            bench.note(f"import: ours loaded {check} downtimes, the client {plain}")
    finally:
        server.stop()
    median_ours = sorted(times[0])[len(times[0]) // 2]
    median_client = sorted(times[1])[len(times[1]) // 2]
    return [
        ratio_result(f"import.vs-client-{size}MB [s]", times[0], times[1], 0.7),
        ratio_result(f"import.vs-source-{size}MB [s]", times[0], times[2], None),
        Result(f"import.throughput-{size}MB [MB/s]", megabytes / median_ours,
               megabytes / median_client, median_client / median_ours, None, None, runs, None),
        Result(f"import.rows-{size}MB [rows/s]", rows / median_ours, rows / median_client,
               median_client / median_ours, None, None, runs, None),
        ratio_result(f"import.what-if-split-tables-{size}MB [s]", times[3], times[0], None),
    ]
