"""Editors can validate a policy: every shipped policy names the schema in a
`# yaml-language-server: $schema=` line, and a JSON-Schema-aware YAML checker that knows
nothing of the engine (check-jsonschema, PyPI) follows it, resolves the fragments' `$id`s
and `$ref`s from the files alone, accepts the shipped policies and reports each error
planted in a broken one."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

SHIPPED = sorted([*REPO.glob("policies/*.yaml"), *REPO.glob("policies/examples/*.yaml")])
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def checker() -> str:
    """check-jsonschema beside this interpreter (the test extras) or on PATH."""
    beside = Path(sys.executable).parent / "check-jsonschema"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("check-jsonschema")
    if found:
        return found
    message = "check-jsonschema is not installed (pip install -e '.[test]')"
    if os.environ.get("FAILOVER_REQUIRE_SERVERS") == "1" and not sys.prefix.startswith("/usr"):
        pytest.fail(message)  # the venv's test extras must have it; Debian's python3 lacks it
    pytest.skip(message)


def schema_of(policy: Path) -> Path:
    """The schema the policy's first line names, resolved as an editor does: against the
    policy's own directory."""
    first = policy.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first)
    assert match, f"{policy}: the first line is not a yaml-language-server modeline"
    return (policy.parent / match.group(1)).resolve()


def run(schema: Path, *policies: Path) -> subprocess.CompletedProcess[str]:
    # --no-cache and a fresh HOME: nothing is fetched or remembered between runs.
    # The default (ECMAScript) regex variant, as an editor's yaml-language-server uses: the
    # schema's patterns must mean the same there as in Python (HACKING.md).
    return subprocess.run([checker(), "--no-cache",
                           "--schemafile", str(schema),
                           *map(str, policies)], capture_output=True, text=True,
                          env={**os.environ, "HOME": "/nonexistent"}, timeout=120)


@pytest.mark.parametrize("policy", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_names_the_schema_and_passes(policy):
    schema = schema_of(policy)
    assert schema == (REPO / "schemas/policy.schema.json").resolve()
    result = run(schema, policy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_policy_gets_each_planted_error(tmp_path):
    data = yaml.safe_load((REPO / "policies/gocdb.yaml").read_text())
    data["colour"] = "blue"                              # 1. unknown top-level key
    data["version"] = 7                                  # 2. not the one format version
    data["monitor"]["failures_to_engage"] = "thirty"     # 3. a string for an integer
    del data["restore"]                                  # 4. a required key missing
    step = next(s for s in data["engage"] if "nsupdate" in s)
    step["nsupdate"]["zone_typo"] = "x"                  # 5. unknown key in a step fragment
    broken = tmp_path / "broken.yaml"
    broken.write_text("# yaml-language-server: $schema="
                      f"{REPO / 'schemas/policy.schema.json'}\n" + yaml.safe_dump(data))
    result = run(schema_of(broken), broken)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    for planted in ("colour", "$.version", "thirty", "restore", "zone_typo"):
        assert planted in out, (planted, out)


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def test_every_pattern_ends_the_same_way_in_python_and_in_an_editor():
    """`$(?!\\n)` ends a pattern at the end of the string in Python and in ECMAScript alike; a
    bare `$` lets a trailing newline through in Python, `\\Z` is a literal Z in ECMAScript."""
    import json

    patterns = [p for path in sorted((REPO / "schemas").rglob("*.json"))
                for p in _patterns(json.loads(path.read_text()))]
    assert len(patterns) > 20
    anchored = [p for p in patterns if p.endswith(("$", "\\Z", "$(?!\\n)"))]
    assert len(anchored) > 20
    assert [p for p in anchored if not p.endswith("$(?!\\n)")] == []
    for pattern in anchored:
        assert re.search(pattern, "x\n") is None, pattern  # a trailing newline never passes
