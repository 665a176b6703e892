"""actions/mariadb_late_keys.py without a server: which keys leave a dumped CREATE TABLE for
the ALTER after the rows, which stay, and which tables are left alone. (That the result is
byte-identical to the client's is tests/integration/test_import_differential.py's job.)"""
from __future__ import annotations

from actions.mariadb_late_keys import split_create

CREATE = b"""CREATE TABLE `roles` (
  `id` int(11) NOT NULL,
  `user_id` int(11) NOT NULL,
  `site_id` int(11) NOT NULL,
  `name` varchar(64) DEFAULT 'KEY `x`,',
  `body` text DEFAULT NULL,
  `geo` point NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `u_name` (`name`),
  KEY `k_user` (`user_id`),
  KEY `k_site_desc` (`site_id` DESC,`id`),
  KEY `k_prefix` (`body`(5)) COMMENT 'a, KEY ''x'' \\' (`y`)' IGNORED,
  SPATIAL KEY `sp` (`geo`),
  FULLTEXT KEY `ft` (`body`),
  CONSTRAINT `fk_user` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE CASCADE,
  CONSTRAINT `chk` CHECK (`id` > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"""


def test_plain_spatial_keys_and_foreign_keys_move_to_one_alter_in_dump_order():
    split = split_create(CREATE)
    assert split.alter == (
        b"ALTER TABLE `roles` ADD KEY `k_user` (`user_id`), ADD KEY `k_site_desc`"
        b" (`site_id` DESC,`id`), ADD KEY `k_prefix` (`body`(5)) COMMENT 'a, KEY ''x'' \\'"
        b" (`y`)' IGNORED, ADD SPATIAL KEY"
        b" `sp` (`geo`), ADD CONSTRAINT `fk_user` FOREIGN KEY (`user_id`) REFERENCES"
        b" `users` (`id`) ON DELETE CASCADE")
    assert split.foreign_keys == 1


def test_primary_unique_fulltext_check_and_columns_stay_with_commas_mended():
    split = split_create(CREATE)
    assert split.create == b"""CREATE TABLE `roles` (
  `id` int(11) NOT NULL,
  `user_id` int(11) NOT NULL,
  `site_id` int(11) NOT NULL,
  `name` varchar(64) DEFAULT 'KEY `x`,',
  `body` text DEFAULT NULL,
  `geo` point NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `u_name` (`name`),
  FULLTEXT KEY `ft` (`body`),
  CONSTRAINT `chk` CHECK (`id` > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"""


def test_the_last_definition_moving_leaves_no_trailing_comma():
    split = split_create(b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `a` int,\n"
                         b"  PRIMARY KEY (`id`),\n  KEY `k` (`a`)\n) ENGINE=InnoDB")
    assert split.create == (b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `a` int,\n"
                            b"  PRIMARY KEY (`id`)\n) ENGINE=InnoDB")
    assert split.alter == b"ALTER TABLE `t` ADD KEY `k` (`a`)"
    assert split.foreign_keys == 0


def test_a_quoted_table_name_is_kept_as_written():
    split = split_create(b"CREATE TABLE `a``b;c` (\n  `id` int NOT NULL,\n"
                         b"  PRIMARY KEY (`id`),\n  KEY `k` (`id`)\n) ENGINE=InnoDB")
    assert split.alter == b"ALTER TABLE `a``b;c` ADD KEY `k` (`id`)"


def _unchanged(create: bytes) -> bool:
    split = split_create(create)
    return split.alter is None and split.create == create


def test_tables_left_alone():
    body = b"  `id` int NOT NULL,\n  `a` int,\n  PRIMARY KEY (`id`),\n  KEY `k` (`a`)\n"
    assert _unchanged(b"CREATE TABLE `t` (\n" + body + b") ENGINE=MyISAM")
    assert _unchanged(b"CREATE TABLE `t` (\n" + body + b") ENGINE=Aria")
    assert _unchanged(b"CREATE TABLE `t` (\n" + body + b") ENGINE=InnoDB\n"
                      b" PARTITION BY HASH (`id`)\nPARTITIONS 3")
    # no PRIMARY KEY: InnoDB's hidden row id, and a UNIQUE NOT NULL key could become primary
    assert _unchanged(b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `a` int,\n"
                      b"  KEY `k` (`a`)\n) ENGINE=InnoDB")
    # nothing to move
    assert _unchanged(b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  PRIMARY KEY (`id`)\n"
                      b") ENGINE=InnoDB")
    # not one definition per line (a hand-written dump)
    assert _unchanged(b"CREATE TABLE `t` (`id` int NOT NULL PRIMARY KEY, `a` int, KEY k (a))"
                      b" ENGINE=InnoDB")
    assert _unchanged(b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `a` int,\n"
                      b"  PRIMARY KEY (`id`),\n  KEY `k` (`a`), KEY `k2` (`id`)\n) ENGINE=InnoDB")
    assert _unchanged(b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `a` int,\n"
                      b"  PRIMARY KEY (`id`),\n  KEY `k` (`a`) WEIRD_OPTION\n) ENGINE=InnoDB")
    assert _unchanged(b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `a` int,\n"
                      b"  PRIMARY KEY (`id`),\n  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES"
                      b" `p` (`id`) MATCH FULL\n) ENGINE=InnoDB")
    assert _unchanged(b"CREATE TABLE IF NOT EXISTS `t` (\n" + body + b") ENGINE=InnoDB")


def test_a_multi_column_foreign_key_as_show_create_writes_it():
    split = split_create(
        b"CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `pid` int(11) DEFAULT NULL,\n"
        b"  `pcode` varchar(8) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n"
        b"  KEY `k_multi` (`pcode`,`pid`),\n"
        b"  CONSTRAINT `fk_multi` FOREIGN KEY (`pcode`, `pid`) REFERENCES `other`.`p`"
        b" (`code`, `id`) ON DELETE SET NULL ON UPDATE NO ACTION\n) ENGINE=InnoDB")
    assert split.foreign_keys == 1
    assert split.alter is not None and split.alter.endswith(b"ON UPDATE NO ACTION")
