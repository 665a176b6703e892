"""The schema files themselves, their registry, secret references and the example policies."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from actions.registry import PROBE_KINDS, STEP_KINDS
from engine.errors import PolicyError
from engine.policy import build_policy, load_policy
from engine.references import reference_problems
from engine.schemacheck import (
    SCHEMA_BASE,
    SCHEMA_DIR,
    fragment_kinds,
    internal_id,
    load_schemas,
    schema_problems,
    stale_main_schema,
)
from engine.schemacheck import main as schemacheck_main
from engine.yamlsource import read_yaml
from tests.support import REPO

SCHEMA_FILES = sorted(SCHEMA_DIR.rglob("*.json"))
EXAMPLES = sorted((REPO / "policies").rglob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: str(p.relative_to(SCHEMA_DIR)))
def test_schema_file_is_a_2020_12_schema_with_its_id(path: Path) -> None:
    schema = load(path)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # No $id: editors and check-jsonschema resolve the relative $refs next to the file;
    # the engine gives it the id SCHEMA_BASE + the path.
    assert "$id" not in schema
    relative = path.relative_to(SCHEMA_DIR).as_posix()
    assert internal_id(relative) == SCHEMA_BASE + relative
    assert internal_id(relative, path.name) == internal_id(relative, SCHEMA_BASE + relative)
    with pytest.raises(PolicyError, match="leave it out"):
        internal_id(relative, "https://elsewhere.example/x.json")
    Draft202012Validator.check_schema(schema)


def _described(sub: Any, base: str) -> bool:
    """A property is documented by its own description or by the one of what it $refs."""
    if not isinstance(sub, dict):
        return True
    if sub.get("description"):
        return True
    target = load_schemas().pointer(base, sub["$ref"]) if "$ref" in sub else None
    return bool(target and isinstance(target[1], dict) and target[1].get("description"))


def _undocumented(node: Any, where: str, base: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if not _described(sub, base):
                found.append(f"{where}.{name}")
        for key, value in node.items():
            found.extend(_undocumented(value, f"{where}/{key}", base))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_undocumented(value, f"{where}[{index}]", base))
    return found


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: str(p.relative_to(SCHEMA_DIR)))
def test_every_property_has_a_description(path: Path) -> None:
    schema = load(path)
    base = SCHEMA_BASE + path.relative_to(SCHEMA_DIR).as_posix()
    assert _undocumented(schema, path.name, base) == []


def test_every_ref_resolves_to_a_schema_file() -> None:
    schemas = load_schemas()
    assert sorted(schemas.missing) == []


def test_step_and_probe_kinds_match_the_registry() -> None:
    schemas = load_schemas()
    assert sorted(schemas.kinds("step")) == sorted(STEP_KINDS)
    assert sorted(schemas.kinds("probe")) == sorted(PROBE_KINDS)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: str(p.relative_to(SCHEMA_DIR)))
def test_secret_refs_name_string_properties(path: Path) -> None:
    def check(node: Any) -> None:
        if isinstance(node, dict):
            for ref in node.get("x-secret-refs") or []:
                head = ref.split(".")[0]
                assert head in (node.get("properties") or {}), f"{path.name}: {ref}"
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for value in node:
                check(value)

    check(load(path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_policies_validate(path: Path) -> None:
    policy = load_policy(path)
    assert policy.engage and policy.restore


BASE = """\
version: 1
name: refs
state_dir: state
secrets:
  tsig: keys/tsig.key
probes:
  production: {tcp: {host: 127.0.0.1, port: 443}}
monitor: {target: production, interval: 10m, failures_to_engage: 3}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return [p.removeprefix(f"{path}:") for p in caught.value.problems]


def test_undefined_secret_in_a_step_is_named_at_its_line(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        engage:
          - nsupdate:
              server: 127.0.0.1
              zone: example.org.
              name: www.example.org.
              set: standby.example.org.
              key: tsig-typo
        restore:
          - nsupdate: {server: 127.0.0.1, zone: example.org., name: www.example.org.,
                       set: production.example.org., key: tsig}
        """)
    assert problems(tmp_path, text) == [
        "15:12: engage[0].nsupdate.key: secret 'tsig-typo' is not defined "
        "(defined secrets: tsig)"
    ]


def test_undefined_secret_in_notify_credentials(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        notify:
          email:
            smtp: {host: 127.0.0.1, port: 2525, credentials: smtp}
            from: failover@standby
            to: [admins@example.org]
        engage:
          - notify: {message: engaged}
        restore:
          - lock: {state: absent}
        """)
    (line,) = problems(tmp_path, text)
    assert line == ("11:54: notify.email.smtp.credentials: secret 'smtp' is not defined "
                    "(defined secrets: tsig)")


