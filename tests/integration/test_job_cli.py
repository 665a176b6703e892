"""Jobs through the CLI against real mariadbd, sshd and an SMTP sink.

The standby refresh as cron runs it: `job dump` (dump_mariadb near production) then
`job import` (fetch over SFTP → unzip → import_mariadb → archive); the live database
then matches the source table by table, the status log ends with `completed ok` and
`check dump-age` says OK. Then the job semantics: the pause file, the refusal while
engaged, no overlapping runs, and exactly one failure mail for a broken dump.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.mariadb import write_option_file
from tests.support import REPO

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]
LIVE = "gocdb_job_live"


def cli(policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "--policy", str(policy), *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def world(tmp_path, mariadb, gocdb_source, sshd_server, smtp_sink):
    source_db, _counts = gocdb_source
    remote = tmp_path / "production"
    remote.mkdir()
    options = write_option_file(tmp_path / "standby.cnf", mariadb)
    text = f"""\
    version: 1
    name: jobs
    state_dir: state
    secrets: {{standby: {options}}}
    notify:
      email:
        smtp: {{host: 127.0.0.1, port: {smtp_sink.port}}}
        from: engine@t.test
        to: [admins@t.test]
        subject: jobs
    probes:
      production: {{tcp: {{host: 127.0.0.1, port: {mariadb.port}}}}}
    monitor: {{target: production, interval: 10s, failures_to_engage: 3}}
    engage: [{{lock: {{state: present}}}}]
    restore: [{{lock: {{state: absent}}}}]
    jobs:
      dump:
        status_log: dump.log
        steps:
          - dump_mariadb: {{options: standby, database: {source_db}, file: {remote}/goc5dump.sql}}
      import:
        schedule: "17 * * * *"
        status_log: import.log
        pause_file: noImport
        notify_on_failure: true
        steps:
          - fetch:
              source: "{sshd_server.source(remote / 'goc5dump.sql')}"
              port: {sshd_server.port}
              known_hosts: {sshd_server.known_hosts}
              identity: {sshd_server.identity}
          - unzip: {{}}
          - import_mariadb: {{options: standby, database: {LIVE}}}
          - archive: {{dir: archive, keep: 1}}
    """
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(text))
    mariadb.drop_databases(LIVE, f"{LIVE}_staging", f"{LIVE}_previous")
    yield policy, remote, source_db
    mariadb.drop_databases(LIVE, f"{LIVE}_staging", f"{LIVE}_previous")


def test_dump_fetch_import_archive_end_to_end(world, mariadb, tmp_path):
    policy, remote, source_db = world
    dump = cli(policy, "job", "dump")
    assert dump.returncode == 0, dump.stdout + dump.stderr
    assert (remote / "goc5dump.sql").stat().st_size > 100_000

    job = cli(policy, "job", "import")
    assert job.returncode == 0, job.stdout + job.stderr
    assert "job import: completed ok" in job.stdout
    for output in (dump, job):  # the option file's password never reaches any output
        assert mariadb.password not in output.stdout + output.stderr
    assert mariadb.checksums(LIVE) == mariadb.checksums(source_db)
    assert (tmp_path / "import.log").read_text().splitlines()[-1].endswith("INFO: completed ok")
    archived = list((tmp_path / "archive").iterdir())
    assert len(archived) == 1 and archived[0].name.startswith("_goc5dump_")
    assert oct(archived[0].stat().st_mode & 0o777) == "0o600"
    record = json.loads((tmp_path / "state" / "jobs" / "import.json").read_text())
    assert record["ok"] is True and record["last_success"] and record["data_completed"]

    check = cli(policy, "check", "dump-age", "--log", str(tmp_path / "import.log"))
    assert check.returncode == 0 and check.stdout.startswith("DUMP-AGE OK"), check.stdout
    data = cli(policy, "check", "dump-age", "--job", "import", "--data-age")
    assert data.returncode == 0, data.stdout + data.stderr

    again = cli(policy, "job", "import")  # a second run on the same dump is safe
    assert again.returncode == 0, again.stdout + again.stderr
    assert mariadb.checksums(LIVE) == mariadb.checksums(source_db)
    assert len(list((tmp_path / "archive").iterdir())) == 1  # keep: 1


def test_pause_file_stops_the_job_and_says_why(world, tmp_path):
    policy, _remote, _db = world
    (tmp_path / "noImport").write_text("database migration until Friday\n")
    job = cli(policy, "job", "import")
    assert job.returncode == 1
    assert "paused by" in job.stdout and "database migration until Friday" in job.stdout
    assert "ERROR: paused by" in (tmp_path / "import.log").read_text()


def test_refuses_to_import_while_engaged(world, tmp_path):
    policy, _remote, _db = world
    engage = cli(policy, "engage", "--now")
    assert engage.returncode == 0, engage.stdout + engage.stderr
    job = cli(policy, "job", "import")
    assert job.returncode == 1
    assert "refused: the failover is engaged" in job.stdout
    assert "--force" in job.stdout


def test_runs_never_overlap(world, tmp_path):
    policy, _remote, _db = world
    lock = tmp_path / "state" / "jobs" / "import.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"pid 4242 since earlier")
        job = cli(policy, "job", "import")
    finally:
        os.close(fd)
    assert job.returncode == 1
    assert "this job is already running (pid 4242" in job.stderr


def test_a_broken_dump_fails_with_one_mail_and_leaves_live_untouched(world, mariadb, tmp_path,
                                                                     smtp_sink):
    policy, remote, source_db = world
    assert cli(policy, "job", "dump").returncode == 0
    assert cli(policy, "job", "import").returncode == 0
    before = mariadb.checksums(LIVE)
    dump = remote / "goc5dump.sql"
    data = dump.read_bytes()
    dump.write_bytes(data[: int(len(data) * 0.6)])  # cut at 60 %: no trailer
    smtp_sink.clear()
    job = cli(policy, "job", "import")
    assert job.returncode == 1
    assert mariadb.checksums(LIVE) == before
    assert "ERROR:" in (tmp_path / "import.log").read_text().splitlines()[-1]
    check = cli(policy, "check", "dump-age", "--log", str(tmp_path / "import.log"))
    assert check.stdout.startswith("DUMP-AGE OK")  # the last success is still recent
    smtp_sink.wait_for(1)
    failures = [m for m in smtp_sink.messages if " JOB FAILED: job import" in m["Subject"]]
    assert len(failures) == 1


def test_a_zipped_dump_is_fetched_inflated_and_imported(world, mariadb, tmp_path):
    import zipfile

    policy, remote, source_db = world
    assert cli(policy, "job", "dump").returncode == 0
    with zipfile.ZipFile(remote / "goc5dump.sql.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(remote / "goc5dump.sql", "goc5dump.sql")
    (remote / "goc5dump.sql").unlink()
    policy.write_text(policy.read_text().replace("goc5dump.sql\"", "goc5dump.sql.zip\""))
    job = cli(policy, "job", "import")
    assert job.returncode == 0, job.stdout + job.stderr
    assert mariadb.checksums(LIVE) == mariadb.checksums(source_db)
