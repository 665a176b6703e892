"""actions/mariadb_swap.py without a server: the manifest a dump declares, the comparison
with what live holds, and the journal's file (a damaged one is refused, never guessed)."""
from __future__ import annotations

import json

import pytest

from actions.mariadb_dumpfile import index_dump
from actions.mariadb_swap import (
    Manifest,
    SwapJournal,
    _decode,
    _encode,
    manifest_problems,
    pause_point,
)
from engine.errors import StepError

DUMP = b"""/*M!999999\\- enable the sandbox mode */
SET NAMES utf8mb4;
DROP TABLE IF EXISTS `sites`;
CREATE TABLE `sites` (id INT PRIMARY KEY);
INSERT INTO `sites` VALUES (1),(2);
DROP TABLE IF EXISTS `v_sites`;
/*!50001 CREATE VIEW `v_sites` AS SELECT 1 AS `id` */;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER `trg` \
BEFORE INSERT ON `sites` FOR EACH ROW SET NEW.id = NEW.id */;;
DELIMITER ;
DELIMITER ;;
CREATE DEFINER=`root`@`localhost` FUNCTION `f`() RETURNS int(11) RETURN 1 ;;
DELIMITER ;
DELIMITER ;;
/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `ev` \
ON SCHEDULE EVERY 1 DAY DO DELETE FROM sites WHERE id < 0 */ ;;
DELIMITER ;
/*!50001 DROP VIEW IF EXISTS `v_sites`*/;
/*!50001 CREATE ALGORITHM=UNDEFINED VIEW `v_sites` AS select `sites`.`id` AS `id` from `sites` */;
-- Dump completed on 2026-11-30  6:00:46
"""


def test_the_manifest_is_what_the_dump_declares(tmp_path):
    path = tmp_path / "d.sql"
    path.write_bytes(DUMP)
    manifest = Manifest.from_index(index_dump(path))
    assert manifest == Manifest(tables=["sites"], views=["v_sites"], triggers=["trg"],
                                routines=["f"], events=["ev"])
    assert manifest.count() == "1 tables, 1 views, 1 triggers, 1 routines, 1 events"
    assert Manifest.from_json(json.loads(json.dumps(manifest.__dict__))) == manifest


def test_problems_name_what_is_missing_and_what_is_extra():
    want = Manifest(tables=["a", "b"], triggers=["t"], views=["v"])
    have = Manifest(tables=["a", "c"], views=["v"])
    assert manifest_problems(want, have) == ["missing table b", "unexpected table c",
                                             "missing trigger t"]
    assert manifest_problems(want, want) == []


def test_statements_survive_the_journal_byte_for_byte(tmp_path):
    path = tmp_path / "d.sql"
    path.write_bytes(DUMP)
    rest = [s for s in index_dump(path).rest if s.kind in ("trigger", "view", "routine")]
    decoded = _decode(json.loads(json.dumps(_encode(rest))))
    assert [(s.kind, s.name, s.text) for s in decoded] == [(s.kind, s.name, s.text)
                                                           for s in rest]


def test_journal_write_read_remove(tmp_path):
    journal = SwapJournal(tmp_path, "gocdb")
    assert journal.read() is None
    journal.write(phase="prepared", new_tables=["a"])
    assert journal.path == tmp_path / "swap" / "gocdb.json"
    assert oct(journal.path.stat().st_mode & 0o777) == "0o600"
    assert SwapJournal(tmp_path, "gocdb").read() == {"phase": "prepared", "new_tables": ["a"]}
    journal.remove()
    assert not journal.path.exists()
    journal.remove()  # twice is fine


@pytest.mark.parametrize("text", ["{", "[]", '{"phase": "prepared"}'])
def test_a_damaged_journal_is_refused_not_guessed(tmp_path, text):
    journal = SwapJournal(tmp_path, "gocdb")
    journal.path.parent.mkdir()
    journal.path.write_text(text)
    with pytest.raises(StepError, match="is damaged.*compare live with the dump by hand"):
        journal.read()


def test_the_pause_hook_does_nothing_unless_asked(monkeypatch):
    monkeypatch.delenv("FAILOVER_ENGINE_TEST_SWAP_PAUSE", raising=False)
    pause_point("before-rename")  # returns at once
    monkeypatch.setenv("FAILOVER_ENGINE_TEST_SWAP_PAUSE", "after-rename=/nonexistent/x")
    pause_point("before-rename")  # another point: returns at once
