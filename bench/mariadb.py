"""A throwaway mariadbd for the import benchmarks, GOCDB-like dumps, and the three loaders.

The server is started the way tests/fixtures/mariadb.py starts it (own datadir, 127.0.0.1
on a free port, root password only in a 0600 option file), without pytest, so a failure
is an ordinary exception. Dumps come from `tests.fixtures.gocdb_dump.create_gocdb` (the
same generator the integration tests use: FKs, a view, a trigger, routines, awkward
bytes) and the real `mariadb-dump`.

Loaders, each into an empty or steady-state database on the same server:
- `load_ours`: `actions.import_mariadb.ImportMariadb.apply()` with a hand-built
  `actions.base.Context` (staging load, verify, one-RENAME swap);
- `load_client`: `mariadb --defaults-extra-file=OPT db < dump.sql`;
- `load_source`: `mariadb --defaults-extra-file=OPT db -e "SOURCE dump.sql"` (the original).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import BenchError, which
from engine.drillkit.ports import LOOPBACK, free_port


class Server:
    """One mariadbd in `base`; `option_file` is root's client option file (mode 0600)."""

    def __init__(self, base: Path, buffer_pool: str = "512M") -> None:
        self.base = base
        self.port = free_port()
        self.password = "bench-" + secrets.token_hex(12)
        self.buffer_pool = buffer_pool
        self.process: subprocess.Popen | None = None
        self.option_file = base / "root.cnf"

    def start(self) -> Server:
        self.base.mkdir(parents=True, exist_ok=True)
        root = ["--user=root"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [which("mariadb-install-db"), "--no-defaults", f"--datadir={self.base / 'data'}",
             "--auth-root-authentication-method=normal", "--skip-test-db", *root],
            capture_output=True, text=True, cwd=self.base, check=False)
        if done.returncode != 0:
            raise BenchError(f"mariadb-install-db failed: {done.stderr.strip()[-300:]}")
        socket_path = self.base / "mysqld.sock"
        self.process = subprocess.Popen(
            [which("mariadbd"), "--no-defaults", f"--datadir={self.base / 'data'}",
             f"--socket={socket_path}", f"--pid-file={self.base / 'mysqld.pid'}",
             f"--log-error={self.base / 'error.log'}", f"--bind-address={LOOPBACK}",
             f"--port={self.port}", "--skip-name-resolve",
             f"--innodb-buffer-pool-size={self.buffer_pool}",
             # as the test fixture: no fsync per commit (both sides of every ratio share it)
             "--innodb-flush-log-at-trx-commit=2", "--max-allowed-packet=64M", *root],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while not socket_path.exists() or not self._port_open():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"mariadbd did not start; see {self.base / 'error.log'}")
            time.sleep(0.05)
        import pymysql

        conn = pymysql.connect(unix_socket=str(socket_path), user="root", password="")
        try:
            with conn.cursor() as cur:
                for host in ("localhost", "127.0.0.1"):
                    cur.execute(f"ALTER USER 'root'@'{host}' IDENTIFIED BY %s", (self.password,))
                cur.execute("FLUSH PRIVILEGES")
        finally:
            conn.close()
        fd = os.open(self.option_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f'[client]\nuser=root\npassword="{self.password}"\nhost={LOOPBACK}\n'
                         f"port={self.port}\n")
        return self

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(host=LOOPBACK, port=self.port, user="root",
                               password=self.password, database=database, autocommit=True,
                               charset="utf8mb4")

    def sql(self, *statements: str) -> list[tuple]:
        conn = self.connect()
        try:
            rows: list[tuple] = []
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                    rows = list(cur.fetchall())
            return rows
        finally:
            conn.close()

    def fresh(self, database: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{database}`",
                 f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")


def make_dump(server: Server, size_mb: float, path: Path, *, narrow: bool = False,
              keep_source: bool = False) -> tuple[Path, int]:
    """Generate a GOCDB-like database of about `size_mb` MB and dump it; (path, rows).

    `narrow`: GOCDB's own shape (create_gocdb_narrow: ~10,000 narrow rows per MB,
    secondary indexes); otherwise the test fixture's wide, awkward rows (~1,600 per MB).
    """
    from tests.fixtures.gocdb_dump import create_gocdb, create_gocdb_narrow

    source = f"gocdb_src_{int(size_mb)}"
    conn = server.connect()
    try:
        counts = (create_gocdb_narrow(conn, source, size_mb) if narrow
                  else create_gocdb(conn, source, size_mb=size_mb))
    finally:
        conn.close()
    with open(path, "wb") as out:
        done = subprocess.run(
            [which("mariadb-dump"), f"--defaults-extra-file={server.option_file}",
             "--single-transaction", "--routines", "--events", "--triggers", source],
            stdout=out, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise BenchError(f"mariadb-dump failed: {done.stderr.decode(errors='replace')[-300:]}")
    if not keep_source:  # kept: `gocdb_src_<size>`, for another dump tool (mydumper)
        server.sql(f"DROP DATABASE `{source}`")
    return path, sum(counts.values())


class Ours:
    """import_mariadb's apply() into `database` (steady state: the live database exists)."""

    def __init__(self, server: Server, dump: Path, work: Path, database: str = "gocdb",
                 **params: Any) -> None:
        from actions.import_mariadb import ImportMariadb

        self.server = server
        self.action = ImportMariadb({"options": "mariadb", "database": database,
                                     "file": str(dump), **params})
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)

    def __call__(self) -> float:
        from actions.base import Context

        ctx = Context(policy_name="bench", state_dir=self.work, step_id="jobs.import.steps[0]",
                      secret=lambda name: self.server.option_file, log=lambda message: None,
                      work_dir=self.work)
        start = time.perf_counter()
        self.action.apply(ctx)
        return time.perf_counter() - start


class Client:
    """`mariadb db < dump` (or `-e "SOURCE dump"`) into a freshly created empty database."""

    def __init__(self, server: Server, dump: Path, database: str, *, source: bool = False
                 ) -> None:
        self.server, self.dump, self.database, self.source = server, dump, database, source
        self.peak_rss = 0  # bytes, the largest of its runs

    def __call__(self) -> float:
        self.server.fresh(self.database)
        argv = [which("mariadb"), f"--defaults-extra-file={self.server.option_file}",
                self.database]
        if self.source:
            argv += ["-e", f"SOURCE {self.dump}"]
        with open(os.devnull if self.source else self.dump, "rb") as stdin:
            start = time.perf_counter()
            returncode, rss, stderr = run_measured(argv, stdin)
            elapsed = time.perf_counter() - start
        self.peak_rss = max(self.peak_rss, rss)
        if returncode != 0 or stderr.strip():
            raise BenchError(f"mariadb {'SOURCE' if self.source else '<'} {self.dump.name}: exit "
                             f"{returncode}: {stderr.decode(errors='replace')[-300:]}")
        return elapsed


def run_measured(argv: list[str], stdin: Any, **popen: Any) -> tuple[int, int, bytes]:
    """Run a process to its end: (exit status, peak RSS in bytes, stderr).

    The peak is the child's own `VmHWM`, read from /proc every 10 ms until it exits (the
    high-water mark only grows, so the last reading is the peak to within the final 10 ms).
    Not `wait4`'s ru_maxrss: that counts the forking parent's pages from before exec —
    both loaders read as the benchmark process's ~80 MiB.
    """
    import tempfile

    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err,
                                   **popen)
        peak = 0
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            peak = max(peak, _hwm(status))
            time.sleep(0.01)
        err.seek(0)
        return process.returncode, peak, err.read()


def _hwm(status: Path) -> int:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


OURS_CHILD = """
import sys
from pathlib import Path
from actions.base import Context
from actions.import_mariadb import ImportMariadb
dump, options, database, work = sys.argv[1:5]
ctx = Context(policy_name="bench", state_dir=Path(work), step_id="jobs.import.steps[0]",
              secret=lambda name: Path(options), log=lambda line: None, work_dir=Path(work))
ImportMariadb({"options": "mariadb", "database": database, "file": dump}).apply(ctx)
"""


def ours_peak_rss(server: Server, dump: Path, work: Path, database: str) -> int:
    """Peak RSS (bytes) of import_mariadb in its own process, as a job runs it (untimed)."""
    import sys

    from bench.common import REPO, child_env

    work.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-c", OURS_CHILD, str(dump), str(server.option_file), database,
            str(work)]
    code, peak, stderr = run_measured(argv, subprocess.DEVNULL, cwd=REPO,
                                      env=child_env({"PYTHONPATH": str(REPO)}))
    if code != 0:
        raise BenchError(f"import_mariadb child failed: {stderr.decode(errors='replace')[-300:]}")
    return peak


@contextlib.contextmanager
def running_server(base: Path):  # type: ignore[no-untyped-def]
    server = Server(base).start()
    try:
        yield server
    finally:
        server.stop()
