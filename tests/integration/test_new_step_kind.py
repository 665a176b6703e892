"""The recipe of HACKING.md ("A new step kind"), followed for a throwaway kind.

`flag` writes one line into the file its `target:` names. Its four files are made here,
in a temporary directory, exactly as the recipe says: the module, the registry line (in
a launcher, since the real actions/registry.py must not change), the schema fragment
(next to a copy of the shipped ones, found through FAILOVER_ENGINE_SCHEMA_DIR) and this
test. Nothing else is edited: not policy.schema.json, not engine/render.py. Then
`validate`, `dry-run engage`, `engage --now` (a real run) and `install --dry-run` go
through the command line in a subprocess, and the unit's ReadWritePaths names the
directory of `target`, which the fragment's `x-writes` declares. The fragment also says
where the kind runs (`x-runs-on: actor`: it writes this host's files): without it the
schemas do not load, and with it a quorum policy naming two actors refuses the step.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from engine.schemacheck import SCHEMA_BASE, SCHEMA_DIR
from tests.support import REPO, free_port

MODULE = '''\
"""flag: write one line into a file (a throwaway kind made by the recipe test)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.errors import StepError
from engine.fsutil import atomic_write


class Flag:
    kind: ClassVar[str] = "flag"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.target = str(params["target"])
        self.text = str(params["text"])

    def _now(self, ctx: Context) -> str | None:
        path = ctx.path(self.target)
        return path.read_text(encoding="utf-8") if path.exists() else None

    def plan(self, ctx: Context) -> Plan:
        path, now = ctx.path(self.target), self._now(ctx)
        if not path.parent.is_dir():
            return Plan(f"flag {path}", problem=f"directory {path.parent} does not exist")
        return Plan(f"flag {path}: {now!r} -> {self.text!r}", before=now, after=self.text,
                    done=now == self.text + "\\n", output=str(path))

    def apply(self, ctx: Context) -> Outcome:
        path, now = ctx.path(self.target), self._now(ctx)
        if now == self.text + "\\n":
            return Outcome(f"flag {path} already says {self.text}", changed=False,
                           output=str(path))
        if not path.parent.is_dir():
            raise StepError(f"flag: directory {path.parent} does not exist")
        atomic_write(path, (self.text + "\\n").encode(), mode=0o644)
        return Outcome(f"flag {path} says {self.text}", before=now, after=self.text,
                       output=str(path))
'''

FRAGMENT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_BASE + "steps/flag.json",
    "title": "flag",
    "x-runs-on": "actor",
    "description": "Write one line into a file. Example: {target: /run/flags/engaged, text: on}.",
    "type": "object",
    "$ref": "common.json#/$defs/options",
    "properties": {
        "target": {"type": "string", "minLength": 1, "x-path": True, "x-writes": "file",
                   "description": "The file written (replaced atomically)."},
        "text": {"type": "string", "minLength": 1, "description": "The line it holds."},
    },
    "required": ["target", "text"],
    "unevaluatedProperties": False,
}

# The registry line, as it would be in actions/registry.py.
LAUNCHER = '''\
import sys

from actions import registry

registry.STEP_KINDS["flag"] = "flag_step:Flag"

from engine.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
'''


def make_kind(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The throwaway kind's files; (launcher, environment for the subprocess)."""
    code = tmp_path / "plugin"
    code.mkdir()
    (code / "flag_step.py").write_text(MODULE)
    (code / "launch.py").write_text(LAUNCHER)
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, schemas)
    (schemas / "steps" / "flag.json").write_text(json.dumps(FRAGMENT, indent=2))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code), str(REPO)]),
               FAILOVER_ENGINE_SCHEMA_DIR=str(schemas))
    return code / "launch.py", env


def write_policy(tmp_path: Path) -> Path:
    (tmp_path / "flags").mkdir()
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: recipe
        state_dir: state
        probes:
          production: {{tcp: {{host: 127.0.0.1, port: {free_port()}, timeout: 1s}}}}
        monitor: {{target: production, interval: 10m, failures_to_engage: 3}}
        engage:
          - flag: {{target: flags/engaged, text: "on"}}
        restore:
          - flag: {{target: flags/engaged, text: "off"}}
        """))
    return path


def test_a_kind_made_by_the_recipe_validates_plans_runs_and_gets_write_access(
        tmp_path: Path) -> None:
    launcher, env = make_kind(tmp_path)
    policy = write_policy(tmp_path)
    flag = tmp_path / "flags" / "engaged"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(launcher), "--policy", str(policy), *args],
                              capture_output=True, text=True, timeout=120, env=env,
                              cwd=tmp_path)

    validate = cli("validate")
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith(f"OK: {policy}")

    plan = cli("dry-run", "engage")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"flag {flag}: None -> 'on'" in plan.stdout
    assert not flag.exists()  # a dry-run changes nothing

    engage = cli("engage", "--now")
    assert engage.returncode == 0, engage.stdout + engage.stderr
    assert flag.read_text() == "on\n"
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["state"] == "engaged"
    restore = cli("restore")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert flag.read_text() == "off\n"

    install = cli("install", "--root", str(tmp_path / "root"), "--dry-run")
    assert install.returncode == 0, install.stdout + install.stderr
    # The template's defaults, then the instance's drop-in with the policy's paths.
    _template, line = [line for line in install.stdout.splitlines()
                       if line.lstrip("+ ").startswith("ReadWritePaths=")]
    writable = line.lstrip("+ ").removeprefix("ReadWritePaths=").split()
    assert writable == [str(tmp_path / "state"), f"-{tmp_path / 'flags'}"]
    assert not (tmp_path / "root").exists()  # --dry-run wrote nothing

    # Where it runs: `actor`, so two actors under a quorum cannot both run it.
    quorum = policy.read_text().replace("engage:\n", textwrap.dedent("""\
        quorum:
          endpoints: [http://127.0.0.1:9]
          name: standby
          observers: [standby, obs1]
          actors: [standby, obs1]
          engage_when: {down: 2}
        engage:
        """))
    two = tmp_path / "two-actors.yaml"
    two.write_text(quorum)
    refused = subprocess.run([sys.executable, str(launcher), "--policy", str(two), "validate"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2
    assert "engage step 1 (flag) acts on this host's files or services" in refused.stderr
    # Without its x-runs-on the fragment is refused, one line naming the file.
    fragment = tmp_path / "schemas" / "steps" / "flag.json"
    fragment.write_text(json.dumps({k: v for k, v in FRAGMENT.items() if k != "x-runs-on"}))
    undeclared = cli("validate")
    assert undeclared.returncode == 2
    assert undeclared.stderr.startswith(f'{fragment}: "x-runs-on" is missing; declare "actor"')

    # The same kind without its fragment is refused by name, so the fragment is what
    # made it valid (and without the registry line the CLI does not know it either).
    (tmp_path / "schemas" / "steps" / "flag.json").unlink()
    missing = cli("validate")
    assert missing.returncode == 2
    assert "flag.json is missing (an incomplete install)" in missing.stderr
    bare = subprocess.run([sys.executable, str(REPO / "bin" / "failover-engine"), "--policy",
                           str(policy), "validate"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert bare.returncode == 2
    assert "unknown step kind 'flag'" in bare.stderr
