"""The command line as a new user meets it: the launcher, --version, --help, pipes, crashes.

- a copy of the checkout without `.venv`, started by Debian's /usr/bin/python3 with a bare
  PATH, names the missing package and `bin/bootstrap` (exit 2), never "internal error";
- the same copy with a `.venv` re-executes itself under it, whoever starts it;
- `install` refuses an engine command that cannot import the engine (nothing written);
- `--version`, a description for every subcommand, `check` without or with an unknown
  CHECK exits 3 (UNKNOWN);
- `status --json` into a closed pipe is quiet, exits 141 and leaves no crash file;
- an internal error leaves its traceback in `<state_dir>/crash/` (the last 10) and the
  line on stderr names that file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import cli
from tests.support import REPO

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]
SYSTEM_PYTHON = Path("/usr/bin/python3")
BARE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

POLICY = """\
version: 1
name: demo
state_dir: {state}
probes:
  production:
    tcp: {{host: 127.0.0.1, port: 9, timeout: 1s}}
monitor:
  target: production
  interval: 10m
  failures_to_engage: 3
engage:
  - lock: {{state: present, file: {lock}}}
restore:
  - lock: {{state: absent, file: {lock}}}
jobs:
  tick:
    schedule: "*/5 * * * *"
    steps:
      - command: {{argv: ["/bin/true"]}}
