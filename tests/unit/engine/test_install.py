"""install/uninstall into a staging root: files, idempotence, systemd-analyze, cron, logrotate."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.commands import install
from engine.render import render_logrotate
from tests.support import require_binary
from tests.unit.engine.test_render import make_policy

# A real executable, so `systemd-analyze verify` can check ExecStart.
ENGINE = Path(shutil.which("true") or "/bin/true")


@pytest.fixture
def policy(tmp_path, monkeypatch):
    policy = make_policy(tmp_path, state_dir=Path("/var/lib/failover-engine/gocdb"))
    monkeypatch.setattr(install, "load", lambda args: policy)
    return policy


def run(cmd, root: Path, **extra) -> int:
    args = argparse.Namespace(policy=None, state_dir=None, root=str(root), dry_run=False,
                              user=None, engine=str(ENGINE))
    for key, value in extra.items():
        setattr(args, key, value)
    return cmd(args)


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under root → (kind and content, mode)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        kind = "dir" if path.is_dir() else "file:" + path.read_text()
        found[rel] = (kind, path.stat().st_mode & 0o7777)
    return found


def manifest_dirs(root: Path) -> list[str]:
    path = root / "var/lib/failover-engine/gocdb/installed.json"
    return json.loads(path.read_text())["dirs"]


def test_status_log_directories_are_created(tmp_path, policy, monkeypatch):
    root = tmp_path / "root"
    job = policy.jobs["import"]
    moved = {"import": job.__class__(name="import", steps=[], work_dir=job.work_dir,
                                     schedule="@hourly", status_log=Path("/srv/logs/imp.log"))}
    other = make_policy(tmp_path, state_dir=policy.state_dir, jobs=moved)
    monkeypatch.setattr(install, "load", lambda args: other)
    run(install.main, root)
    assert (root / "srv/logs").stat().st_mode & 0o777 == 0o750
    assert {"/srv", "/srv/logs"} <= set(manifest_dirs(root))
    run(install.uninstall_main, root)
    assert not (root / "srv").exists()


def cron_entries(text: str) -> list[list[str]]:
    """Split a cron.d file's job lines: 5 time fields (or @nickname), user, command."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        head = line.split()[0]
        if "=" in head and not head.startswith("@"):  # an environment line
            continue
        if head.startswith("@"):
            when, user, command = line.split(maxsplit=2)
            entries.append([when, user, command])
        else:
            *fields, user, command = line.split(maxsplit=6)
            assert len(fields) == 5, line
            entries.append([" ".join(fields), user, command])
    return entries


def test_install_writes_unit_cron_logrotate_and_manifest(tmp_path, policy, capsys):
    root = tmp_path / "root"
    assert run(install.main, root) == 0
    unit = root / "etc/systemd/system/failover-engine@.service"
    dropin = root / "etc/systemd/system/failover-engine@gocdb.service.d/install.conf"
    cron = root / "etc/cron.d/failover-engine-gocdb"
    rotate = root / "etc/logrotate.d/failover-engine-gocdb"
    for path in (unit, dropin, cron, rotate):
        assert path.stat().st_mode & 0o777 == 0o644, path
    state = root / "var/lib/failover-engine/gocdb"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (root / "var/log/failover-engine").is_dir()  # cron's `>>` needs it
    assert "/var/log/failover-engine" in manifest_dirs(root)
    manifest = json.loads((state / "installed.json").read_text())
    assert sorted(manifest["files"]) == sorted(
        "/" + str(p.relative_to(root)) for p in (unit, dropin, cron, rotate))
    assert f"ExecStart={ENGINE} --policy /etc/failover-engine/%i.yaml run" in unit.read_text()
    assert f"ExecStart={ENGINE} --policy {policy.path} run" in dropin.read_text()
    out = capsys.readouterr().out
    assert "created /etc/cron.d/failover-engine-gocdb" in out
    assert "systemctl enable --now failover-engine@gocdb.service" not in out  # staged only


