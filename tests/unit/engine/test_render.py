"""Rendering of the systemd unit, the cron file and the logrotate snippet (engine/render.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from actions.registry import STEP_KINDS
from engine.errors import UsageError
from engine.policy import JobSpec, MonitorSpec, Policy, ProbeSpec, Step
from engine.render import (
    HARDENING,
    check_schedule,
    cron_path,
    render_all,
    render_cron,
    render_dropin,
    render_logrotate,
    render_template,
    render_unit,
    systemd_quote,
    write_paths,
)
from engine.schemacheck import SCHEMA_DIR, load_schemas

ENGINE = Path("/usr/local/bin/failover-engine")


def make_policy(tmp_path: Path, **overrides) -> Policy:
    """A GOCDB-like policy built by hand (load_policy is not needed for these tests)."""
    state_dir = tmp_path / "state"
    jobs = {
        "import": JobSpec(
            name="import", steps=[Step("unzip", {})], work_dir=state_dir / "work",
            schedule="17 * * * *", status_log=Path("/var/log/failover-engine/gocdb-import.log"),
        ),
        "archive": JobSpec(name="archive", steps=[Step("archive", {})],
                           work_dir=state_dir / "work", schedule="@daily"),
        "manual": JobSpec(name="manual", steps=[Step("unzip", {})], work_dir=state_dir / "work"),
    }
    fields = dict(
        path=tmp_path / "gocdb.yaml",
        name="gocdb",
        state_dir=state_dir,
        monitor=MonitorSpec(target="production", interval=600.0, failures_to_engage=30,
                            guards=["internet"]),
        engage=[
            Step("notify", {"message": "engaging"}),
            Step("check_dump_age", {"status_log": "/var/log/failover-engine/gocdb-import.log",
                                    "max_age": "7h"}),
            Step("disable_cron", {"file": "/etc/cron.d/failover-engine-gocdb"}),
            Step("lock", {"state": "present", "file": "/var/lock/gocdb/engage.lock"}),
        ],
        restore=[
            Step("enable_cron", {"file": "/etc/cron.d/failover-engine-gocdb"}),
            Step("lock", {"state": "absent", "file": "/var/lock/gocdb/engage.lock"}),
        ],
        probes={"production": ProbeSpec("production", "http", {"url": "https://x.invalid/"}),
                "internet": ProbeSpec("internet", "http", {"url": "http://y.invalid/"})},
        jobs=jobs,
    )
    fields.update(overrides)
    return Policy(**fields)


def unit_values(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) → values of a unit file, in order."""
    section, values = "", {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault((section, key), []).append(value)
    return values


def test_template_runs_the_instance_policy_with_restart_limits_and_hardening():
    text = render_template(ENGINE)
    values = unit_values(text)
    assert values[("Service", "ExecStart")] == [
        f"{ENGINE} --policy /etc/failover-engine/%i.yaml run"]
    assert values[("Service", "Type")] == ["simple"]
    assert values[("Service", "Restart")] == ["on-failure"]
    assert values[("Service", "Environment")] == ["FAILOVER_POLICY=/etc/failover-engine/%i.yaml"]
    assert values[("Unit", "AssertPathExists")] == ["/etc/failover-engine/%i.yaml"]
    # start limits belong in [Unit] (systemd ignores them in [Service] since v230)
    assert ("Unit", "StartLimitBurst") in values and ("Unit", "StartLimitIntervalSec") in values
    for key, want in [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                      ("PrivateTmp", "yes")]:
        assert values[("Service", key)] == [want]
    assert ("Service", "TimeoutStopSec") in values and ("Service", "RestartSec") in values
    assert ("Service", "User") not in values  # root by default
    assert ("Install", "WantedBy") in values  # enabled per instance, started by nothing else


def test_each_hardening_directive_has_its_reason_above_it():
    lines = render_template(ENGINE).splitlines()
    for directive, reason in HARDENING:
        at = lines.index(directive)
        assert lines[at - 1] == f"# {reason}" and reason.strip(), directive


def test_dropin_names_the_command_only_when_it_differs_from_the_template(tmp_path):
    etc = make_policy(tmp_path, path=Path("/etc/failover-engine/gocdb.yaml"))
    values = unit_values(render_dropin(etc, ENGINE))
    assert ("Service", "ExecStart") not in values and ("Unit", "AssertPathExists") not in values
    elsewhere = make_policy(tmp_path)
    policy_file = str(tmp_path / "gocdb.yaml")
    values = unit_values(render_dropin(elsewhere, ENGINE))
    # an empty assignment first: it replaces the template's command instead of adding one
    assert values[("Service", "ExecStart")] == ["", f"{ENGINE} --policy {policy_file} run"]
    assert values[("Service", "Environment")] == [f"FAILOVER_POLICY={policy_file}"]
    assert values[("Unit", "AssertPathExists")] == ["", policy_file]


def test_read_write_paths_cover_state_cron_and_lock_dirs(tmp_path):
    policy = make_policy(tmp_path)
    rw = unit_values(render_dropin(policy, ENGINE))[("Service", "ReadWritePaths")][0].split()
    assert rw[0] == str(tmp_path / "state")  # required: install creates it
    # check_dump_age only reads its status_log: ProtectSystem=strict leaves reading alone
    assert set(rw[1:]) == {"-/etc/cron.d", "-/var/lock/gocdb"}
    assert write_paths(policy) == sorted(Path(p) for p in ("/etc/cron.d", "/var/lock/gocdb"))
    # the instance as systemd reads it: the template's defaults, then the policy's paths
    merged = unit_values(render_unit(policy, ENGINE))[("Service", "ReadWritePaths")]
    assert merged[0] == "-/var/lib/failover-engine/gocdb -/var/log/failover-engine"
    assert merged[1].split() == rw


def test_writable_paths_come_from_the_fragments_x_writes(tmp_path):
    """A property marked x-writes in a fragment is writable in the unit, whatever its name."""
    schema_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, schema_dir)
    lock = schema_dir / "steps" / "lock.json"
    schema = json.loads(lock.read_text())
    schema["properties"]["target"] = {"type": "string", "description": "Where it goes.",
                                      "x-path": True, "x-writes": "file"}
    schema["properties"]["spool"] = {"type": "string", "description": "A directory.",
                                     "x-path": True, "x-writes": "dir"}
    lock.write_text(json.dumps(schema))
    policy = make_policy(tmp_path, restore=[], engage=[
        Step("lock", {"state": "present", "target": "/srv/flags/engaged",
                      "spool": "/srv/spool"})])
    assert write_paths(policy, load_schemas(schema_dir)) == [Path("/srv/flags"),
                                                             Path("/srv/spool")]
    assert write_paths(policy) == []  # the shipped lock.json marks neither


