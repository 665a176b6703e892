"""Differential test: import_mariadb against the `mariadb` client as oracle, on real mariadbd.

Thirty fixed seeds of tests/fixtures/random_dump.py: random tables (binary columns, 4-byte
text, zero dates, JSON, spatial and generated columns, partitions, very long lines; unique,
composite, prefix, descending, IGNORED, FULLTEXT and SPATIAL keys; foreign keys —
self-referencing, multi-column, with ON DELETE/UPDATE actions, rows child-before-parent
and orphans, which only FOREIGN_KEY_CHECKS=0 loads — so the keys-after-the-rows path of
actions/mariadb_late_keys.py is compared too) with views, triggers, routines and events
whose bodies hold `;`, `;;`, quotes, `DELIMITER` and
comment markers, dumped by the real `mariadb-dump` with random options (`--hex-blob`,
`--skip-extended-insert`, `--complete-insert`, `--skip-comments`, `--compact`,
`--databases`). Each dump is loaded by our step and by `mariadb < dump`; row counts,
CHECKSUM TABLE (a row hash where generated columns make it unstable) and SHOW CREATE of
every object must agree. A disagreement fails with the seed and the kept dump's path.
`bench/run --differential N` runs more seeds.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import actions.mariadb_load
from tests.fixtures import random_dump
from tests.support import require_binary

pytestmark = pytest.mark.integration

SEEDS = range(30)


@pytest.fixture(scope="module")
def work(mariadb_server, tmp_path_factory) -> Path:
    """Where dumps go (a disagreeing one stays there); the databases go at the end."""
    require_binary("mariadb-dump")
    require_binary("mariadb")
    yield tmp_path_factory.mktemp("differential")
    if mariadb_server.process is not None and mariadb_server.process.poll() is None:
        random_dump.cleanup(mariadb_server)


@pytest.mark.parametrize("seed", SEEDS)
def test_ours_loads_what_the_client_loads(mariadb, work, seed):
    problem = random_dump.run_case(mariadb, seed, work)
    assert problem is None, problem
    assert not (work / f"diff-{seed}.sql").exists(), "an agreeing dump is not kept"


def test_a_lost_row_is_caught_and_the_dump_kept(mariadb, work, monkeypatch):
    """The comparison can fail: a loader that drops one INSERT is a reported mismatch."""
    real = actions.mariadb_load.execute
    dropped: list[bytes] = []

    def lossy(conn, statement, where):
        if statement.kind == "insert" and not dropped:
            dropped.append(statement.text)
            return None
        return real(conn, statement, where)

    monkeypatch.setattr(actions.mariadb_load, "execute", lossy)
    seed = next(s for s in SEEDS if any(rows for _sql, rows in random_dump.make_case(s).inserts))
    problem = random_dump.run_case(mariadb, seed, work / "lossy")
    assert dropped, "the sabotaged loader ran"
    assert problem is not None and "differs" in problem, problem
    kept = work / "lossy" / f"diff-{seed}.sql"
    assert f"dump kept at {kept}" in problem and kept.exists()
