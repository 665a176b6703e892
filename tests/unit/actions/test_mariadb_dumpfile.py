"""The dump reader: statements, delimiters, trailer, sandbox line, table sections."""
from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actions.mariadb_dumpfile import (
    DumpFormatError,
    classify,
    index_dump,
    iter_statements,
    read_trailer,
    unfinished_end,
)
from actions.mysql_options import check_mode, parse, read_options
from engine.errors import StepError

# Shaped like `mariadb-dump --single-transaction --routines --events --triggers --databases`
# output of MariaDB 10.11 (sandbox line, versioned comments, DELIMITER blocks, view stubs).
DUMP = b"""/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19
--
-- Host: localhost    Database: src
-- ------------------------------------------------------
/*!40101 SET NAMES utf8mb4 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;

CREATE DATABASE /*!32312 IF NOT EXISTS*/ `src` /*!40100 DEFAULT CHARACTER SET latin1 */;

USE `src`;

--
-- Table structure for table `c`
--

DROP TABLE IF EXISTS `c`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
CREATE TABLE `c` (
  `id` int(11) NOT NULL,
  `note` varchar(20) DEFAULT NULL COMMENT 'ends with;',
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;
/*!40101 SET character_set_client = @saved_cs_client */;

LOCK TABLES `c` WRITE;
/*!40000 ALTER TABLE `c` DISABLE KEYS */;
INSERT INTO `c` VALUES
(1,'semi;'),
(2,'x\\n-- y;');
/*!40000 ALTER TABLE `c` ENABLE KEYS */;
UNLOCK TABLES;
/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;
/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES' */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 trigger tr before insert on c
for each row set new.note = 'a;' */;;
DELIMITER ;
/*!50003 SET sql_mode              = @saved_sql_mode */ ;

--
-- Table structure for table `p`
--

DROP TABLE IF EXISTS `p`;
CREATE TABLE `p` (
  `id` int(11) NOT NULL
) ENGINE=InnoDB;
INSERT INTO `p` VALUES (1),(2);

DROP TABLE IF EXISTS `v`;
/*!50001 DROP VIEW IF EXISTS `v`*/;
/*!50001 CREATE VIEW `v` AS SELECT
 1 AS `id` */;
DELIMITER ;;
CREATE DEFINER=`root`@`localhost` PROCEDURE `pr`()
BEGIN
  SELECT 1;
  SELECT 'x;';
END ;;
DELIMITER ;
/*!50001 DROP VIEW IF EXISTS `v`*/;
/*!50001 CREATE ALGORITHM=UNDEFINED */
/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */
/*!50001 VIEW `v` AS select `p`.`id` AS `id` from `p` */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;

-- Dump completed on 2026-11-26  6:41:36
"""


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "d.sql"
    path.write_bytes(DUMP)
    return path


def test_statements_skip_sandbox_comments_and_honour_delimiters(dump: Path) -> None:
    with open(dump, "rb") as handle:
        statements = list(iter_statements(handle))
    kinds = [s.kind for s in statements]
    assert kinds[0] == "session"  # the sandbox line is no statement
    assert kinds.count("trigger") == 1 and kinds.count("routine") == 1
    routine = next(s for s in statements if s.kind == "routine")
    assert routine.name == "pr" and routine.delimiter == b";;"
    assert routine.text.endswith(b"END")  # body semicolons stay inside
    insert = next(s for s in statements if s.kind == "insert" and s.name == "c")
    assert insert.text.endswith(b"(2,'x\\n-- y;')")
    create = next(s for s in statements if s.kind == "create_table" and s.name == "c")
    assert b"ENGINE=InnoDB" in create.text  # the COMMENT ending in ';' did not end it
    assert all(not s.text.startswith(b"--") for s in statements)


