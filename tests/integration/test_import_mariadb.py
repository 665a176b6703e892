"""import_mariadb against a real mariadbd: staging load, verify, one-RENAME swap, and failures.

Every failure case checks the same three things: one clear line, the live database's
per-table checksums unchanged, and no `<database>_staging` left behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actions.base import Context
from actions.import_mariadb import ImportMariadb
from engine.errors import StepError
from tests.fixtures.gocdb_dump import OBJECTS, mariadb_dump
from tests.support import REPO, step_context, wait_until

pytestmark = pytest.mark.integration

LIVE = "gocdb"
STAGING = "gocdb_staging"
PREVIOUS = "gocdb_previous"


def make_ctx(tmp_path: Path, option_file: Path, lines: list[str] | None = None) -> Context:
    log = lines if lines is not None else []
    return step_context(tmp_path, secret=option_file, step_id="import", log=log.append)


def importer(path: Path, **extra: Any) -> ImportMariadb:
    return ImportMariadb({"options": "db", "database": LIVE, "file": str(path), **extra})


def databases(server: Any) -> set[str]:
    return {row[0] for row in server.sql("SHOW DATABASES")}


@pytest.fixture(scope="module", autouse=True)
def _leave_the_server_clean(mariadb_server):
    """The server is shared by the session: drop what this module created when it ends."""
    yield
    if mariadb_server.process is None or mariadb_server.process.poll() is not None:
        mariadb_server.start()
    mariadb_server.drop_databases(LIVE, STAGING, PREVIOUS, "other_db")


@pytest.fixture(scope="module")
def source_dump(mariadb_server, gocdb_source, tmp_path_factory) -> Path:
    """The GOCDB-like source dumped once by the real client (sandbox line and trailer)."""
    path = tmp_path_factory.mktemp("dumps") / "gocdb.sql"
    return mariadb_dump(mariadb_server.option_file, gocdb_source[0], path)


@pytest.fixture
def live(mariadb, gocdb_source, source_dump, tmp_path) -> dict[str, int]:
    """A live `gocdb` imported from the source; returns its checksums."""
    mariadb.drop_databases(LIVE, STAGING, PREVIOUS)
    importer(source_dump).apply(make_ctx(tmp_path, mariadb.option_file))
    return mariadb.checksums(LIVE)


def write_variant(tmp_path: Path, source: Path, name: str,
                  change: Callable[[bytes], bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(change(source.read_bytes()))
    path.chmod(0o600)
    return path


def insert_after_statement(data: bytes, fraction: float, extra: bytes) -> bytes:
    """Put `extra` after the first statement ending past `fraction` of the file."""
    cut = data.index(b";\n", int(len(data) * fraction)) + 2
    return data[:cut] + extra + data[cut:]


def assert_untouched(server: Any, checksums: dict[str, int]) -> None:
    assert server.checksums(LIVE) == checksums
    assert STAGING not in databases(server)


# ------------------------------------------------------------------------------ success
def test_end_to_end_matches_source_and_keeps_previous(mariadb, gocdb_source, source_dump,
                                                      tmp_path):
    source, counts = gocdb_source
    mariadb.drop_databases(LIVE, STAGING, PREVIOUS)
    lines: list[str] = []
    ctx = make_ctx(tmp_path, mariadb.option_file, lines)
    step = importer(source_dump, expect_tables=["sites", "services"],
                    min_rows={"sites": 400, "downtimes": 100})
    plan = step.plan(ctx)
    assert plan.problem is None
    assert f"swap {len(OBJECTS['tables'])} tables" in plan.summary
    assert LIVE not in databases(mariadb) and STAGING not in databases(mariadb)  # read-only

    outcome = step.apply(ctx)
    assert mariadb.checksums(LIVE) == mariadb.checksums(source)
    assert outcome.after["rows"] == counts
    assert mariadb.objects(LIVE) == {k: sorted(v) for k, v in OBJECTS.items()}
    assert outcome.output == source_dump, "the imported dump is handed on (to archive)"
    assert set(outcome.facts) == {"data_completed", "data_age_seconds"}
    assert outcome.facts["data_completed"].endswith("+00:00")
    assert outcome.facts["data_age_seconds"] >= 0
    assert any("loaded 100%" in line and "MB/s" in line for line in lines)
    assert STAGING not in databases(mariadb)

    # The objects work in live after the swap: the trigger fires, routines and view read live.
    mariadb.sql("INSERT INTO downtimes VALUES (999999, 1, 'OUTAGE', 'X', NULL, NULL, 'x')",
                database=LIVE)
    assert mariadb.sql("SELECT note FROM audit_log WHERE downtime_id = 999999",
                       database=LIVE) == [("added OUTAGE",)]
    assert mariadb.sql("SELECT COUNT(*) FROM v_site_services", database=LIVE)[0][0] == counts[
        "services"]
    assert mariadb.sql("SELECT site_service_count(1)", database=LIVE)[0][0] >= 0

    # A second import keeps the first one's tables (with the extra row) in _previous.
    before = mariadb.checksums(LIVE)
    step.apply(make_ctx(tmp_path, mariadb.option_file))
    assert mariadb.checksums(PREVIOUS) == before
    assert mariadb.checksums(LIVE) == mariadb.checksums(source)
    assert mariadb.objects(PREVIOUS)["triggers"] == []


def test_databases_dump_is_redirected_to_staging(mariadb, gocdb_source, tmp_path):
    source, _ = gocdb_source
    mariadb.drop_databases(LIVE, STAGING, PREVIOUS)
    dump = mariadb_dump(mariadb.option_file, source, tmp_path / "dbs.sql", "--databases",
                        "--add-drop-database")
    assert b"USE `gocdb_src`" in dump.read_bytes()
    assert b"DROP DATABASE IF EXISTS `gocdb_src`" in dump.read_bytes()
    created = mariadb.sql("SELECT table_name, create_time FROM information_schema.tables"
                          " WHERE table_schema = %s ORDER BY 1", (source,))
    before = mariadb.checksums(source)
    lines: list[str] = []
    importer(dump).apply(make_ctx(tmp_path, mariadb.option_file, lines))
    assert mariadb.checksums(LIVE) == before
    # The source schema named in CREATE DATABASE/USE was not written to.
    assert mariadb.sql("SELECT table_name, create_time FROM information_schema.tables"
                       " WHERE table_schema = %s ORDER BY 1", (source,)) == created
    assert any("redirected to gocdb_staging" in line for line in lines)


def test_dump_of_two_databases_refused(mariadb, live, gocdb_source, tmp_path):
    mariadb.sql("CREATE DATABASE IF NOT EXISTS other_db")
    dump = mariadb_dump(mariadb.option_file, gocdb_source[0], tmp_path / "two.sql",
                        "--databases", "other_db")
    with pytest.raises(StepError, match="holds databases gocdb_src, other_db"):
        importer(dump).apply(make_ctx(tmp_path, mariadb.option_file))
    assert_untouched(mariadb, live)


def test_dump_without_sandbox_line_loads(mariadb, live, source_dump, tmp_path):
    dump = write_variant(tmp_path, source_dump, "nosandbox.sql",
                         lambda d: d.split(b"\n", 1)[1])
    importer(dump).apply(make_ctx(tmp_path, mariadb.option_file))
    assert mariadb.checksums(LIVE) == live


# ------------------------------------------------------------------------------ failures
def test_bad_statement_half_way(mariadb, live, source_dump, tmp_path):
    dump = write_variant(tmp_path, source_dump, "bad.sql", lambda d: insert_after_statement(
        d, 0.5, b"INSERT INTO `downtimes` VALUES (1,2,'OUTAGE' oops);\n"))
    with pytest.raises(StepError) as info:
        importer(dump).apply(make_ctx(tmp_path, mariadb.option_file))
    message = str(info.value)
    assert "gocdb_staging" in message and "error 1064" in message
    assert "live gocdb unchanged" in message and "\n" not in message
    assert not info.value.retryable
    assert_untouched(mariadb, live)


def test_dump_cut_at_60_percent(mariadb, live, source_dump, tmp_path):
    dump = write_variant(tmp_path, source_dump, "cut.sql", lambda d: d[: len(d) * 6 // 10])
    with pytest.raises(StepError, match="no '-- Dump completed' trailer") as info:
        importer(dump).apply(make_ctx(tmp_path, mariadb.option_file))
    assert str(dump) in str(info.value)
    assert_untouched(mariadb, live)
    assert importer(dump).plan(make_ctx(tmp_path, mariadb.option_file)).problem


def test_dump_without_trailer(mariadb, live, source_dump, tmp_path):
    dump = write_variant(tmp_path, source_dump, "notrailer.sql",
                         lambda d: d[: d.rindex(b"-- Dump completed")])
    with pytest.raises(StepError, match="no '-- Dump completed' trailer"):
        importer(dump).apply(make_ctx(tmp_path, mariadb.option_file))
    assert_untouched(mariadb, live)


def test_dump_holed_inside_a_statement(mariadb, live, source_dump, tmp_path):
    """A file that keeps its trailer but loses bytes inside an INSERT is refused too."""
    def damage(d: bytes) -> bytes:
        start = d.index(b"INSERT INTO `services`")
        return d[: start + 5000] + b"\n" + d[d.rindex(b"-- Dump completed"):]

    dump = write_variant(tmp_path, source_dump, "holed.sql", damage)
    with pytest.raises(StepError, match="ends inside a statement"):
        importer(dump).apply(make_ctx(tmp_path, mariadb.option_file))
    assert_untouched(mariadb, live)


def test_verification_failures(mariadb, live, source_dump, tmp_path):
    ctx = make_ctx(tmp_path, mariadb.option_file)
    with pytest.raises(StepError, match="lacks expected tables nosuch"):
        importer(source_dump, expect_tables=["sites", "nosuch"]).apply(ctx)
    assert_untouched(mariadb, live)
    with pytest.raises(StepError, match=r"too few rows \(sites has 400 < 401\)"):
        importer(source_dump, min_rows={"sites": 401}).apply(ctx)
    assert_untouched(mariadb, live)


def _load_blocked_on_sleep(mariadb, source_dump, tmp_path, name: str) -> tuple[Path, str]:
    """A dump that pauses mid-load on a DO SLEEP the test can see in the process list."""
    marker = f"SLEEP(60.{os.getpid() % 1000:03d})"
    dump = write_variant(tmp_path, source_dump, name, lambda d: insert_after_statement(
        d, 0.5, f"DO {marker};\n".encode()))
    return dump, marker


def _run_in_thread(step: ImportMariadb, ctx: Context) -> tuple[threading.Thread, dict]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["outcome"] = step.apply(ctx)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _sleeping(mariadb, marker: str) -> bool:
    return any(info and marker in info for *_, info in mariadb.connections())


def test_loading_connection_killed(mariadb, live, source_dump, tmp_path):
    dump, marker = _load_blocked_on_sleep(mariadb, source_dump, tmp_path, "kill.sql")
    thread, result = _run_in_thread(importer(dump), make_ctx(tmp_path, mariadb.option_file))
    wait_until(lambda: _sleeping(mariadb, marker), what="the load to reach the marker")
    # No process on the machine carries the password in its argv during the load.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            assert mariadb.password.encode() not in argv, f"password in argv of pid {entry.name}"
    assert mariadb.kill_connections_running(marker) == 1
    thread.join(60)
    error = result.get("error")
    assert isinstance(error, StepError), result
    print("KILL ->", error, "retryable:", error.retryable)
    assert "gocdb_staging" in str(error) and "live gocdb unchanged" in str(error)
    assert_untouched(mariadb, live)


def test_server_restart_during_load_is_retryable_then_succeeds(mariadb, live, source_dump,
                                                               gocdb_source, tmp_path):
    dump, marker = _load_blocked_on_sleep(mariadb, source_dump, tmp_path, "restart.sql")
    thread, result = _run_in_thread(importer(dump), make_ctx(tmp_path, mariadb.option_file))
    wait_until(lambda: _sleeping(mariadb, marker), what="the load to reach the marker")
    mariadb.restart()
    thread.join(60)
    error = result.get("error")
    assert isinstance(error, StepError), result
    print("restart ->", error)
    assert error.retryable, str(error)
    assert mariadb.checksums(LIVE) == live
    # The retry (the runner's job; done by hand here) succeeds and recreates staging fresh.
    importer(source_dump).apply(make_ctx(tmp_path, mariadb.option_file))
    assert mariadb.checksums(LIVE) == mariadb.checksums(gocdb_source[0])
    assert STAGING not in databases(mariadb)


def test_importer_sigkilled_leaves_live_and_next_run_recovers(mariadb, live, source_dump,
                                                              gocdb_source, tmp_path):
    dump, marker = _load_blocked_on_sleep(mariadb, source_dump, tmp_path, "sigkill.sql")
    script = textwrap.dedent(f"""
        from pathlib import Path
        from actions.import_mariadb import ImportMariadb
        from tests.support import step_context
        ctx = step_context(Path({str(tmp_path)!r}), secret=Path({str(mariadb.option_file)!r}),
                           step_id="import", log=print)
        ImportMariadb({{"options": "db", "database": {LIVE!r}, "file": {str(dump)!r}}}).apply(ctx)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _sleeping(mariadb, marker), what="the child's load to reach the marker")
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        mariadb.kill_connections_running(marker)  # the server does not notice the dead client
    assert mariadb.checksums(LIVE) == live
    assert STAGING in databases(mariadb)  # left behind by the killed run ...
    importer(source_dump).apply(make_ctx(tmp_path, mariadb.option_file))
    assert STAGING not in databases(mariadb)  # ... and recreated, then dropped, by the next
    assert mariadb.checksums(LIVE) == mariadb.checksums(gocdb_source[0])


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_open_option_file_refused(mariadb, live, source_dump, tmp_path, mode):
    from tests.fixtures.mariadb import write_option_file

    options = write_option_file(tmp_path / "open.cnf", mariadb, mode=mode)
    with pytest.raises(StepError, match=f"mode {mode:04o}") as info:
        importer(source_dump).apply(make_ctx(tmp_path, options))
    assert mariadb.password not in str(info.value)
    assert_untouched(mariadb, live)


