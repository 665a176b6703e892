"""Readiness end to end on real servers: BIND (primary + secondary), an HTTPS standby and
production demanding a client certificate. A policy shaped like the shipped one passes
every check; each fault is then made for real and shows as its own failing check with its
own reason, and a before/after comparison (zone serial and records, every file under the
policy's directory) proves the checks change nothing."""
from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.drillkit.https import HttpsServer
from engine.drillkit.named import DnsLab
from engine.drillkit.pki import Pki
from engine.policy import Policy, load_policy
from engine.readiness import (
    Check,
    ReadinessConfig,
    ReadinessRunner,
    disk_checks,
    load_record,
    readiness_config,
    run_checks,
)
from tests.fixtures.bind import PROD, STANDBY
from tests.integration.test_dns_nsupdate import answer

NAME = "goc.example.test."


class World:
    """The policy's directory, the servers, and how to look at everything."""

    def __init__(self, root: Path, lab: DnsLab, server: HttpsServer, pki: Pki) -> None:
        self.root, self.lab, self.server, self.pki = root, lab, server, pki
        assert lab.primary is not None
        secrets = root / "secrets"
        secrets.mkdir(mode=0o700)
        self.key = secrets / "tsig.key"
        shutil.copy(lab.update_key_file, self.key)
        self.key.chmod(0o600)
        (root / "cron.d").mkdir()
        (root / "cron.d" / "import").write_text("17 * * * * root true\n")
        self.write_log(timedelta(minutes=30))
        port = lab.primary.port
        servers = json.dumps(lab.servers)
        client = (f"client_cert: {pki.client.cert}, client_key: {pki.client.key}, "
                  f"ca_file: {pki.ca.cert}")
        self.policy_file = root / "policy.yaml"
        self.policy_file.write_text(textwrap.dedent(f"""\
            version: 1
            name: ready
            state_dir: state
            secrets: {{tsig: {self.key}}}
            probes:
              production:
                http: {{url: "{server.url('/health')}", {client}, timeout: 2s}}
              standby:
                http: {{url: "{server.url('/standby')}", {client}, timeout: 2s,
                        expect_body: standby}}
            monitor: {{target: production, interval: 1h, failures_to_engage: 3}}
            readiness: {{interval: 1h, certificate_days: 1}}
            engage:
              - check_dump_age: {{status_log: import.log, max_age: 7h, require_last_ok: true}}
              - probe: {{name: standby}}
              - disable_cron: {{file: cron.d/import}}
              - nsupdate: {{server: 127.0.0.1, port: {port}, zone: example.test.,
                           name: {NAME}, type: CNAME, ttl: 60, expect: {PROD},
                           set: {STANDBY}, key: tsig}}
              - lock: {{state: present}}
            restore:
              - nsupdate: {{server: 127.0.0.1, port: {port}, zone: example.test.,
                           name: {NAME}, type: CNAME, ttl: 60, expect: {STANDBY},
                           set: {PROD}, key: tsig}}
              - wait_dns: {{name: {NAME}, type: CNAME, expect: {PROD}, servers: {servers},
                           settle: 1s, interval: 200ms, timeout: 10s}}
              - enable_cron: {{file: cron.d/import}}
              - lock: {{state: absent}}
            """))
        (root / "state").mkdir(mode=0o700)

    def write_log(self, age: timedelta) -> None:
        stamp = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
        (self.root / "import.log").write_text(f"{stamp} INFO: completed ok\n")

    def policy(self) -> Policy:
        return load_policy(self.policy_file)

    def snapshot(self) -> dict[str, Any]:
        """The zone on both servers and every file under the policy's directory."""
        assert self.lab.primary is not None and self.lab.secondary is not None
        files = {str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(self.root.rglob("*")) if p.is_file()
                 and p.name != "readiness.json"}
        return {"serial": self.lab.serial(self.lab.primary),
                "secondary": self.lab.serial(self.lab.secondary),
                "record": answer(self.lab.primary), "files": files,
                "journal": sorted(p.name for p in self.lab.directory.rglob("*.jnl"))}

    def check(self, state: str = "watching") -> dict[str, Check]:
        """Run every check, asserting it changed nothing; the checks by name."""
        policy = self.policy()
        config = readiness_config(policy)
        assert config is not None
        before = self.snapshot()
        checks = run_checks(policy, config, state)
        assert self.snapshot() == before, "a readiness check changed something"
        return {c.name: c for c in checks}