def test_notify_step_needs_the_notify_block_and_defaults_to_continue(tmp_path: Path) -> None:
    steps = "engage:\n  - notify: {message: engaged}\nrestore:\n  - lock: {state: absent}\n"
    (line,) = problems(tmp_path, BASE + steps)
    assert line.startswith("10:13: engage[0].notify: a notify step needs the top-level `notify:`")
    notify = ("notify: {email: {smtp: {host: 127.0.0.1}, from: a@b.c, to: [x@y.z]}}\n")
    path = tmp_path / "ok.yaml"
    path.write_text(BASE + notify + steps)
    policy = load_policy(path)
    assert policy.engage[0].on_error == "continue"
    assert policy.restore[0].on_error == "abort"
    assert policy.notify == {"email": {"smtp": {"host": "127.0.0.1"}, "from": "a@b.c",
                                       "to": ["x@y.z"]}}


def copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, target)
    return target


def test_registry_never_fetches_an_unknown_ref(tmp_path: Path) -> None:
    schema_dir = copy_schemas(tmp_path)
    lock = schema_dir / "steps" / "lock.json"
    schema = load(lock)
    schema["properties"]["state"] = {"$ref": "https://example.org/remote.json",
                                     "description": "remote"}
    lock.write_text(json.dumps(schema))
    schemas = load_schemas(schema_dir)
    assert "https://example.org/remote.json" in schemas.missing
    source = read_yaml(REPO / "tests" / "fixtures" / "policies" / "valid.yaml")
    assert schema_problems(source, schemas) == []  # validated offline, nothing fetched


def test_a_ref_into_a_missing_anchor_is_one_finding(tmp_path: Path) -> None:
    schema_dir = copy_schemas(tmp_path)
    lock = schema_dir / "steps" / "lock.json"
    schema = load(lock)
    schema["properties"]["state"] = {"$ref": "common.json#/$defs/nope", "description": "x"}
    lock.write_text(json.dumps(schema))
    source = read_yaml(REPO / "tests" / "fixtures" / "policies" / "valid.yaml")
    (finding,) = schema_problems(source, load_schemas(schema_dir))
    assert finding.where == "(schema)"
    assert "does not resolve" in finding.message


def test_a_missing_fragment_is_reported_where_the_kind_is_used(tmp_path: Path) -> None:
    schema_dir = copy_schemas(tmp_path)
    (schema_dir / "steps" / "lock.json").unlink()
    source = read_yaml(REPO / "tests" / "fixtures" / "policies" / "valid.yaml")
    findings = schema_problems(source, load_schemas(schema_dir))
    assert [(f.line, f.where) for f in findings] == [(16, "engage[0].lock"),
                                                     (18, "restore[0].lock")]
    assert "lock.json is missing (an incomplete install)" in findings[0].message


def test_broken_schema_json_is_one_line(tmp_path: Path) -> None:
    schema_dir = copy_schemas(tmp_path)
    (schema_dir / "steps" / "lock.json").write_text('{"$id": ')
    with pytest.raises(PolicyError) as caught:
        load_schemas(schema_dir)
    (line,) = caught.value.problems
    assert line.startswith(f"{schema_dir / 'steps' / 'lock.json'}:1:9: schema is not valid JSON")


def test_secret_refs_in_any_fragment_are_checked(tmp_path: Path) -> None:
    # The mechanism, independent of which real fragments declare x-secret-refs today.
    schema_dir = copy_schemas(tmp_path)
    symlink = schema_dir / "steps" / "symlink.json"
    schema = load(symlink)
    schema["x-secret-refs"] = ["target"]
    symlink.write_text(json.dumps(schema))
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "engage:\n  - symlink: {link: /tmp/l, target: tsig}\n"
                    "restore:\n  - symlink: {link: /tmp/l, target: other}\n")
    source = read_yaml(path)
    findings = reference_problems(source, load_schemas(schema_dir))
    assert [(f.line, f.where, f.message) for f in findings] == [
        (12, "restore[0].symlink.target",
         "secret 'other' is not defined (defined secrets: tsig)")
    ]