def test_wrong_password_is_one_clear_line(mariadb, live, source_dump, tmp_path):
    options = tmp_path / "wrong.cnf"
    options.write_text(f"[client]\nuser=root\npassword=wrong\nhost=127.0.0.1\n"
                       f"port={mariadb.port}\n")
    options.chmod(0o600)
    with pytest.raises(StepError, match=r"127\.0\.0\.1:\d+ .*cannot connect") as info:
        importer(source_dump).apply(make_ctx(tmp_path, options))
    assert not info.value.retryable
    assert_untouched(mariadb, live)


def test_progress_is_logged_while_loading(mariadb, live, source_dump, tmp_path):
    lines: list[str] = []
    importer(source_dump, parallel=1).apply(make_ctx(tmp_path, mariadb.option_file, lines))
    assert any(line.startswith("loading ") and "8 tables" in line for line in lines)
    assert any("%" in line and "MB/s" in line for line in lines)


def test_file_defaults_to_previous_step_output(mariadb, live, source_dump, tmp_path):
    ctx = make_ctx(tmp_path, mariadb.option_file)
    step = ImportMariadb({"options": "db", "database": LIVE})
    with pytest.raises(StepError, match="no dump file given and no previous step's output"):
        step.apply(ctx)
    ctx.previous_output = source_dump
    assert str(source_dump) in step.plan(ctx).summary
    step.apply(ctx)
    assert mariadb.checksums(LIVE) == live


def test_plan_names_an_unreachable_server(mariadb, source_dump, tmp_path):
    from tests.support import free_port

    options = tmp_path / "down.cnf"
    options.write_text(f"[client]\nuser=root\npassword=x\nhost=127.0.0.1\nport={free_port()}\n")
    options.chmod(0o600)
    plan = importer(source_dump).plan(make_ctx(tmp_path, options))
    assert plan.problem and "cannot connect" in plan.problem and "127.0.0.1:" in plan.problem


def test_the_step_alone_refuses_to_swap_into_a_standby_that_may_serve(mariadb, live,
                                                                      source_dump, tmp_path):
    """Without a job's guard the step checks the state directory itself (engine/standby.py)."""
    (tmp_path / "engage.lock").write_text("{}")
    with pytest.raises(StepError, match="refused before the swap: the engage lock") as info:
        importer(source_dump).apply(make_ctx(tmp_path, mariadb.option_file))
    assert "live was left unchanged" in str(info.value)
    assert_untouched(mariadb, live)
    assert not (tmp_path / "swap" / f"{LIVE}.json").exists()
