"""dump_mariadb against a real mariadbd: dump, trailer check, rotation, secrets never in argv."""
from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actions.base import Context
from actions.dump_mariadb import DumpMariadb
from actions.mariadb_dumpfile import read_trailer
from engine.errors import StepError
from tests.fixtures.mariadb import write_option_file
from tests.support import step_context, wait_until

pytestmark = pytest.mark.integration


def make_ctx(tmp_path: Path, option_file: Path, lines: list[str] | None = None) -> Context:
    log = lines if lines is not None else []
    return step_context(tmp_path, secret=option_file, step_id="dump", log=log.append)


def dumper(path: Path, database: str = "gocdb_src", **extra: Any) -> DumpMariadb:
    return DumpMariadb({"options": "db", "database": database, "file": str(path), **extra})


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_dump_writes_private_file_with_utc_trailer_and_rotates(
    mariadb, gocdb_source, tmp_path, monkeypatch
):
    # A far-off local zone: the trailer must still be UTC, the client runs with TZ=UTC.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    target = tmp_path / "out" / "gocdb.sql"
    target.parent.mkdir()
    ctx = make_ctx(tmp_path, mariadb.option_file)
    step = dumper(target)
    assert "would dump gocdb_src" in step.plan(ctx).summary
    before = datetime.now(UTC).replace(microsecond=0)
    outcome = step.apply(ctx)
    after = datetime.now(UTC)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    trailer, completed = read_trailer(target)
    assert trailer and completed is not None
    assert before - timedelta(seconds=1) <= completed <= after + timedelta(seconds=1)
    assert outcome.output == target.absolute()
    assert outcome.facts == {"data_completed": completed.isoformat()}
    assert f"({target.stat().st_size} bytes" in outcome.summary
    data = target.read_bytes()
    assert b"CREATE TABLE `downtimes`" in data and b"TRIGGER" in data.upper()
    assert b"PROCEDURE `ngi_sites`" in data and b"VIEW `v_site_services`" in data

    first = data
    assert "becomes gocdb.sql_old" in step.plan(ctx).summary
    step.apply(ctx)
    assert (target.parent / "gocdb.sql_old").read_bytes() == first
    assert leftovers(target.parent) == []


def test_failed_dump_keeps_previous_files(mariadb, gocdb_source, tmp_path):
    target = tmp_path / "gocdb.sql"
    ctx = make_ctx(tmp_path, mariadb.option_file)
    dumper(target).apply(ctx)
    good = target.read_bytes()
    with pytest.raises(StepError, match="dump of nosuch_db to .* failed: .*nosuch_db") as info:
        dumper(target, database="nosuch_db").apply(ctx)
    assert "\n" not in str(info.value)
    assert target.read_bytes() == good
    assert not (tmp_path / "gocdb.sql_old").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_open_option_file_refused(mariadb, gocdb_source, tmp_path, mode):
    options = write_option_file(tmp_path / "open.cnf", mariadb, mode=mode)
    target = tmp_path / "gocdb.sql"
    with pytest.raises(StepError, match=f"mode {mode:04o}.*chmod 600"):
        dumper(target).apply(make_ctx(tmp_path, options))
    assert not target.exists() and leftovers(tmp_path) == []
    assert dumper(target).plan(make_ctx(tmp_path, options)).problem


def test_missing_directory_is_a_plan_problem(mariadb, tmp_path):
    step = dumper(tmp_path / "nowhere" / "gocdb.sql")
    assert "does not exist" in (step.plan(make_ctx(tmp_path, mariadb.option_file)).problem or "")
    with pytest.raises(StepError, match="does not exist"):
        step.apply(make_ctx(tmp_path, mariadb.option_file))


def _dump_processes() -> list[list[bytes]]:
    """argv of the dump clients this test process started (its children): a dump another
    test run on the same machine makes at the same time is not ours to judge."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and argv and argv[0].endswith((b"mariadb-dump", b"mysqldump")):
            found.append(argv)
    return found


def test_password_never_in_argv_while_dumping(mariadb, gocdb_source, tmp_path):
    """Hold a WRITE lock so the client waits mid-dump; read every process's argv meanwhile."""
    target = tmp_path / "gocdb.sql"
    locker = mariadb.connect("gocdb_src")
    result: dict[str, Any] = {}
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES downtimes WRITE")

        def run() -> None:
            try:
                result["outcome"] = dumper(target).apply(make_ctx(tmp_path, mariadb.option_file))
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                result["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        wait_until(lambda: any("metadata lock" in (row[2] or "") or row[3] and "downtimes"
                               in row[3] for row in mariadb.connections()),
                   what="mariadb-dump to wait on the locked table")
        processes = _dump_processes()
        assert processes, "no mariadb-dump process seen"
        for argv in processes:
            assert argv[1] == f"--defaults-extra-file={mariadb.option_file}".encode()
            assert not any(mariadb.password.encode() in arg for arg in argv)
            assert b"--single-transaction" in argv and b"--routines" in argv
            assert b"--events" in argv and b"--triggers" in argv
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    assert mariadb.password.encode() not in (entry / "cmdline").read_bytes()
                except OSError:
                    continue
    finally:
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        locker.close()
    thread.join(60)
    assert "outcome" in result, result
    assert read_trailer(target)[0] is not None


def test_tls_adds_verified_ssl_options(mariadb):
    argv = dumper(Path("/x/gocdb.sql"), tls=True).command(mariadb.option_file, "mariadb-dump")
    assert argv[1].startswith("--defaults-extra-file=")
    assert "--ssl" in argv and "--ssl-verify-server-cert" in argv
    assert argv[-1] == "gocdb_src"