def test_cron_file_parses_and_has_each_scheduled_job_once(tmp_path, policy):
    root = tmp_path / "root"
    run(install.main, root, user="nobody")
    entries = cron_entries((root / "etc/cron.d/failover-engine-gocdb").read_text())
    jobs = [cmd.split()[3:5] for _, _, cmd in entries]
    assert sorted(j[1] for j in jobs) == ["archive", "import"]  # `manual` has no schedule
    assert all(j[0] == "job" for j in jobs)
    assert {user for _, user, _ in entries} == {"nobody"}
    assert {when for when, _, _ in entries} == {"17 * * * *", "@daily"}
    for _, _, command in entries:
        assert command.startswith(f"{ENGINE} --policy {policy.path} job ")
        assert command.endswith(" 2>&1")


def test_second_install_changes_nothing_and_says_so(tmp_path, policy, capsys):
    root = tmp_path / "root"
    run(install.main, root)
    before = tree(root)
    capsys.readouterr()
    assert run(install.main, root) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert tree(root) == before


def test_install_repairs_an_edited_file(tmp_path, policy, capsys):
    root = tmp_path / "root"
    run(install.main, root)
    cron = root / "etc/cron.d/failover-engine-gocdb"
    good = cron.read_text()
    cron.write_text("# hand edit\n")
    capsys.readouterr()
    run(install.main, root)
    assert cron.read_text() == good
    assert "updated /etc/cron.d/failover-engine-gocdb" in capsys.readouterr().out