def test_classify_sees_through_versioned_comments() -> None:
    assert classify(b"/*!50001 CREATE ALGORITHM=UNDEFINED */\n/*!50013 DEFINER=`a`@`b` SQL"
                    b" SECURITY DEFINER */\n/*!50001 VIEW `v` AS select 1 */") == ("view", "v")
    assert classify(b"/*!50106 CREATE*/ /*!50117 DEFINER=`r`@`l`*/ /*!50106 EVENT `e` ON") == (
        "event", "e")
    assert classify(b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `src`") == ("create_database",
                                                                            "src")
    assert classify(b"USE `my``db`") == ("use", "my`db")
    assert classify(b"INSERT INTO `t` VALUES (1)") == ("insert", "t")
    # Written around routines whose collation differs: names the source database.
    assert classify(b"/*!50003 ALTER DATABASE `src` CHARACTER SET latin1 */") == (
        "alter_database", "src")
    assert classify(b"/*!50106 DROP EVENT IF EXISTS `e` */") == ("drop_routine", "e")


def test_index_sections_and_remainder(dump: Path) -> None:
    index = index_dump(dump)
    assert index.sandbox
    assert index.tables == ["c", "p"]
    assert index.databases == ["src"]
    assert index.views == ["v"] and index.triggers == ["tr"] and index.routines == ["pr"]
    assert [s.kind for s in index.header] == ["session", "session"]
    with open(dump, "rb") as handle:
        c_section = list(iter_statements(handle, index.sections[0].start, index.sections[0].end))
    assert c_section[0].kind == "drop_table" and c_section[-1].kind == "unlock"
    # The trigger's settings stay with the trigger, not inside table c's section.
    rest_kinds = [s.kind for s in index.rest]
    assert rest_kinds.index("trigger") - 2 == rest_kinds.index("session", 3)
    assert "use" in rest_kinds and "create_database" in rest_kinds
    assert "insert" not in rest_kinds and "create_table" not in rest_kinds


def test_trailer_date_is_utc_by_default(dump: Path) -> None:
    line, completed = read_trailer(dump)
    assert line == "-- Dump completed on 2026-11-26  6:41:36"
    assert completed == datetime(2026, 11, 26, 6, 41, 36, tzinfo=UTC)


def test_missing_trailer_and_cut_dump(tmp_path: Path) -> None:
    cut = tmp_path / "cut.sql"
    cut.write_bytes(DUMP[: int(len(DUMP) * 0.6)])
    assert read_trailer(cut) == (None, None)
    cut.write_bytes(DUMP[: DUMP.index(b"(2,'x")])  # ends inside an INSERT
    with pytest.raises(DumpFormatError, match="ends inside a statement"):
        index_dump(cut)


def test_statement_range_reads_only_its_bytes() -> None:
    data = b"SET a=1;\nINSERT INTO `t` VALUES (1);\nINSERT INTO `u` VALUES (2);\n"
    start = data.index(b"INSERT")
    end = data.index(b"INSERT", start + 1)
    got = list(iter_statements(io.BytesIO(data), start, end))
    assert [(s.kind, s.name) for s in got] == [("insert", "t")]


def test_blob_bytes_survive(tmp_path: Path) -> None:
    path = tmp_path / "b.sql"
    path.write_bytes(b"INSERT INTO `b` VALUES (_binary '\xff\xfe\\0\\'\x80;');\n")
    with open(path, "rb") as handle:
        (statement,) = list(iter_statements(handle))
    assert statement.text == b"INSERT INTO `b` VALUES (_binary '\xff\xfe\\0\\'\x80;')"


# ------------------------------------------------------------- option files (mysql_options)
def test_option_file_parse_groups_quotes_and_comments() -> None:
    text = ("[mysqld]\npassword=server\n[client]\nuser = failover\npassword = \"p#ss w\"\n"
            "host=db # the primary\nport=3307\n[client-mariadb]\nssl-ca=/ca.pem\n")
    got = parse(text)
    assert got == {"user": "failover", "password": "p#ss w", "host": "db", "port": "3307",
                   "ssl-ca": "/ca.pem"}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_option_file_open_modes_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "db.cnf"
    path.write_text("[client]\npassword=s3cret-value\n")
    path.chmod(mode)
    with pytest.raises(StepError, match=f"mode {mode:04o}.*chmod 600") as info:
        check_mode(path)
    assert "s3cret-value" not in str(info.value)


def test_option_file_read_keeps_password_out_of_repr(tmp_path: Path) -> None:
    path = tmp_path / "db.cnf"
    path.write_text("[client]\nuser=u\npassword=s3cret-value\nsocket=/run/m.sock\n")
    path.chmod(0o400)
    options = read_options(path)
    assert options.password == "s3cret-value"
    assert "s3cret-value" not in repr(options)
    assert options.connect_args()["unix_socket"] == "/run/m.sock"
    assert options.where() == "socket /run/m.sock"