def test_properties_marked_x_path_are_resolved_against_the_policy_dir(tmp_path: Path) -> None:
    schema_dir = copy_schemas(tmp_path)
    for relative, pointer in (("probes/http.json", ("properties", "client_cert")),
                              ("notify-config.json", ("properties", "email", "properties",
                                                      "smtp", "properties", "ca_file")),
                              ("steps/lock.json", ("properties", "file"))):
        schema = load(schema_dir / relative)
        node = schema
        for part in pointer:
            node = node[part]
        node["x-path"] = True
        if relative == "probes/http.json":  # and make sure one property is not marked
            schema["properties"]["ca_file"].pop("x-path", None)
        (schema_dir / relative).write_text(json.dumps(schema))
    policy_dir = tmp_path / "etc"
    policy_dir.mkdir()
    path = policy_dir / "p.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: paths
        state_dir: state
        notify: {email: {smtp: {host: 127.0.0.1, ca_file: pki/relay.pem}, from: a@b.c,
                         to: [x@y.z]}}
        probes:
          production: {http: {url: "https://127.0.0.1/", client_cert: pki/c.pem,
                              ca_file: pki/ca.pem}}
        monitor: {target: production, interval: 10m, failures_to_engage: 3}
        engage:
          - lock: {state: present, file: run/engage.lock}
        restore:
          - lock: {state: absent, file: /run/engage.lock}
        """))
    policy = build_policy(read_yaml(path), schemas=load_schemas(schema_dir))
    params = policy.probes["production"].params
    assert params["client_cert"] == str(policy_dir / "pki" / "c.pem")
    assert params["ca_file"] == "pki/ca.pem"  # not marked: kept as written
    assert policy.notify["email"]["smtp"]["ca_file"] == str(policy_dir / "pki" / "relay.pem")
    assert policy.engage[0].params["file"] == str(policy_dir / "run" / "engage.lock")
    assert policy.restore[0].params["file"] == "/run/engage.lock"
    assert policy.raw["engage"][0]["lock"]["file"] == "run/engage.lock"  # raw stays as written


# --- kinds assembled from the registry; fragments own defaults -----------------------------


def test_committed_main_schema_lists_the_registry_kinds() -> None:
    """policy.schema.json (for editors) carries the kinds the loader assembles."""
    stale = stale_main_schema(SCHEMA_DIR)
    assert stale is None, (f"{stale[0]} is stale: run "
                           "`.venv/bin/python -m engine.schemacheck --write`")


def test_every_fragment_is_a_registered_kind_and_back() -> None:
    schemas = load_schemas()
    assert sorted(fragment_kinds(schemas.by_id, "steps")) == sorted(STEP_KINDS)
    assert sorted(fragment_kinds(schemas.by_id, "probes")) == sorted(PROBE_KINDS)


def test_a_registered_kind_with_a_fragment_validates_without_editing_the_main_schema(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from actions import registry

    schema_dir = copy_schemas(tmp_path)
    (schema_dir / "steps" / "touch.json").write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_BASE + "steps/touch.json", "title": "touch", "x-runs-on": "actor",
        "description": "Create a file.", "type": "object",
        "$ref": "common.json#/$defs/options",
        "properties": {"path": {"type": "string", "description": "The file.",
                                "x-path": True, "x-writes": "file"},
                       "on_error": {"default": "continue", "description": "Never stop."}},
        "required": ["path"], "unevaluatedProperties": False}))
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "engage:\n  - touch: {path: flags/on}\nrestore:\n"
                    "  - touch: {path: flags/off, on_error: abort}\n")
    source = read_yaml(path)
    findings = schema_problems(source, load_schemas(schema_dir))
    assert [f.where for f in findings] == ["engage[0].touch", "restore[0].touch"]
    assert findings[0].message.startswith("unknown step kind 'touch' (known: notify,")
    monkeypatch.setitem(registry.STEP_KINDS, "touch", "tests.nowhere:Touch")
    schemas = load_schemas(schema_dir)
    assert schema_problems(source, schemas) == []
    assert schemas.writes("steps/touch.json") == {"path": "file"}
    monkeypatch.setenv("FAILOVER_ENGINE_SCHEMA_DIR", str(schema_dir))
    policy = load_policy(path)
    assert policy.engage[0].params == {"path": str(tmp_path / "flags" / "on")}
    assert [s.on_error for s in (*policy.engage, *policy.restore)] == ["continue", "abort"]


def test_a_stale_committed_schema_is_found_and_rewritten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from actions import registry

    schema_dir = copy_schemas(tmp_path)
    monkeypatch.setenv("FAILOVER_ENGINE_SCHEMA_DIR", str(schema_dir))
    monkeypatch.setitem(registry.STEP_KINDS, "touch", "tests.nowhere:Touch")
    assert schemacheck_main([]) == 1
    assert "stale list of step or probe kinds" in capsys.readouterr().err
    assert schemacheck_main(["--write"]) == 0
    main = load(schema_dir / "policy.schema.json")
    assert main["$defs"]["step"]["propertyNames"]["enum"][-1] == "touch"
    assert main["$defs"]["step"]["properties"]["touch"] == {"$ref": "steps/touch.json"}
    assert main["$defs"]["step"]["properties"]["lock"]["description"]  # kept
    assert schemacheck_main([]) == 0
