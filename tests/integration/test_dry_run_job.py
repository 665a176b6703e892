"""`failover-engine dry-run job import` through the command line, on the shipped job shape.

fetch (a local path) → unzip → import_mariadb (a real mariadbd) → archive: every step
plans, the run exits 0, and each step's planned output is what the next step is shown to
work on, exactly as a real run hands on applied outputs. Nothing is written: no work
file, no archive, no state directory, no database.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.mariadb import write_option_file
from tests.support import REPO

pytestmark = pytest.mark.integration

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]
LIVE = "gocdb_dryrun_live"
DUMP = (b"-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB\n"
        b"CREATE TABLE `sites` (`id` int NOT NULL, PRIMARY KEY (`id`));\n"
        b"INSERT INTO `sites` VALUES (1),(2);\n"
        b"CREATE TABLE `services` (`id` int NOT NULL, PRIMARY KEY (`id`));\n"
        b"INSERT INTO `services` VALUES (1);\n"
        b"-- Dump completed on 2026-11-30  5:00:00\n")


def dry_run(policy: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "--policy", str(policy), "dry-run", "job", "import"],
                          capture_output=True, text=True, timeout=120, check=False)


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def step_lines(stdout: str) -> list[str]:
    """The step lines with the `hands on:` line that follows each, joined: one per step."""
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("      hands on: "):
            lines[-1] += " | " + line.strip()
        elif line.startswith("  "):
            lines.append(line.strip())
    return lines


@pytest.fixture
def world(tmp_path: Path, mariadb):
    source = tmp_path / "production" / "gocdb.sql.zip"
    source.parent.mkdir()
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("backups/gocdb.sql", DUMP)
    os.chmod(source, 0o644)
    options = write_option_file(tmp_path / "standby.cnf", mariadb)
    text = f"""\
    version: 1
    name: dryrun
    state_dir: state
    secrets: {{standby: {options}}}
    probes:
      production: {{tcp: {{host: 127.0.0.1, port: {mariadb.port}}}}}
    monitor: {{target: production, interval: 10s, failures_to_engage: 3}}
    engage: [{{lock: {{state: present}}}}]
    restore: [{{lock: {{state: absent}}}}]
    jobs:
      import:
        work_dir: work
        steps:
          - fetch: {{source: "{source}"}}
          - unzip: {{}}
          - import_mariadb: {{options: standby, database: {LIVE}}}
          - archive: {{dir: archive, keep: 1}}
    """
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(text))
    mariadb.drop_databases(LIVE, f"{LIVE}_staging", f"{LIVE}_previous")
    yield policy, source
    mariadb.drop_databases(LIVE, f"{LIVE}_staging", f"{LIVE}_previous")


def test_dry_run_job_import_plans_every_step_and_chains_the_planned_outputs(
        world, tmp_path: Path, mariadb) -> None:
    policy, source = world
    before = tree(tmp_path)
    done = dry_run(policy)
    assert done.returncode == 0, done.stdout + done.stderr
    work, archive = tmp_path / "work", tmp_path / "archive"
    fetched = work / "gocdb.sql.zip"
    extracted = f"the file extracted from {fetched}"
    steps = step_lines(done.stdout)
    assert len(steps) == 4 and all(line.startswith("→ step ") for line in steps), done.stdout
    assert steps[0] == (f"→ step 1 fetch: fetch {source} ({source.stat().st_size} bytes) → "
                        f"{fetched} | hands on: {fetched}")
    # unzip works on what fetch would hand on; the member's name is inside the archive.
    assert steps[1] == (f"→ step 2 unzip: would extract the single file of {fetched} into "
                        f"{work} (checked once it exists) | hands on: {extracted}")
    # import_mariadb works on unzip's output and has really asked the server (0 tables).
    assert steps[2].startswith(f"→ step 3 import_mariadb: would load {extracted} into "
                               f"{LIVE}_staging and swap its tables into {LIVE} (live has 0 "
                               "tables; the dump is checked once it exists)")
    assert steps[2].endswith(f"| hands on: {extracted}")
    assert steps[3].startswith(f"→ step 4 archive: would copy {extracted} into {archive}")
    assert "WOULD FAIL" not in done.stdout and "would fail" not in done.stdout
    assert tree(tmp_path) == before, "a dry-run writes nothing"
    assert LIVE not in {row[0] for row in mariadb.sql("SHOW DATABASES")}


def test_dry_run_checks_what_exists_and_plans_the_rest(world, tmp_path: Path) -> None:
    """With the zip already fetched, unzip reads it: import and archive get the real name."""
    policy, source = world
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    fetched = work / "gocdb.sql.zip"
    fetched.write_bytes(source.read_bytes())
    os.utime(fetched, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
    done = dry_run(policy)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = step_lines(done.stdout)
    sql = work / "gocdb.sql"
    assert steps[0] == (f"= step 1 fetch: already done: already fetched: {fetched} | "
                        f"hands on: {fetched}")
    assert steps[1] == (f"→ step 2 unzip: extract backups/gocdb.sql ({len(DUMP)} bytes) from "
                        f"{fetched} → {sql} | hands on: {sql}")
    assert steps[2].startswith(f"→ step 3 import_mariadb: would load {sql} into {LIVE}_staging")
    assert steps[2].endswith(f"| hands on: {sql}")
    archived = tmp_path / "archive"
    assert steps[3].startswith(f"→ step 4 archive: would copy {sql} → {archived}/_goc5dump_")
    assert "(checked once it exists)" in steps[3]
    assert not sql.exists() and not archived.exists()
