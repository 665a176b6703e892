"""import_mariadb keeps what the original scripts kept, on a real mariadbd.

- a complete dump without the `-- Dump completed` trailer (`--skip-comments`) is refused
  with the reason and the option that accepts it; with `require_trailer: false` it loads,
  and a cut one is still refused;
- a table that exists only in live (not in the dump) stays in live with its rows and
  trigger across imports, named in the log, and never lands in `<database>_previous`;
- the loader leaves no reader thread behind when a statement fails (no unhandled-thread
  warning).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from actions.base import Context
from actions.import_mariadb import ImportMariadb
from engine.errors import StepError
from tests.fixtures.gocdb_dump import mariadb_dump
from tests.support import step_context

pytestmark = pytest.mark.integration

LIVE = "fidelity"
STAGING = f"{LIVE}_staging"
PREVIOUS = f"{LIVE}_previous"


def make_ctx(tmp_path: Path, option_file: Path, lines: list[str] | None = None) -> Context:
    log = lines if lines is not None else []
    return step_context(tmp_path, secret=option_file, step_id="import", log=log.append)


def importer(path: Path, **extra: Any) -> ImportMariadb:
    return ImportMariadb({"options": "db", "database": LIVE, "file": str(path), **extra})


@pytest.fixture(scope="module", autouse=True)
def _leave_the_server_clean(mariadb_server):
    yield
    if mariadb_server.process is None or mariadb_server.process.poll() is not None:
        mariadb_server.start()
    mariadb_server.drop_databases(LIVE, STAGING, PREVIOUS)


@pytest.fixture(scope="module")
def dumps(mariadb_server, gocdb_source, tmp_path_factory) -> dict[str, Path]:
    """The source dumped twice by the real client: as usual, and with --skip-comments."""
    base = tmp_path_factory.mktemp("fidelity-dumps")
    source = gocdb_source[0]
    return {
        "full": mariadb_dump(mariadb_server.option_file, source, base / "full.sql"),
        "bare": mariadb_dump(mariadb_server.option_file, source, base / "bare.sql",
                             "--skip-comments"),
    }


@pytest.fixture
def live(mariadb, dumps, tmp_path) -> dict[str, int]:
    mariadb.drop_databases(LIVE, STAGING, PREVIOUS)
    importer(dumps["full"]).apply(make_ctx(tmp_path, mariadb.option_file))
    return mariadb.checksums(LIVE)


def test_dump_without_trailer_names_the_option(mariadb, live, dumps, gocdb_source, tmp_path):
    bare = dumps["bare"]
    assert b"-- Dump completed" not in bare.read_bytes()
    with pytest.raises(StepError) as info:
        importer(bare).apply(make_ctx(tmp_path, mariadb.option_file))
    message = str(info.value)
    assert "no '-- Dump completed' trailer" in message
    assert "--skip-comments" in message and "require_trailer: false" in message
    assert "\n" not in message
    assert mariadb.checksums(LIVE) == live
    assert "require_trailer: false" in (importer(bare).plan(
        make_ctx(tmp_path, mariadb.option_file)).problem or "")

    lines: list[str] = []
    outcome = importer(bare, require_trailer=False).apply(
        make_ctx(tmp_path, mariadb.option_file, lines))
    assert mariadb.checksums(LIVE) == mariadb.checksums(gocdb_source[0])
    assert "data_completed" not in outcome.facts, "no trailer: the data's date is unknown"
    assert "no trailer" in outcome.summary


@pytest.mark.parametrize("cut", ["mid-insert", "after-semicolon-in-value", "mid-line"])
def test_cut_dump_without_trailer_still_refused(mariadb, live, dumps, tmp_path, cut):
    data = dumps["bare"].read_bytes()
    start = data.index(b"INSERT INTO `downtimes`")
    if cut == "mid-insert":
        cut_data = data[: start + 3000] + b"\n"
    elif cut == "after-semicolon-in-value":
        # The generator's text holds "semi;colon": cut right after that `;`.
        at = data.index(b"semi;", start) + len(b"semi;")
        cut_data = data[:at] + b"\n"
    else:
        cut_data = data[: data.index(b"\n", start) + 1] + b"INSERT INTO `downtimes` VALUES (1"
    path = tmp_path / f"{cut}.sql"
    path.write_bytes(cut_data)
    with pytest.raises(StepError) as info:
        importer(path, require_trailer=False).apply(make_ctx(tmp_path, mariadb.option_file))
    message = str(info.value)
    assert "cut" in message and str(path) in message, message
    assert mariadb.checksums(LIVE) == live
    assert STAGING not in {r[0] for r in mariadb.sql("SHOW DATABASES")}


def test_table_only_in_live_stays_there(mariadb, live, dumps, tmp_path):
    mariadb.sql("CREATE TABLE local_notes (id INT PRIMARY KEY, note VARCHAR(64))",
                database=LIVE)
    mariadb.sql("CREATE TABLE local_log (id INT AUTO_INCREMENT PRIMARY KEY, n INT)",
                database=LIVE)
    mariadb.sql("CREATE TRIGGER trg_local AFTER INSERT ON local_notes FOR EACH ROW"
                " INSERT INTO local_log (n) VALUES (NEW.id)", database=LIVE)
    mariadb.sql("INSERT INTO local_notes VALUES (1, 'kept by the standby''s admin')",
                database=LIVE)
    kept = mariadb.checksums(LIVE)
    for run in (1, 2):  # the second import used to drop it with the previous database
        lines: list[str] = []
        importer(dumps["full"]).apply(make_ctx(tmp_path, mariadb.option_file, lines))
        now = mariadb.checksums(LIVE)
        assert now["local_notes"] == kept["local_notes"], run
        assert now["local_log"] == kept["local_log"], run
        assert any("stay in live" in line and "local_log, local_notes" in line
                   for line in lines), lines
        previous = mariadb.checksums(PREVIOUS)
        assert "local_notes" not in previous and "local_log" not in previous
        assert {k: v for k, v in now.items() if not k.startswith("local_")} == live
    triggers = {r[0] for r in mariadb.sql(
        "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = %s",
        (LIVE,))}
    assert "trg_local" in triggers and "trg_downtime_audit" in triggers
    mariadb.sql("INSERT INTO local_notes VALUES (2, 'x')", database=LIVE)
    assert mariadb.sql("SELECT n FROM local_log ORDER BY id", database=LIVE) == [(1,), (2,)]
    assert not (tmp_path / "swap" / f"{LIVE}.json").exists(), "live matched its manifest"


def test_table_only_in_live_with_a_foreign_key_to_the_dump_moves_with_it(mariadb, live,
                                                                        dumps, tmp_path):
    """Kept in live, its foreign key would follow `sites` into previous and block the next
    import's drop of previous: it moves with the tables it references, named in the log."""
    mariadb.sql("CREATE TABLE site_notes (id INT PRIMARY KEY, site_id INT NOT NULL,"
                " CONSTRAINT fk_notes_site FOREIGN KEY (site_id) REFERENCES sites (id))",
                database=LIVE)
    mariadb.sql("INSERT INTO site_notes VALUES (1, 1)", database=LIVE)
    lines: list[str] = []
    importer(dumps["full"]).apply(make_ctx(tmp_path, mariadb.option_file, lines))
    assert any("foreign key" in line and "site_notes" in line for line in lines), lines
    assert "site_notes" not in mariadb.checksums(LIVE)
    assert "site_notes" in mariadb.checksums(PREVIOUS)
    # The next import drops the previous database holding it (not blocked by its key).
    importer(dumps["full"]).apply(make_ctx(tmp_path, mariadb.option_file))
    assert mariadb.checksums(LIVE) == live
    assert "site_notes" not in mariadb.checksums(PREVIOUS)


def test_failed_load_leaves_no_reader_thread(mariadb, live, dumps, tmp_path):
    data = dumps["full"].read_bytes()
    at = data.index(b";\n", data.index(b"INSERT INTO `downtimes`")) + 2
    bad = tmp_path / "bad.sql"
    bad.write_bytes(data[:at] + b"INSERT INTO `downtimes` VALUES (oops);\n" + data[at:])
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(StepError, match="error 1054"):
        importer(bad).apply(make_ctx(tmp_path, mariadb.option_file))
    readers = [t for t in threading.enumerate()
               if t.ident not in before and t.name.startswith("read-")]
    assert readers == [], "the section reader threads are joined when a statement fails"
    assert mariadb.checksums(LIVE) == live