"""


def write_policy(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yaml"
    (tmp_path / "lock").mkdir(exist_ok=True)
    path.write_text(POLICY.format(state=tmp_path / "state", lock=tmp_path / "lock" / "engaged"))
    return path


def copy_checkout(dest: Path) -> Path:
    """What `git clone` gives: the sources, no .venv, no caches."""
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", ".mypy_cache",
                                    ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def system_python() -> list[str]:
    """Debian's python3 as a fresh machine has it: without the project's dependencies.
    `-S` leaves out the site directories, so Debian packages such as python3-jsonschema,
    if this machine has them, do not hide what a bare interpreter does."""
    if not SYSTEM_PYTHON.exists():
        pytest.skip("/usr/bin/python3 (Debian's python3) is not installed")
    command = [str(SYSTEM_PYTHON), "-S"]
    assert subprocess.run([*command, "-c", "import jsonschema"]).returncode != 0
    return command


def test_without_a_venv_the_launcher_names_the_package_and_bootstrap(tmp_path, system_python):
    checkout = copy_checkout(tmp_path / "clone")
    policy = write_policy(tmp_path)
    for command in (["dry-run", "engage"], ["validate"]):
        result = subprocess.run([*system_python, str(checkout / "bin" / "failover-engine"),
                                 "--policy", str(policy), *command],
                                capture_output=True, text=True, env=BARE_ENV, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "internal error" not in result.stderr and "bug" not in result.stderr
        [line] = result.stderr.splitlines()
        assert "is not installed" in line and "/usr/bin/python3" in line
        assert f"{checkout}/bin/bootstrap" in line
    version = subprocess.run([*system_python, str(checkout / "bin" / "failover-engine"),
                              "--version"], capture_output=True, text=True, env=BARE_ENV)
    assert version.returncode == 2 and "jsonschema" in version.stderr


def test_with_a_venv_the_launcher_runs_under_it_whoever_starts_it(tmp_path, system_python):
    checkout = copy_checkout(tmp_path / "clone")
    # The checkout's .venv: the project's own (bin/bootstrap would build the same).
    (checkout / ".venv").symlink_to(REPO / ".venv")
    policy = write_policy(tmp_path)
    launcher = str(checkout / "bin" / "failover-engine")
    version = subprocess.run([*system_python, launcher, "--version"],
                             capture_output=True, text=True, env=BARE_ENV)
    assert version.returncode == 0, version.stderr
    assert f"{checkout}/.venv/bin/python" in version.stdout
    dry = subprocess.run([*system_python, launcher, "--policy", str(policy),
                          "dry-run", "engage"], capture_output=True, text=True, env=BARE_ENV,
                         cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "lock" in dry.stdout
    assert not (tmp_path / "lock" / "engaged").exists()  # a dry run changes nothing


def test_install_refuses_an_engine_command_that_cannot_import_the_engine(tmp_path,
                                                                         system_python):
    checkout = copy_checkout(tmp_path / "clone")  # no .venv: cron's python3 lacks the deps
    launcher = checkout / "bin" / "failover-engine"
    # As on a fresh machine: the python3 cron finds has none of the packages (see
    # system_python for why -S).
    text = launcher.read_text().split("\n", 1)[1]
    launcher.write_text(f"#!{' '.join(system_python)}\n{text}")
    policy = write_policy(tmp_path)
    root = tmp_path / "root"
    import argparse

    from engine.commands import install

    args = argparse.Namespace(policy=str(policy), state_dir=None, root=str(root), dry_run=False,
                              user=None, check_group=None,
                              engine=str(checkout / "bin" / "failover-engine"))
    from engine.errors import FailoverError

    with pytest.raises(FailoverError, match="cannot run the engine with cron's environment"):
        install.main(args)
    assert not root.exists()  # no unit, no cron line, no manifest


def test_install_names_the_engine_command_it_checked(tmp_path):
    policy = write_policy(tmp_path)
    result = subprocess.run([*ENGINE, "--policy", str(policy), "install", "--root",
                             str(tmp_path / "root")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "engine command: " in result.stdout and "failover-engine 0." in result.stdout


def test_version_and_a_description_for_every_subcommand():
    result = subprocess.run([*ENGINE, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("failover-engine ")
    parser = cli.build_parser()
    commands = [key.split() for key in cli.COMMANDS]
    for words in commands:
        helped = subprocess.run([*ENGINE, *words, "--help"], capture_output=True, text=True)
        assert helped.returncode == 0, helped.stderr
        usage, _, rest = helped.stdout.partition("\n\n")
        description = rest.split("\n\n")[0]
        assert not description.startswith(("positional arguments", "options")), \
            f"`{' '.join(words)}` has no description"
    assert parser.prog == "failover-engine"


@pytest.mark.parametrize("argv", [["check"], ["check", "no-such-check"],
                                  ["check", "engine", "--bogus"]])
def test_check_without_a_known_check_is_unknown(argv):
    result = subprocess.run([*ENGINE, *argv], capture_output=True, text=True)
    assert result.returncode == 3
    assert "UNKNOWN" in result.stderr


def test_status_into_a_closed_pipe_is_quiet_and_leaves_no_crash_file(tmp_path):
    policy = write_policy(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -c1` that has already exited
    try:
        result = subprocess.run([*ENGINE, "--policy", str(policy), "status", "--json"],
                                stdout=write_end, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TMPDIR": str(temp)})
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""
    assert list(temp.iterdir()) == []
    assert not (tmp_path / "state" / "crash").exists()


def test_status_piped_to_head_reads_as_unix_tools_do(tmp_path):
    policy = write_policy(tmp_path)
    engine = " ".join(ENGINE)
    result = subprocess.run(["bash", "-c", f"{engine} --policy {policy} status --json | head -c1"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "{" and result.stderr == ""


def test_an_internal_error_leaves_its_traceback_in_the_state_dir(tmp_path, monkeypatch, capsys):
    from engine.commands import status

    policy = write_policy(tmp_path)

    def broken(args):
        raise RuntimeError("a bug on purpose")

    monkeypatch.setattr(status, "main", broken)
    for _ in range(12):
        assert cli.main(["--policy", str(policy), "status"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 12
    crash = tmp_path / "state" / "crash"
    files = sorted(crash.iterdir())
    assert len(files) == cli.CRASH_KEEP
    assert f"the traceback is in {files[-1]}" in err[-1]
    assert "RuntimeError: a bug on purpose" in files[-1].read_text()
    assert files[-1].stat().st_mode & 0o777 == 0o600


def test_a_crash_with_an_unusable_state_dir_goes_to_the_temp_dir(tmp_path, monkeypatch, capsys):
    from engine.commands import status

    policy = write_policy(tmp_path)
    (tmp_path / "state").write_text("not a directory")
    monkeypatch.setattr(status, "main", lambda args: 1 / 0)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert cli.main(["--policy", str(policy), "status"]) == 1
    [saved] = list((tmp_path / "tmp").iterdir())
    assert f"the traceback is in {saved}" in capsys.readouterr().err
