"""Where steps run (`x-runs-on` in each step fragment) and validate's quorum rule."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from actions.registry import STEP_KINDS
from engine import cli
from engine.errors import PolicyError
from engine.schemacheck import SCHEMA_DIR, load_schemas
from engine.schemacheck import main as schemacheck_main

# The decision for each kind, read from its action: "actor" acts on this host's files or
# services, "anywhere" on something remote. A new kind must be added here on purpose.
EXPECTED = {
    "archive": "actor", "check_dump_age": "actor", "command": "actor",
    "disable_cron": "actor", "dump_mariadb": "actor", "enable_cron": "actor",
    "fetch": "actor", "import_mariadb": "actor", "import_oracle": "actor", "lock": "actor",
    "symlink": "actor", "unzip": "actor",
    "notify": "anywhere", "nsupdate": "anywhere", "probe": "anywhere", "wait_dns": "anywhere",
}


def test_every_registered_step_kind_declares_where_it_runs() -> None:
    schemas = load_schemas()
    assert {kind: schemas.runs_on(kind) for kind in STEP_KINDS} == EXPECTED


def copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, target)
    return target


@pytest.mark.parametrize(("planted", "said"), [
    (None, '"x-runs-on" is missing'),
    ("everywhere", '"x-runs-on" is "everywhere"'),
    (["actor"], '"x-runs-on" is ["actor"]'),
])
def test_a_fragment_without_a_valid_x_runs_on_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], planted: object, said: str) -> None:
    schema_dir = copy_schemas(tmp_path)
    lock = schema_dir / "steps" / "lock.json"
    fragment = json.loads(lock.read_text())
    fragment.pop("x-runs-on")
    if planted is not None:
        fragment["x-runs-on"] = planted
    lock.write_text(json.dumps(fragment))
    with pytest.raises(PolicyError) as caught:
        load_schemas(schema_dir)
    (line,) = caught.value.problems
    assert line.startswith(f"{lock}: {said}; declare \"actor\"")
    assert "HACKING.md" in line
    # The recipe's check (`python -m engine.schemacheck`) fails on it too.
    monkeypatch.setenv("FAILOVER_ENGINE_SCHEMA_DIR", str(schema_dir))
    assert schemacheck_main([]) == 1
    assert capsys.readouterr().err.splitlines() == [line]


QUORUM = """\
quorum:
  endpoints: [http://127.0.0.1:9]
  name: {name}
  observers: [standby, obs1, obs2]
  actors: {actors}
  engage_when: {{down: 2}}
"""


def write_policy(tmp_path: Path, *, actors: str = "[standby]", name: str = "standby",
                 engage: str = "- lock: {state: present}",
                 restore: str = "- lock: {state: absent}", quorum: bool = True,
                 jobs: str = "") -> Path:
    path = tmp_path / "policy.yaml"
    block = QUORUM.format(name=name, actors=actors) if quorum else ""
    path.write_text(textwrap.dedent("""\
        version: 1
        name: where
        state_dir: state
        probes:
          production: {tcp: {host: 127.0.0.1, port: 9, timeout: 1s}}
        monitor: {target: production, interval: 10s, failures_to_engage: 3}
        """) + block + f"engage:\n  {engage}\nrestore:\n  {restore}\n" + jobs)
    return path


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["--policy", str(path), "validate"])
    out, err = capsys.readouterr()
    return code, out, err


def test_several_actors_refuse_each_step_acting_on_local_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(tmp_path, actors="[standby, obs1]",
                        engage="- probe: {name: production}\n  - lock: {state: present}\n"
                               "  - command: {argv: [systemctl, restart, httpd]}",
                        restore="- lock: {state: absent}")
    code, out, err = validate(path, capsys)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["engage[1].lock", "engage[2].command",
                                                      "restore[0].lock"]
    assert lines[0].startswith(f"{path}:15:11: engage[1].lock: engage step 2 (lock) acts on "
                               "this host's files or services (x-runs-on: actor)")
    assert "engage step 3 (command)" in lines[1]
    assert "restore step 1 (lock)" in lines[2]
    for line in lines:
        assert "whichever of the 2 actors (standby, obs1) holds the leader key" in line
        assert "keep one actor in quorum.actors (the standby" in line
        assert "nsupdate" in line  # names the kinds that may run anywhere
    # The probe step (x-runs-on: anywhere) is not named.
    assert "probe" not in " ".join(line.split(": ")[1] for line in lines)


def test_one_actor_passes_and_several_pass_with_steps_that_run_anywhere(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(tmp_path, actors="[standby]")
    assert validate(path, capsys)[::2] == (0, "")
    path = write_policy(tmp_path, actors="[standby, obs1, obs2]",
                        engage="- probe: {name: production}",
                        restore="- probe: {name: production}")
    assert validate(path, capsys)[::2] == (0, "")


def test_jobs_are_not_checked_they_run_where_cron_runs_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = textwrap.dedent("""\
        jobs:
          import:
            schedule: "0 * * * *"
            steps:
              - lock: {state: present, file: state/job.lock}
        """)
    path = write_policy(tmp_path, actors="[standby, obs1]", engage="- probe: {name: production}",
                        restore="- probe: {name: production}", jobs=jobs)
    code, _out, err = validate(path, capsys)
    assert (code, err) == (0, "")


def test_an_observer_that_is_not_the_actor_is_warned_its_steps_never_run_there(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(tmp_path, actors="[standby]", name="obs1",
                        engage="- probe: {name: production}\n  - lock: {state: present}")
    code, out, err = validate(path, capsys)
    assert code == 0
    assert out.startswith(f"OK: {path}")
    assert err.splitlines() == [
        f"warning: {path}: quorum.name 'obs1' is not one of quorum.actors (standby): this "
        "observer only votes, so engage step 2 (lock), restore step 1 (lock) never run "
        "here; they run on standby"]
    # Only steps that run anywhere: nothing to warn about.
    path = write_policy(tmp_path, actors="[standby]", name="obs1",
                        engage="- probe: {name: production}",
                        restore="- probe: {name: production}")
    assert validate(path, capsys) == (0, f"OK: {path}: policy 'where' (1 engage steps, "
                                         "1 restore steps, 0 jobs)\n", "")


def test_without_a_quorum_block_nothing_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(tmp_path, quorum=False)
    assert validate(path, capsys)[::2] == (0, "")


def test_an_nsupdate_without_expect_under_a_quorum_is_warned(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    update = ("- nsupdate: {{server: 127.0.0.1, zone: example.test, name: www.example.test., "
              "type: CNAME, set: standby.example.test.{expect}, key: tsig}}")
    secrets = "secrets:\n  tsig: tsig.key\n"
    path = write_policy(tmp_path, engage=update.format(expect=""), jobs=secrets,
                        restore=update.format(expect=", expect: standby.example.test."))
    code, _out, err = validate(path, capsys)
    assert code == 0
    assert err.splitlines() == [
        f"warning: {path}: engage step 1 (nsupdate) has no `expect`: its update carries no "
        "prerequisite, so a late update from an actor that lost the leader key would still "
        "be applied; set expect: to the value the record holds before this step"]
    # With `expect` everywhere, or without a quorum block: nothing to say.
    path = write_policy(tmp_path, engage=update.format(expect=", expect: prod.example.test."),
                        jobs=secrets, restore=update.format(expect=""), quorum=False)
    assert validate(path, capsys)[::2] == (0, "")