def test_dry_run_prints_files_and_diff_and_writes_nothing(tmp_path, policy, capsys):
    root = tmp_path / "root"
    root.mkdir()
    assert run(install.main, root, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "would create: /etc/systemd/system/failover-engine@.service" in out
    assert "ProtectSystem=strict" in out
    assert "--- content of /etc/cron.d/failover-engine-gocdb" in out
    assert "+++ " not in out  # nothing installed: the content is the whole story
    assert list(root.iterdir()) == []
    run(install.main, root)
    unit = root / "etc/systemd/system/failover-engine@.service"
    unit.write_text(unit.read_text().replace("RestartSec=30s", "RestartSec=1s"))
    capsys.readouterr()
    run(install.main, root, dry_run=True)
    out = capsys.readouterr().out
    assert "--- diff against " in out and "-RestartSec=1s\n+RestartSec=30s" in out
    assert "unchanged: /etc/cron.d/failover-engine-gocdb" in out
    assert "RestartSec=1s" in unit.read_text()


def test_uninstall_leaves_the_root_as_before(tmp_path, policy, capsys):
    root = tmp_path / "root"
    (root / "etc/cron.d").mkdir(parents=True)
    (root / "etc/cron.d/someone-else").write_text("0 0 * * * root true\n")
    before = tree(root)
    run(install.main, root)
    run(install.main, root)
    assert tree(root) != before
    assert run(install.uninstall_main, root) == 0
    assert tree(root) == before
    assert run(install.uninstall_main, root) == 0  # again: nothing to do, no error
    assert "nothing to uninstall" in capsys.readouterr().out


def test_uninstall_keeps_state_and_files_changed_since_install(tmp_path, policy, capsys):
    root = tmp_path / "root"
    run(install.main, root)
    state = root / "var/lib/failover-engine/gocdb"
    (state / "state.json").write_text("{}")
    rotate = root / "etc/logrotate.d/failover-engine-gocdb"
    rotate.write_text("# mine now\n")
    run(install.uninstall_main, root)
    out = capsys.readouterr().out
    assert rotate.exists() and "kept /etc/logrotate.d/failover-engine-gocdb" in out
    assert (state / "state.json").exists() and not (state / "installed.json").exists()
    assert not (root / "etc/cron.d/failover-engine-gocdb").exists()


def test_uninstall_dry_run_removes_nothing(tmp_path, policy, capsys):
    root = tmp_path / "root"
    run(install.main, root)
    before = tree(root)
    run(install.uninstall_main, root, dry_run=True)
    assert "would remove /etc/cron.d/failover-engine-gocdb" in capsys.readouterr().out
    assert tree(root) == before


def test_a_job_losing_its_schedule_loses_its_cron_file(tmp_path, policy, monkeypatch):
    root = tmp_path / "root"
    run(install.main, root)
    bare = make_policy(tmp_path, state_dir=policy.state_dir, jobs={})
    monkeypatch.setattr(install, "load", lambda args: bare)
    run(install.main, root)
    assert not (root / "etc/cron.d/failover-engine-gocdb").exists()
    run(install.uninstall_main, root)
    assert not (root / "etc").exists() or not any(p.is_file() for p in (root / "etc").rglob("*"))


def test_bad_user_is_a_usage_error(tmp_path, policy):
    with pytest.raises(install.UsageError, match="--user"):
        run(install.main, tmp_path / "root", user="root; rm -rf /")


def _instance(root: Path) -> Path:
    """The instance unit as systemd finds it: a link to the template, beside its drop-in."""
    unit_dir = root / "etc/systemd/system"
    instance = unit_dir / "failover-engine@gocdb.service"
    instance.symlink_to("failover-engine@.service")
    return instance


def test_unit_passes_systemd_analyze_verify(tmp_path, policy):
    analyze = require_binary("systemd-analyze")  # Debian package systemd
    root = tmp_path / "root"
    run(install.main, root)
    instance = _instance(root)
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning"}
    result = subprocess.run([analyze, "verify", "--man=no", str(instance)], capture_output=True,
                            text=True, env=env)
    # verify exits 0 even for unknown settings; a clean unit prints nothing at all
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    # the check has teeth, and it reads the drop-in as well as the template
    dropin = root / "etc/systemd/system/failover-engine@gocdb.service.d/install.conf"
    dropin.write_text(dropin.read_text() + "Restart=sometimes\n")
    result = subprocess.run([analyze, "verify", "--man=no", str(instance)], capture_output=True,
                            text=True, env=env)
    assert "install.conf" in result.stderr and "sometimes" in result.stderr


def test_unit_exposure_is_at_most_3(tmp_path, policy):
    """`systemd-analyze security` rates the hardened instance "OK" (≤ 3.0; was 9.0 UNSAFE)."""
    analyze = require_binary("systemd-analyze")
    root = tmp_path / "root"
    run(install.main, root)
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager",
                             str(_instance(root))], capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0, result.stdout


def test_uninstall_keeps_the_template_while_another_instance_uses_it(tmp_path, policy, capsys):
    root = tmp_path / "root"
    run(install.main, root)
    other = root / "etc/systemd/system/failover-engine@other.service.d"
    other.mkdir()
    run(install.uninstall_main, root)
    assert "kept /etc/systemd/system/failover-engine@.service: the template of " \
        "failover-engine@other.service too" in capsys.readouterr().out
    assert (root / "etc/systemd/system/failover-engine@.service").exists()
    assert not (root / "etc/systemd/system/failover-engine@gocdb.service.d").exists()


def test_the_packaged_template_is_left_to_the_package(tmp_path, policy, monkeypatch):
    root = tmp_path / "root"
    packaged = root / "lib/systemd/system/failover-engine@.service"
    packaged.parent.mkdir(parents=True)
    packaged.write_text("# the package's\n")
    monkeypatch.setattr(install, "PACKAGED_ENGINE", ENGINE)
    run(install.main, root)
    assert not (root / "etc/systemd/system/failover-engine@.service").exists()
    assert (root / "etc/systemd/system/failover-engine@gocdb.service.d/install.conf").exists()


