"""actions/mariadb_load.py without a server: which CREATE TABLEs the loader rewrites so their
keys come after the rows (the SQL it sends is checked against the client on real mariadbd
in tests/integration/test_import_late_keys.py and test_import_differential.py)."""
from __future__ import annotations

from pathlib import Path

from actions.mariadb_dumpfile import index_dump, iter_statements
from actions.mariadb_load import Loader
from actions.mysql_options import ClientOptions

HEADER = b"""/*!40101 SET NAMES utf8mb4 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
"""
TABLES = b"""DROP TABLE IF EXISTS `child`;
CREATE TABLE `child` (
  `id` int(11) NOT NULL,
  `pid` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `k_pid` (`pid`),
  CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`)
) ENGINE=InnoDB;
INSERT INTO `child` VALUES (1,9);
DROP TABLE IF EXISTS `plain`;
CREATE TABLE `plain` (
  `id` int(11) NOT NULL,
  `a` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `k_a` (`a`)
) ENGINE=InnoDB;
INSERT INTO `plain` VALUES (1,2);
-- Dump completed on 2026-11-30  6:00:46
"""


def _rewritten(tmp_path: Path, dump: bytes, late_keys: bool = True
               ) -> dict[str, tuple[bytes, list[bytes]]]:
    """table -> (the CREATE the loader sends, the ALTERs it sends after the rows)."""
    path = tmp_path / "dump.sql"
    path.write_bytes(dump)
    index = index_dump(path)
    loader = Loader(ClientOptions(path=tmp_path / "unused.cnf"), "db", index,
                    late_keys=late_keys)
    out = {}
    for section in index.sections:
        alters: list = []
        with open(path, "rb") as handle:
            statements = list(iter_statements(handle, section.start, section.end))
        sent = list(loader._keys_later(section, statements, alters) if late_keys
                    else statements)
        create = next(s.text for s in sent if s.kind == "create_table")
        out[section.table] = (create, [a.text for a in alters])
    return out


def test_keys_and_foreign_keys_wait_for_the_rows_when_the_dump_turns_checks_off(tmp_path):
    found = _rewritten(tmp_path, HEADER + TABLES)
    create, alters = found["child"]
    assert b"KEY" not in create.replace(b"PRIMARY KEY", b"")
    assert alters == [b"ALTER TABLE `child` ADD KEY `k_pid` (`pid`), ADD CONSTRAINT `fk`"
                      b" FOREIGN KEY (`pid`) REFERENCES `parent` (`id`)"]
    assert found["plain"][1] == [b"ALTER TABLE `plain` ADD KEY `k_a` (`a`)"]


def test_without_checks_off_a_table_with_foreign_keys_keeps_its_create(tmp_path):
    # A --compact or hand-made dump: the client checks the constraints as it loads, so
    # the constraints (and the keys they need) stay in the CREATE; other tables still move.
    found = _rewritten(tmp_path, b"/*!40101 SET NAMES utf8mb4 */;\n" + TABLES)
    create, alters = found["child"]
    assert alters == [] and b"CONSTRAINT `fk`" in create and b"KEY `k_pid`" in create
    assert found["plain"][1] == [b"ALTER TABLE `plain` ADD KEY `k_a` (`a`)"]


def test_late_keys_off_sends_every_create_as_dumped(tmp_path):
    found = _rewritten(tmp_path, HEADER + TABLES, late_keys=False)
    assert all(alters == [] for _create, alters in found.values())
    assert b"KEY `k_a`" in found["plain"][0]


def test_the_headers_last_foreign_key_setting_wins(tmp_path):
    from actions.mariadb_load import _fk_checks_off

    def header(*texts: bytes) -> list:
        path = tmp_path / "h.sql"
        path.write_bytes(b"".join(t + b";\n" for t in texts))
        with open(path, "rb") as handle:
            return list(iter_statements(handle))

    dumped = b"/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */"
    assert _fk_checks_off(header(dumped))
    assert _fk_checks_off(header(b"SET foreign_key_checks = OFF"))
    assert not _fk_checks_off(header(dumped, b"SET FOREIGN_KEY_CHECKS=1"))
    assert not _fk_checks_off(header(b"SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS"))
    assert not _fk_checks_off(header(b"SET NAMES utf8mb4"))
