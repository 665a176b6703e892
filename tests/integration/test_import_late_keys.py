"""Keys after the rows (actions/mariadb_late_keys.py) on real mariadbd, against the client.

The importer creates each InnoDB staging table without its plain keys and foreign keys and
adds them in one ALTER after the rows. Two outcomes must stay the client's: a dump whose
UNIQUE key is violated fails (error 1062, live untouched), and foreign keys whose rows come
child-before-parent, point forward in their own table, or point nowhere load as the client
loads them (FOREIGN_KEY_CHECKS=0 in the dump's header), byte-identical in SHOW CREATE.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import actions.mariadb_load
from actions.import_mariadb import ImportMariadb
from engine.errors import StepError
from tests.fixtures import random_dump
from tests.support import require_binary, step_context

pytestmark = pytest.mark.integration

LIVE = "latekeys"


@pytest.fixture
def server(mariadb):
    require_binary("mariadb-dump")
    require_binary("mariadb")
    yield mariadb
    mariadb.drop_databases(LIVE, f"{LIVE}_staging", f"{LIVE}_previous",
                           *(f"{name}" for name in (random_dump.SOURCE, random_dump.OURS,
                                                    f"{random_dump.OURS}_previous",
                                                    f"{random_dump.OURS}_staging",
                                                    random_dump.CLIENT)))


def _import(server, path: Path, tmp_path: Path, database: str = LIVE) -> None:
    ctx = step_context(tmp_path / "state", secret=Path(server.option_file), step_id="import")
    ImportMariadb({"options": "db", "database": database, "file": str(path)}).apply(ctx)


def _alters(monkeypatch) -> list[bytes]:
    """Record the ALTERs the loader sends (proof that the late-keys path ran)."""
    real = actions.mariadb_load.execute
    sent: list[bytes] = []

    def recording(conn, statement, where):
        if statement.kind == "alter_table":
            sent.append(statement.text)
        return real(conn, statement, where)

    monkeypatch.setattr(actions.mariadb_load, "execute", recording)
    return sent


def test_a_violated_unique_key_fails_like_the_client_and_live_is_untouched(
        server, tmp_path, monkeypatch):
    case = random_dump.Case(seed=-1, statements=[
        "CREATE TABLE `sites` (\n  `id` INT NOT NULL,\n  `name` VARCHAR(20) NOT NULL,\n"
        "  `country` VARCHAR(20),\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u_name` (`name`),\n"
        "  KEY `k_country` (`country`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"],
        inserts=[("INSERT INTO `sites` VALUES (%s, %s, %s)",
                  [(1, "CERN", "CH"), (2, "RAL", "UK"), (3, "NIKHEF", "NL")])],
        options=["--skip-extended-insert"])
    random_dump.build(server, case)
    good = random_dump.dump(server, case, tmp_path / "good.sql")
    _import(server, good, tmp_path)  # live holds the three sites
    before = server.checksums(LIVE)
    # A dump whose third row repeats the first one's name: the UNIQUE key is violated.
    data = good.read_bytes()
    assert data.count(b"'NIKHEF'") == 1
    bad = tmp_path / "bad.sql"
    bad.write_bytes(data.replace(b"'NIKHEF'", b"'CERN'"))
    bad.chmod(0o600)

    _target, client_error = random_dump.load_client(server, case, bad)
    assert client_error is not None and "1062" in client_error and "u_name" in client_error
    alters = _alters(monkeypatch)
    with pytest.raises(StepError) as caught:
        _import(server, bad, tmp_path)
    message = str(caught.value)
    assert "error 1062" in message and "Duplicate entry 'CERN'" in message, message
    assert "u_name" in message and f"live {LIVE} unchanged" in message, message
    assert "\n" not in message
    assert alters == [], "the duplicate failed its INSERT, before any ALTER"
    assert server.checksums(LIVE) == before
    assert f"{LIVE}_staging" not in {row[0] for row in server.sql("SHOW DATABASES")}


def test_foreign_keys_child_before_parent_load_as_the_client_loads_them(
        server, tmp_path, monkeypatch):
    # a_child is dumped (and loaded) before z_parent; z_parent's rows point at later rows;
    # one child row's parent does not exist. Only FOREIGN_KEY_CHECKS=0 loads this.
    case = random_dump.Case(seed=-2, statements=[
        "CREATE TABLE `z_parent` (\n  `id` INT NOT NULL,\n  `code` VARCHAR(8) NOT NULL,\n"
        "  `up` INT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u_code` (`code`, `id`),\n"
        "  CONSTRAINT `fk_self` FOREIGN KEY (`up`) REFERENCES `z_parent` (`id`)"
        " ON DELETE SET NULL\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "CREATE TABLE `a_child` (\n  `id` INT NOT NULL,\n  `pid` INT NULL,\n"
        "  `pcode` VARCHAR(8) NULL,\n  PRIMARY KEY (`id`),\n  KEY `k_multi` (`pcode`, `pid`),\n"
        "  CONSTRAINT `fk_child` FOREIGN KEY (`pid`) REFERENCES `z_parent` (`id`)"
        " ON DELETE CASCADE ON UPDATE CASCADE,\n"
        "  CONSTRAINT `fk_multi` FOREIGN KEY (`pcode`, `pid`) REFERENCES"
        " `z_parent` (`code`, `id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"],
        inserts=[("INSERT INTO `z_parent` VALUES (%s, %s, %s)",
                  [(1, "a", 3), (2, "b", 3), (3, "c", None)]),
                 ("INSERT INTO `a_child` VALUES (%s, %s, %s)",
                  [(1, 1, "a"), (2, 3, "c"), (3, 99, "zz"), (4, None, None)])])
    random_dump.build(server, case)
    path = random_dump.dump(server, case, tmp_path / "fk.sql")
    data = path.read_bytes()
    assert data.index(b"INSERT INTO `a_child`") < data.index(b"CREATE TABLE `z_parent`")
    client_db, client_error = random_dump.load_client(server, case, path)
    assert client_error is None

    alters = _alters(monkeypatch)
    _import(server, path, tmp_path, database=random_dump.OURS)
    assert sorted(a.split(b" ADD ")[0] for a in alters) == [
        b"ALTER TABLE `a_child`", b"ALTER TABLE `z_parent`"]
    assert all(b"FOREIGN KEY" in a for a in alters)
    ours = random_dump.snapshot(server, random_dump.OURS)
    assert random_dump.differences(ours, random_dump.snapshot(server, client_db)) == []
    assert ours["tables"]["a_child"][0] == 4  # the orphan too, unchecked as by the client
    create = ours["tables"]["a_child"][2]
    assert "KEY `fk_child` (`pid`)" in create, "InnoDB's own index for fk_child, as the client's"

    # The constraints are in force in live: a cascade, and a new orphan refused.
    server.sql("DELETE FROM z_parent WHERE id = 1", database=random_dump.OURS)
    assert server.sql("SELECT id FROM a_child ORDER BY id", database=random_dump.OURS) == [
        (2,), (3,), (4,)]
    with pytest.raises(Exception, match="1452"):
        server.sql("INSERT INTO a_child VALUES (5, 77, NULL)", database=random_dump.OURS)


def test_fulltext_and_spatial_keys_come_out_as_the_clients(server, tmp_path, monkeypatch):
    # FULLTEXT stays in the CREATE, SPATIAL and the others move to the ALTER: the key order
    # in SHOW CREATE (unique, plain in declared order, fulltext last) must not change.
    case = random_dump.Case(seed=-3, statements=[
        "CREATE TABLE `places` (\n  `id` INT NOT NULL,\n  `name` VARCHAR(60) NOT NULL,\n"
        "  `body` TEXT,\n  `geo` POINT NOT NULL,\n  `rank` INT,\n  PRIMARY KEY (`id`),\n"
        "  KEY `k_rank` (`rank` DESC, `id`),\n  FULLTEXT KEY `ft_body` (`body`, `name`),\n"
        "  SPATIAL KEY `sp_geo` (`geo`),\n  UNIQUE KEY `u_name` (`name`),\n"
        "  KEY `k_prefix` (`body`(4)) IGNORED\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"],
        inserts=[("INSERT INTO `places` VALUES (%s, %s, %s, ST_GeomFromText(%s), %s)",
                  [(i, f"site {i}", f"grid storage;{i} compute", f"POINT({i} {-i})", i % 7)
                   for i in range(1, 60)])])
    random_dump.build(server, case)
    path = random_dump.dump(server, case, tmp_path / "ft.sql")
    client_db, client_error = random_dump.load_client(server, case, path)
    assert client_error is None
    alters = _alters(monkeypatch)
    _import(server, path, tmp_path, database=random_dump.OURS)
    assert len(alters) == 1 and b"SPATIAL KEY `sp_geo`" in alters[0]
    assert b"FULLTEXT" not in alters[0] and b"UNIQUE" not in alters[0]
    ours = random_dump.snapshot(server, random_dump.OURS)
    assert random_dump.differences(ours, random_dump.snapshot(server, client_db)) == []
    query = ("SELECT COUNT(*) FROM places WHERE MATCH(body, name) AGAINST ('storage')"
             " AND MBRContains(ST_GeomFromText('POLYGON((0 0, 0 -30, 30 -30, 30 0, 0 0))'),"
             " geo)")
    assert server.sql(query, database=random_dump.OURS) == server.sql(query, database=client_db)
    assert server.sql(query, database=random_dump.OURS)[0][0] > 0