def test_every_x_writes_property_is_a_path(tmp_path):
    """x-writes values are "file" or "dir", on properties the loader makes absolute."""
    schemas = load_schemas()
    for kind in STEP_KINDS:
        properties = schemas.fragment(f"steps/{kind}.json").get("properties", {})
        for name, sub in properties.items():
            if "x-writes" in sub:
                assert sub["x-writes"] in ("file", "dir"), (kind, name)
                assert sub.get("x-path") is True, (kind, name)


def test_park_dir_and_metrics_dir_are_writable(tmp_path):
    policy = make_policy(
        tmp_path, restore=[],
        engage=[Step("disable_cron", {"file": "/etc/cron.d/x", "park_dir": "/srv/parked"})],
        monitor=MonitorSpec(target="production", interval=600.0, failures_to_engage=30,
                            metrics_file=Path("/var/lib/node-exporter/fe.prom")))
    assert write_paths(policy) == [Path("/etc/cron.d"), Path("/srv/parked"),
                                   Path("/var/lib/node-exporter")]


def test_paths_inside_the_state_dir_are_not_listed_twice(tmp_path):
    inside = str(tmp_path / "state" / "engage.lock")
    policy = make_policy(tmp_path, engage=[Step("lock", {"state": "present", "file": inside})],
                         restore=[])
    assert write_paths(policy) == []