@pytest.fixture
def world(tmp_path: Path, dns_lab: DnsLab, https_server: HttpsServer, pki: Pki) -> World:
    https_server.set_route("/health", 200, "OK")
    https_server.set_route("/standby", 200, "standby OK")
    return World(tmp_path, dns_lab, https_server, pki)


def failing(checks: dict[str, Check]) -> dict[str, tuple[str, str]]:
    return {n: (c.reason, c.detail) for n, c in checks.items() if not c.ok}


def test_a_ready_standby_passes_every_check(world: World) -> None:
    checks = world.check()
    assert failing(checks) == {}
    assert set(checks) >= {"engage.1.check_dump_age", "engage.2.probe",
                           "engage.4.nsupdate", "restore.1.nsupdate", "cron.1", "parking.1",
                           "state_dir", "certificate.production", "certificate.standby"}
    assert "granted" in checks["engage.4.nsupdate"].detail


def test_grant_lost_in_a_config_change(world: World) -> None:
    world.lab.set_grant("goc", False)  # the primary reloaded without our grant
    bad = failing(world.check())
    assert set(bad) == {"engage.4.nsupdate", "restore.1.nsupdate"}
    reason, detail = bad["engage.4.nsupdate"]
    assert reason == "refused_grant"
    assert detail.startswith(f"REFUSED: key update-key is not allowed to update {NAME} CNAME")
    world.lab.set_grant("goc", True)
    assert failing(world.check()) == {}


def test_rotated_secret_is_badsig(world: World) -> None:
    from engine.drillkit.named import TsigSecret

    TsigSecret("update-key").write(world.key)  # the DNS admins rotated the key
    world.key.chmod(0o600)
    bad = failing(world.check())
    assert {n: r for n, (r, _d) in bad.items()} == {"engage.4.nsupdate": "badsig",
                                                    "restore.1.nsupdate": "badsig"}


def test_frozen_zone(world: World) -> None:
    assert world.lab.primary is not None
    world.lab.primary.rndc("freeze", "example.test")
    try:
        bad = failing(world.check())
    finally:
        world.lab.primary.rndc("thaw", "example.test")
    assert bad["engage.4.nsupdate"][0] == "frozen"
    assert "rndc thaw example.test" in bad["engage.4.nsupdate"][1]


def test_standby_down(world: World) -> None:
    world.server.set_route("/standby", 503, "maintenance")
    bad = failing(world.check())
    assert bad == {"engage.2.probe": ("plan", "probe standby failed: HTTP 503 (expected 200)")}


def test_dump_age_margin_and_stale(world: World) -> None:
    world.write_log(timedelta(hours=6, minutes=30))
    checks = world.check()
    assert failing(checks).keys() == {"engage.1.check_dump_age"}
    assert (checks["engage.1.check_dump_age"].reason,
            checks["engage.1.check_dump_age"].warning) == ("margin", True)
    world.write_log(timedelta(hours=8))
    stale = world.check()["engage.1.check_dump_age"]
    assert (stale.ok, stale.reason, stale.warning) == (False, "stale", False)


def test_cron_file_missing_and_parked_while_engaged(world: World) -> None:
    cron = world.root / "cron.d" / "import"
    cron.unlink()
    bad = failing(world.check())
    assert bad["cron.1"][0] == "missing" and "failover-engine install" in bad["cron.1"][1]
    parked = world.root / "state" / "parked"
    parked.mkdir(mode=0o700)
    (parked / "import").write_text("17 * * * * root true\n")
    assert world.check(state="engaged")["cron.1"].ok


def test_state_dir_unsafe(world: World) -> None:
    (world.root / "state").chmod(0o777)
    bad = failing(world.check())
    assert bad["state_dir"][0] == "unsafe"


def test_certificate_expiring(world: World) -> None:
    world.policy_file.write_text(world.policy_file.read_text().replace(
        "certificate_days: 1", "certificate_days: 7"))
    bad = failing(world.check())
    assert set(bad) == {"certificate.production", "certificate.standby"}
    assert bad["certificate.standby"][0] == "expiring"