def test_logrotate_keeps_the_success_line_in_the_new_status_log(tmp_path):
    logrotate = require_binary("logrotate")  # Debian package logrotate
    status = tmp_path / "log" / "import.log"
    status.parent.mkdir(mode=0o755)
    status.write_text("2026-11-26T05:17:00+00:00 INFO: completed ok\n"
                      "2026-11-26T06:17:00+00:00 ERROR: fetch failed\n")
    policy = make_policy(tmp_path)
    jobs = {"import": policy.jobs["import"].__class__(
        name="import", steps=[], work_dir=tmp_path, schedule="17 * * * *", status_log=status)}
    policy = make_policy(tmp_path, jobs=jobs)
    conf = tmp_path / "rotate.conf"
    conf.write_text(render_logrotate(policy, log_dir=tmp_path / "log"))
    conf.chmod(0o644)
    result = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "rotate.state"), str(conf)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert status.read_text() == ("2026-11-26T05:17:00+00:00 INFO: completed ok\n"
                                  "2026-11-26T06:17:00+00:00 ERROR: fetch failed\n")
    assert (tmp_path / "log" / "import.log.1").exists()


POLICY_YAML = """\
version: 1
name: demo
state_dir: {state}
probes:
  production:
    tcp: {{host: 127.0.0.1, port: 9}}
monitor:
  target: production
  interval: 10m
  failures_to_engage: 3
engage:
  - lock: {{state: present}}
restore:
  - lock: {{state: absent}}
jobs:
  tick:
    schedule: "*/5 * * * *"
    steps:
      - command: {{argv: ["/bin/true"]}}
"""


def cli(*argv: str) -> subprocess.CompletedProcess:
    import sys

    from tests.support import REPO

    return subprocess.run([sys.executable, str(REPO / "bin" / "failover-engine"), *argv],
                          capture_output=True, text=True, cwd=REPO)


def test_install_and_uninstall_through_the_command_line(tmp_path):
    policy_file = tmp_path / "demo.yaml"
    policy_file.write_text(POLICY_YAML.format(state=tmp_path / "state"))
    root = tmp_path / "root"
    root.mkdir()
    first = cli("--policy", str(policy_file), "install", "--root", str(root))
    assert first.returncode == 0, first.stderr
    cron = (root / "etc/cron.d/failover-engine-demo").read_text()
    [entry] = cron_entries(cron)
    assert entry[0] == "*/5 * * * *" and entry[1] == "root"
    assert entry[2].split()[1:5] == ["--policy", str(policy_file), "job", "tick"]
    again = cli("--policy", str(policy_file), "install", "--root", str(root))
    assert again.returncode == 0 and "nothing to change" in again.stdout
    gone = cli("--policy", str(policy_file), "uninstall", "--root", str(root))
    assert gone.returncode == 0, gone.stderr
    assert list(root.iterdir()) == []


def test_a_state_dir_override_is_passed_on_to_unit_and_cron(tmp_path):
    policy_file = tmp_path / "demo.yaml"
    policy_file.write_text(POLICY_YAML.format(state=tmp_path / "state"))
    root, other = tmp_path / "root", tmp_path / "elsewhere"
    result = cli("--policy", str(policy_file), "--state-dir", str(other), "install",
                 "--root", str(root))
    assert result.returncode == 0, result.stderr
    flag = f"--policy {policy_file} --state-dir {other} "
    unit = (root / "etc/systemd/system/failover-engine@demo.service.d/install.conf").read_text()
    # the lock steps write only under the state dir, so it is the one writable path
    assert f"{flag}run\n" in unit and f"\nReadWritePaths={other}\n" in unit
    assert f"{flag}job tick" in (root / "etc/cron.d/failover-engine-demo").read_text()
    assert (root / str(other).lstrip("/") / "installed.json").exists()


def test_install_with_an_invalid_policy_exits_2(tmp_path):
    policy_file = tmp_path / "bad.yaml"
    policy_file.write_text("version: 1\nname: Bad Name\n")
    result = cli("--policy", str(policy_file), "install", "--root", str(tmp_path / "root"))
    assert result.returncode == 2 and str(policy_file) in result.stderr
    assert not (tmp_path / "root").exists()