def test_user_option_sets_user_in_unit_and_cron(tmp_path):
    policy = make_policy(tmp_path)
    assert unit_values(render_dropin(policy, ENGINE, "failover"))[("Service", "User")] == [
        "failover"]
    lines = [line for line in render_cron(policy, ENGINE, "failover").splitlines()
             if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert all(line.split()[5 if line[0] != "@" else 1] == "failover" for line in lines)


def test_systemd_quoting_of_odd_paths():
    assert systemd_quote("/srv/a b/p%1.yaml") == '"/srv/a b/p%%1.yaml"'
    assert systemd_quote("/a$b", dollar=True) == "/a$$b"
    assert systemd_quote("/plain") == "/plain"


def test_cron_has_one_line_per_scheduled_job_with_abs_policy_and_log(tmp_path):
    policy = make_policy(tmp_path)
    text = render_cron(policy, ENGINE)
    entries = [line for line in text.splitlines()
               if line and not line.startswith("#") and not line.split()[0].count("=")]
    policy_file = tmp_path / "gocdb.yaml"
    assert entries == [
        f"@daily root {ENGINE} --policy {policy_file} job archive "
        ">> /var/log/failover-engine/gocdb-archive.cron.log 2>&1",
        f"17 * * * * root {ENGINE} --policy {policy_file} job import "
        ">> /var/log/failover-engine/gocdb-import.cron.log 2>&1",
    ]
    assert text.endswith("\n")  # cron ignores a last line without a newline
    assert cron_path(policy) == Path("/etc/cron.d/failover-engine-gocdb")


def test_cron_escapes_percent_and_quotes_spaces(tmp_path):
    odd = tmp_path / "my dir"
    policy = make_policy(tmp_path, path=odd / "p%.yaml")
    line = [x for x in render_cron(policy, ENGINE).splitlines() if "job import" in x][0]
    assert f"'{odd}/p\\%.yaml'" in line


def test_no_scheduled_job_means_no_cron_file(tmp_path):
    policy = make_policy(tmp_path, jobs={})
    assert render_cron(policy, ENGINE) is None
    assert [str(f.path) for f in render_all(policy, ENGINE)] == [
        "/etc/systemd/system/failover-engine@.service",
        "/etc/systemd/system/failover-engine@gocdb.service.d/install.conf",
        "/etc/logrotate.d/failover-engine-gocdb"]
    # with the Debian package's template in place, install leaves it to the package
    assert [f.path.name for f in render_all(policy, ENGINE, packaged_template=True)] == [
        "install.conf", "failover-engine-gocdb"]


@pytest.mark.parametrize("schedule", ["17 * * *", "* * * * * *", "@often", "1 2 3 4 5\nx",
                                      "17 * * * ;rm"])
def test_bad_schedule_is_a_usage_error_naming_the_job(tmp_path, schedule):
    policy = make_policy(tmp_path)
    with pytest.raises(UsageError, match=r"jobs\.import\.schedule"):
        check_schedule(policy, "import", schedule)


def test_schedule_whitespace_is_normalised(tmp_path):
    assert check_schedule(make_policy(tmp_path), "x", " 17  *\t* * 1-5 ") == "17 * * * 1-5"


def test_logrotate_covers_status_logs_cron_logs_and_audit(tmp_path):
    policy = make_policy(tmp_path)
    text = render_logrotate(policy)
    heads = [line[:-2] for line in text.splitlines() if line.endswith(" {")]
    assert heads == [
        "/var/log/failover-engine/gocdb-import.log",
        "/var/log/failover-engine/gocdb-archive.cron.log "
        "/var/log/failover-engine/gocdb-import.cron.log",
        str(tmp_path / "state" / "audit.jsonl"),
    ]
    assert len([line for line in text.splitlines() if line == "}"]) == 3
    # the status log keeps its success evidence across a rotation
    assert "completed ok" in text.split("}\n")[0]


def test_cron_output_never_goes_into_a_status_log(tmp_path):
    policy = make_policy(tmp_path)
    clash = {"import": JobSpec(name="import", steps=[], work_dir=tmp_path, schedule="@hourly",
                               status_log=Path("/var/log/failover-engine/gocdb-import.cron.log"))}
    with pytest.raises(UsageError, match="status_log"):
        render_cron(make_policy(tmp_path, jobs=clash), ENGINE)
    # the GOCDB policy's status log is gocdb-import.log: cron writes beside it, not into it
    assert "/gocdb-import.log " not in render_cron(policy, ENGINE)