def test_trailer_in_another_zone_and_bad_zone_refused(dump: Path) -> None:
    from zoneinfo import ZoneInfo

    from actions.import_mariadb import ImportMariadb

    _line, completed = read_trailer(dump, ZoneInfo("Asia/Tokyo"))
    assert completed is not None
    assert completed.astimezone(UTC) == datetime(2026, 11, 25, 21, 41, 36,
                                                          tzinfo=UTC)
    with pytest.raises(StepError, match="dump_timezone 'Mars/Base'"):
        ImportMariadb({"options": "db", "database": "gocdb", "dump_timezone": "Mars/Base"})
    with pytest.raises(StepError, match="database 'go-cdb'"):
        ImportMariadb({"options": "db", "database": "go-cdb"})


@pytest.mark.parametrize(("tail", "problem"), [
    (b"INSERT INTO `t` VALUES (1,'a');\n", None),
    (b"INSERT INTO `t` VALUES (1,'a');\n\n-- a comment\n", None),
    (b"END ;;\nDELIMITER ;\n", None),
    (b"/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n", None),
    (b"INSERT INTO `t` VALUES (1,'a'),(2,'b\n", "does not end a statement"),
    (b"INSERT INTO `t` VALUES (1,'semi;\n", "inside a quoted value"),
    (b"INSERT INTO `t` VALUES (1,'it\\'s;\n", "inside a quoted value"),
    (b"\n-- only a comment\n", "holds no statement"),
])
def test_unfinished_end(tmp_path: Path, tail: bytes, problem: str | None) -> None:
    """Without the trailer, the file's last statement must be whole (require_trailer: false)."""
    path = tmp_path / "dump.sql"
    path.write_bytes(tail)
    found = unfinished_end(path)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_delimiter_inside_a_line_comment_does_not_end_a_routine() -> None:
    """`SET y = x * 2; -- ;;` in a routine body: the `;;` is inside the comment (found by
    the differential test; the client reads on, and so must we)."""
    dump = (b"DELIMITER ;;\n"
            b"CREATE FUNCTION `f`(x INT) RETURNS INT DETERMINISTIC\n"
            b"BEGIN\n  DECLARE y INT;\n  SET y = x * 2; -- ;;\n  # and ;;\n  RETURN y;\nEND ;;\n"
            b"DELIMITER ;\nSELECT 1;\n")
    statements = list(iter_statements(io.BytesIO(dump)))
    assert [s.kind for s in statements] == ["routine", "other"]
    assert statements[0].text.endswith(b"RETURN y;\nEND")



@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 16])
def test_multi_line_insert_read_in_chunks(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """mariadb-dump's one-row-per-line INSERTs are read in chunks up to the first `;` and
    newline: the same statements as line by line, whatever the chunk size (a `;` that ends
    one chunk and a newline that starts the next included), and a cut one is still cut."""
    import actions.mariadb_dumpfile as dumpfile

    dump = (b"INSERT INTO `t` VALUES\n(1,'a;b'),\n(2,'c;\\nd'),\n(3,'x');\n"
            b"INSERT INTO `t` VALUES (4,'y'),\n(5,'z;');\n"
            b"SET @a = 1;\nINSERT INTO `u` VALUES (6);\n")
    monkeypatch.setattr(dumpfile, "_rows_follow", lambda line, delimiter: False)
    expected = [(s.text, s.start, s.end) for s in iter_statements(io.BytesIO(dump))]
    monkeypatch.undo()
    monkeypatch.setattr(dumpfile, "_CHUNK", chunk)
    found = [(s.text, s.start, s.end) for s in iter_statements(io.BytesIO(dump))]
    assert found == expected and len(found) == 4
    # Within a section's range (end) the chunks stop at its end.
    second = expected[1]
    ranged = list(iter_statements(io.BytesIO(dump), second[1], second[2]))
    assert [(s.text, s.start, s.end) for s in ranged] == [second]
    with pytest.raises(DumpFormatError, match="ends inside a statement"):
        list(iter_statements(io.BytesIO(dump[: dump.index(b"(3,")])))