def test_the_runner_records_since_and_last_ok_and_raises_events(world: World) -> None:
    events: list[tuple[str, str]] = []
    policy = world.policy()
    runner = ReadinessRunner(lambda: policy, lambda: "watching",
                             lambda kind, headline, summary, lines: events.append(
                                 (kind, headline)))
    first = runner.run_once()
    assert first is not None and first.failing == []
    assert load_record(policy.state_dir) == first
    world.lab.set_grant("goc", False)
    lost = runner.run_once()
    assert lost is not None
    assert lost.failing == ["engage.4.nsupdate", "restore.1.nsupdate"]
    check = lost.checks["engage.4.nsupdate"]
    assert check.last_ok == first.checked_at and check.since == lost.checked_at
    world.lab.set_grant("goc", True)
    time.sleep(0.01)
    regained = runner.run_once()
    assert regained is not None and regained.failing == []
    assert events == [("lost", "engage.4.nsupdate, restore.1.nsupdate"),
                      ("regained", "all checks pass")]
    assert ReadinessConfig() == ReadinessConfig(3600.0, 7, 2.0)


def test_the_import_job_is_checked_and_the_database_is_untouched(world: World,
                                                                   mariadb: Any) -> None:
    """A job fetch → unzip → import_mariadb → archive on a real mariadbd: the fetch proof
    and the disk check run; the live database's checksums and tables stay as they were."""
    import zipfile

    from tests.fixtures.mariadb import write_option_file

    mariadb.drop_databases("ready_live")
    mariadb.sql("CREATE DATABASE ready_live")
    mariadb.sql("CREATE TABLE ready_live.site (id INT PRIMARY KEY, name VARCHAR(40))")
    mariadb.sql("INSERT INTO ready_live.site VALUES (1, 'RAL'), (2, 'CERN')")
    options = write_option_file(world.root / "secrets" / "mariadb.cnf", mariadb)
    dump = world.root / "production" / "dump.sql.zip"
    dump.parent.mkdir()
    with zipfile.ZipFile(dump, "w") as archive:
        archive.writestr("dump.sql", "CREATE TABLE site (id INT PRIMARY KEY);\n")
    text = world.policy_file.read_text().replace(
        "secrets: {tsig: ", f"secrets: {{mariadb: {options}, tsig: ")
    world.policy_file.write_text(text + textwrap.dedent(f"""\
        jobs:
          import:
            schedule: "17 * * * *"
            status_log: import.log
            work_dir: work
            steps:
              - fetch: {{source: {dump}}}
              - unzip: {{}}
              - import_mariadb: {{options: mariadb, database: ready_live}}
              - archive: {{dir: archive, keep: 1}}
        """))
    before = (mariadb.checksums("ready_live"),
              mariadb.sql("SELECT table_name FROM information_schema.tables "
                          "WHERE table_schema LIKE 'ready%' ORDER BY 1"))
    checks = world.check()
    after = (mariadb.checksums("ready_live"),
             mariadb.sql("SELECT table_name FROM information_schema.tables "
                         "WHERE table_schema LIKE 'ready%' ORDER BY 1"))
    assert after == before, "a readiness check changed the database"
    assert failing(checks) == {}
    assert checks["job.import.1.fetch"].facts == {"source_bytes": dump.stat().st_size}
    assert checks["disk.import"].ok and "the next import needs" in checks["disk.import"].detail
    # A dump larger than the free space (the size is what the fetch proof reports).
    (full,) = disk_checks(world.policy(), {"import": 2**60}, 2.0)
    assert (full.ok, full.reason) == (False, "disk_full")
    (unknown,) = disk_checks(world.policy(), {}, 2.0)
    assert (unknown.ok, unknown.reason, unknown.warning) == (False, "unknown", True)
    mariadb.drop_databases("ready_live")


def test_the_monitor_runs_the_checks_at_its_start(world: World) -> None:
    from engine.failover import Engine
    from engine.monitor import Monitor
    from engine.state import StateStore

    policy = world.policy()
    store = StateStore(policy.state_dir)
    with store.hold("test"):
        engine = Engine(policy, store, send_mail=False)
        monitor = Monitor(engine)
        monitor.run_forever(max_cycles=1)
        monitor.readiness.join(30)
    record = load_record(policy.state_dir)
    assert record is not None and record.failing == []
    assert not monitor.readiness.tick(), "the next run waits for the interval"


def test_while_engaged_only_the_restore_steps_are_checked(world: World) -> None:
    world.write_log(timedelta(hours=9))  # the import is parked while engaged: data ages
    parked = world.root / "state" / "parked"
    parked.mkdir(mode=0o700)
    (world.root / "cron.d" / "import").rename(parked / "import")
    checks = world.check(state="engaged")
    assert not [n for n in checks if n.startswith("engage.")]
    assert {"restore.1.nsupdate", "restore.2.wait_dns"} <= set(checks)
    assert failing(checks) == {}
