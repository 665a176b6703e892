"""Checking a policy against the JSON Schema, with errors a person can act on.

`load_schemas()` reads schemas/policy.schema.json and every fragment it refers to (by
their `$id`, never from the network); `schema_problems()` collects every jsonschema error
and turns it into a `Finding` (line, column, dotted key path, a message in plain words:
unknown keys with the allowed ones, unknown step kinds, bad durations, wrong types).

The step and probe kinds are assembled at load time: each kind of `actions/registry.py`
gets `{"$ref": "steps/<kind>.json"}` (or `probes/<kind>.json`) in the main schema's
`$defs.step` (`$defs.probe`), so a new kind is its registry line and its fragment. The
committed policy.schema.json carries the same list for editors and other JSON Schema
tools; `python -m engine.schemacheck --write` regenerates it and a test fails when it is
stale. Fragments also declare what the engine must know about a kind besides validation:
`x-path` (a path resolved against the policy's directory), `x-writes` ("file" or "dir":
what the step writes, read by engine/render.py for the unit's writable paths),
`x-secret-refs`, `default` on a common option (notify's `on_error: continue`), and
`x-runs-on` on every step fragment: "actor" (the step acts on this host's files or
services, so under a quorum it must run where the data is) or "anywhere" (it acts on
something remote: DNS, mail, a probe). A registered kind whose fragment lacks it, or says
anything else, is refused when the schemas load (engine/runs_on.py uses it).
"""
from __future__ import annotations

import copy
import functools
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin

from engine import resources
from engine.errors import PolicyError
from engine.yamlsource import Source, dotted

# The shipped schema directory; `load_schemas()` reads resources.schema_dir() at call time,
# which FAILOVER_ENGINE_SCHEMA_DIR may point elsewhere.
SCHEMA_DIR = resources.default_schema_dir()
SCHEMA_BASE = "https://failover-engine.invalid/schemas/"
MAIN_SCHEMA = SCHEMA_BASE + "policy.schema.json"
_DURATION_HINT = "is not a duration (use e.g. 30s, 10m, 7h)"


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at a place in the policy (1-based line and column, dotted key path)."""

    line: int
    col: int
    where: str
    message: str


@dataclass
class Schemas:
    """Every schema file by `$id`, the referencing registry built from them, and a validator."""

    by_id: dict[str, Any]
    validator: Any
    # Documents some $ref names but no file provides (a fragment not written yet, or a
    # broken install). They validate anything; `schema_problems` reports their use instead.
    missing: frozenset[str] = frozenset()
    directory: Path = SCHEMA_DIR

    def fragment(self, relative: str) -> dict[str, Any]:
        """The schema `schemas/<relative>` (e.g. "steps/lock.json"), or {} when absent."""
        found = self.by_id.get(SCHEMA_BASE + relative)
        return found if isinstance(found, dict) else {}

    def pointer(self, base: str, ref: str) -> tuple[str, Any] | None:
        """Resolve `ref` against `base`: (id of the document, the sub-schema) or None."""
        url, fragment = urldefrag(urljoin(base, ref))
        node: Any = self.by_id.get(url)
        for part in [p for p in fragment.split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return (url, node) if node is not None else None

    @property
    def duration(self) -> Any:
        return self.fragment("steps/common.json").get("$defs", {}).get("duration")

    def kinds(self, definition: str) -> list[str]:
        """The kinds the main schema allows for `step` or `probe` (its propertyNames enum)."""
        main = self.by_id.get(MAIN_SCHEMA, {})
        names = main.get("$defs", {}).get(definition, {}).get("propertyNames", {})
        return list(names.get("enum", []))

    def writes(self, relative: str) -> dict[str, str]:
        """Property → "file" or "dir" for each property of a fragment marked `x-writes`.

        "file": the step creates, replaces, moves or removes the file the property names,
        so that file's directory must be writable; "dir": the step writes into the
        directory the property names.
        """
        properties = self.fragment(relative).get("properties") or {}
        return {name: sub["x-writes"] for name, sub in properties.items()
                if isinstance(sub, dict) and sub.get("x-writes") in WRITE_KINDS}

    def runs_on(self, kind: str) -> str | None:
        """Where a step of `kind` may run: "actor" or "anywhere" (its fragment's
        `x-runs-on`); None when the kind has no fragment (reported where it is used)."""
        value = self.fragment(f"steps/{kind}.json").get("x-runs-on")
        return value if value in RUNS_ON else None

    def option_default(self, kind: str, option: str) -> Any:
        """The default of a common step option for `kind`: the kind's fragment's own
        `default` for it (notify: on_error continue), else common.json's, else None."""
        own = (self.fragment(f"steps/{kind}.json").get("properties") or {}).get(option)
        if isinstance(own, dict) and "default" in own:
            return own["default"]
        common = self.fragment("steps/common.json").get("$defs", {}).get("options", {})
        shared = (common.get("properties") or {}).get(option)
        return shared.get("default") if isinstance(shared, dict) else None


WRITE_KINDS = ("file", "dir")
# `x-runs-on` of a step fragment: "actor" acts on this host's files or services (a lock
# file, cron, a local dump, a program run here); "anywhere" acts on something remote.
RUNS_ON = ("actor", "anywhere")
# (main schema definition, fragment folder, registry table) for each kind of thing.
_KIND_TABLES = (("step", "steps", "STEP_KINDS"), ("probe", "probes", "PROBE_KINDS"))


def registered_kinds() -> dict[str, list[str]]:
    """The step and probe kinds of actions/registry.py, in registry order."""
    from actions import registry

    return {definition: list(getattr(registry, table)) for definition, _, table in _KIND_TABLES}


def assemble_main(main: dict[str, Any], kinds: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The main schema with `$defs.step` and `$defs.probe` listing `kinds` (a copy).

    Each kind is allowed by name (`propertyNames.enum`, in the given order) and its
    options are checked by its fragment (`properties.<kind>.$ref`). A kind's entry keeps
    any other keys it has (a short `description` for editors); a new kind needs none.
    """
    assembled = copy.deepcopy(main)
    for definition, folder, _ in _KIND_TABLES:
        node = assembled.setdefault("$defs", {}).setdefault(definition, {})
        names = list(kinds.get(definition, ()))
        before = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        node["propertyNames"] = {"enum": names}
        node["properties"] = {
            name: {"$ref": f"{folder}/{name}.json",
                   **{k: v for k, v in (before.get(name) or {}).items() if k != "$ref"}}
            for name in names
        }
    return assembled


def fragment_kinds(by_id: dict[str, Any], folder: str) -> list[str]:
    """Kinds that have a fragment in `folder` ("steps" or "probes"): the files whose
    `title` is their own name (common.json holds shared definitions, not a kind)."""
    found = []
    for schema_id, document in by_id.items():
        relative = schema_id.removeprefix(SCHEMA_BASE)
        match = re.fullmatch(rf"{folder}/([A-Za-z0-9_]+)\.json", relative)
        if match and isinstance(document, dict) and document.get("title") == match.group(1):
            found.append(match.group(1))
    return sorted(found)


def load_schemas(schema_dir: Path | None = None) -> Schemas:
    """Load every *.json under `schema_dir` (default: resources.schema_dir()) by its `$id`
    into a registry (no network access), with the registry's kinds assembled in."""
    directory = Path(schema_dir) if schema_dir is not None else resources.schema_dir()
    return _load_schemas(directory, _frozen(registered_kinds()))


def _frozen(kinds: dict[str, list[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((definition, tuple(names)) for definition, names in sorted(kinds.items()))


@functools.lru_cache(maxsize=8)
def _load_schemas(schema_dir: Path,
                  kinds: tuple[tuple[str, tuple[str, ...]], ...]) -> Schemas:
    from jsonschema import Draft202012Validator

    by_id: dict[str, Any] = {}
    for file in sorted(schema_dir.rglob("*.json")):
        try:
            contents = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PolicyError(
                [f"{file}:{exc.lineno}:{exc.colno}: schema is not valid JSON: {exc.msg} "
                 "(a broken install or a half-written fragment)"]
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([f"{file}: cannot read schema: {exc}"]) from None
        if not isinstance(contents, dict):
            raise PolicyError([f"{file}: a schema file must hold a JSON object"])
        schema_id = internal_id(file.relative_to(schema_dir).as_posix(), contents.get("$id"))
        # In memory every document carries its absolute internal id, so $refs resolve
        # the same way under every jsonschema release (with or without `referencing`).
        contents["$id"] = schema_id
        by_id[schema_id] = contents
    if MAIN_SCHEMA not in by_id:
        raise PolicyError([f"{schema_dir}/policy.schema.json: missing (a broken install)"])
    by_id[MAIN_SCHEMA] = assemble_main(by_id[MAIN_SCHEMA], dict(kinds))
    undeclared = runs_on_problems(by_id, dict(kinds).get("step", ()), schema_dir)
    if undeclared:
        raise PolicyError(undeclared)
    missing = frozenset(_referenced_documents(by_id) - set(by_id))
    from engine.schemakeywords import extend_validator

    # x-duration, x-cron and x-path are checked by the code the engine runs on them.
    validator = make_validator(extend_validator(Draft202012Validator), MAIN_SCHEMA,
                               by_id, missing)
    return Schemas(by_id=by_id, validator=validator, missing=missing, directory=schema_dir)


def runs_on_problems(by_id: Mapping[str, Any], step_kinds: Iterable[str],
                     schema_dir: Path) -> list[str]:
    """One line for each registered step kind whose fragment does not declare where it
    runs (`"x-runs-on": "actor"` or `"anywhere"`). A kind without a fragment is left to
    `schema_problems`, which names it where a policy uses it."""
    lines = []
    for kind in step_kinds:
        fragment = by_id.get(f"{SCHEMA_BASE}steps/{kind}.json")
        if not isinstance(fragment, dict) or fragment.get("x-runs-on") in RUNS_ON:
            continue
        found = ("is missing" if "x-runs-on" not in fragment
                 else f"is {json.dumps(fragment['x-runs-on'])}")
        lines.append(f"{schema_dir / 'steps' / f'{kind}.json'}: \"x-runs-on\" {found}; "
                     "declare \"actor\" (the step acts on this host's files or services) or "
                     "\"anywhere\" (it acts on something remote: DNS, mail, a probe); see "
                     "HACKING.md, \"A new step kind\"")
    return lines


def internal_id(relative: str, declared: Any = None) -> str:
    """The absolute id of the schema file `relative` (to the schema directory), whose
    `$id` is `declared` (None: it has none).

    The shipped files have no `$id`: an editor or `check-jsonschema` then takes the file's
    own location as its base, so the relative `$ref`s between the files resolve from the
    files alone, without a network (an unresolvable https `$id` made editors report
    nothing). The engine gives each file the id SCHEMA_BASE + its path, under which the
    same relative `$ref`s resolve. A `$id` (an older install's absolute one, or the file's
    own name) is accepted when it names the same file.
    """
    wanted = SCHEMA_BASE + relative
    if declared is None:
        return wanted
    if not isinstance(declared, str) or urljoin(wanted, declared) != wanted:
        raise PolicyError([f"{relative}: \"$id\" is {declared!r}; leave it out (the file's "
                           "location is its id) or make it the file's own name"])
    return wanted


def make_validator(cls: Any, root_id: str, by_id: Mapping[str, Any],
                   missing: Iterable[str] = ()) -> Any:
    """A `cls` validator of the document `root_id` whose `$ref`s resolve only among
    `by_id` (never the network); each of `missing` stands for an empty schema.

    jsonschema ≥ 4.18 resolves through the `referencing` library; older releases (Debian
    12's 4.10) through `RefResolver` with a store, which they have instead.
    """
    try:
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
    except ImportError:
        from jsonschema import RefResolver

        store = {**{sid: {} for sid in missing}, **by_id}
        # handlers={}: no scheme is fetched, so an unknown $ref is an error, not a download.
        resolver = RefResolver(root_id, by_id[root_id], store=store, handlers={})
        return cls(by_id[root_id], resolver=resolver)
    # A registry without `retrieve` never fetches anything: an unknown $ref is an error.
    registry = Registry().with_resources(
        [(sid, Resource.from_contents(doc, default_specification=DRAFT202012))
         for sid, doc in by_id.items()]
        + [(sid, DRAFT202012.create_resource({})) for sid in missing]
    )
    return cls(by_id[root_id], registry=registry)


def unresolvable_errors() -> tuple[type[Exception], ...]:
    """The exceptions a `$ref` that does not resolve raises, in this jsonschema release."""
    try:
        from referencing.exceptions import Unresolvable
    except ImportError:
        from jsonschema.exceptions import RefResolutionError

        return (RefResolutionError,)
    return (Unresolvable,)


def _referenced_documents(by_id: dict[str, Any]) -> set[str]:
    """The document URLs every `$ref` in every schema points at."""
    found: set[str] = set()

    def walk(node: Any, base: str) -> None:
        if isinstance(node, dict):
            base = node.get("$id", base) if isinstance(node.get("$id"), str) else base
            if isinstance(node.get("$ref"), str):
                found.add(urldefrag(urljoin(base, node["$ref"]))[0])
            for value in node.values():
                walk(value, base)
        elif isinstance(node, list):
            for value in node:
                walk(value, base)

    for sid, doc in by_id.items():
        walk(doc, sid)
    return found


def schema_problems(source: Source, schemas: Schemas) -> list[Finding]:
    """Every schema error of the policy, explained in words, at its YAML position."""
    findings: list[Finding] = []
    try:
        for error in schemas.validator.iter_errors(source.data):
            for path, on_key, message in _explain(error, schemas):
                line, col = source.position(path, key=on_key)
                findings.append(Finding(line, col, dotted(path), message))
    except unresolvable_errors() as exc:  # a $ref into a document that lacks the anchor
        ref = getattr(exc, "ref", None) or str(exc)
        findings.append(Finding(1, 1, "(schema)", f"cannot validate: schema reference {ref!r} "
                                f"does not resolve in {schemas.directory} (a broken install)"))
    findings.extend(_missing_fragment_uses(source, schemas))
    return findings


def _missing_fragment_uses(source: Source, schemas: Schemas) -> list[Finding]:
    """A finding for each step, probe or notify block whose schema file does not exist."""
    if not schemas.missing:
        return []
    data = source.data if isinstance(source.data, dict) else {}
    uses: list[tuple[tuple[Any, ...], str, str]] = [
        ((*at, kind), f"steps/{kind}.json", f"step kind {kind!r}")
        for at, kind, _options in iter_steps(data)
    ]
    for name, probe in (data.get("probes") or {}).items():
        for kind in probe if isinstance(probe, dict) else ():
            uses.append((("probes", name, kind), f"probes/{kind}.json", f"probe kind {kind!r}"))
    if "notify" in data:
        uses.append((("notify",), "notify-config.json", "the notify block"))
    findings = []
    for path, relative, what in uses:
        if SCHEMA_BASE + relative in schemas.missing:
            line, col = source.position(path, key=True)
            findings.append(Finding(line, col, dotted(path), f"cannot check {what}: "
                                    f"{schemas.directory / relative} is missing "
                                    "(an incomplete install)"))
    return findings


Explained = tuple[tuple[Any, ...], bool, str]


def _explain(error: Any, schemas: Schemas) -> list[Explained]:
    """Turn one jsonschema error into human lines: (path, point at the key?, message)."""
    from jsonschema.exceptions import best_match

    path = tuple(error.absolute_path)
    keyword = error.validator
    schema_path = list(error.absolute_schema_path)
    if len(schema_path) >= 2 and schema_path[-2] == "propertyNames":
        return [_explain_name(error, path, schemas)]
    closed = keyword in ("additionalProperties", "unevaluatedProperties")
    if closed and error.validator_value is False:
        return _explain_unknown_keys(error, path, schemas)
    thing = _container_kind(path)
    if keyword == "required":
        match = re.match(r"^'(.*)' is a required property$", error.message)
        name = match.group(1) if match else str(error.message)
        hint = _first_sentence((error.schema.get("properties") or {}).get(name))
        return [(path, False, f"missing required key {name!r}" + (f" ({hint})" if hint else ""))]
    if keyword == "maxProperties" and thing:
        kinds = ", ".join(map(str, error.instance))
        count = len(error.instance)
        return [(path, False, f"a {thing} has exactly one kind; this one has {count}: "
                              f"{kinds} (split it into separate {thing}s)")]
    if keyword == "minProperties" and thing:
        known = ", ".join(schemas.kinds(thing))
        return [(path, False, f"empty {thing}: name its kind (known: {known})")]
    if keyword == "anyOf" and error.schema == schemas.duration:
        return [(path, False, f"{error.instance!r} {_DURATION_HINT}")]
    if keyword in ("anyOf", "oneOf") and error.context:
        return _explain(best_match(error.context), schemas)
    if keyword == "type":
        return [(path, False, _wrong_type(error.validator_value, error.instance, thing))]
    if keyword == "const":
        return [(path, False, f"must be {json.dumps(error.validator_value)}, "
                              f"not {_describe(error.instance)}")]
    if keyword == "enum":
        allowed = ", ".join(json.dumps(v) for v in error.validator_value)
        return [(path, False, f"{_short(error.instance)} is not one of: {allowed}")]
    if keyword in ("minLength", "minItems", "minProperties") and error.validator_value == 1:
        return [(path, False, "must not be empty")]
    if keyword == "maxLength":
        return [(path, False, f"{_short(error.instance)} is too long "
                              f"(at most {error.validator_value} characters)")]
    if keyword == "dependentRequired" and isinstance(error.instance, dict):
        lines: list[Explained] = []
        for key, needs in error.validator_value.items():
            missing = [n for n in needs if n not in error.instance]
            if key in error.instance and missing:
                lines.append(((*path, key), True,
                              f"{key!r} needs {', '.join(map(repr, missing))} as well"))
        return lines or [(path, False, str(error.message))]
    if keyword == "pattern":
        hint = _first_sentence(error.schema)
        return [(path, False, f"{_short(error.instance)} does not match {error.validator_value}"
                              + (f" ({hint})" if hint else ""))]
    return [(path, False, " ".join(str(error.message).split())[:300])]


def _container_kind(path: tuple[Any, ...]) -> str | None:
    """'step' when `path` is one step of a step list, 'probe' for one probe, else None."""
    if path and isinstance(path[-1], int):
        parent = path[:-1]
        if parent in (("engage",), ("restore",)) or (
            len(parent) == 3 and parent[0] == "jobs" and parent[2] == "steps"
        ):
            return "step"
    if len(path) == 2 and path[0] == "probes":
        return "probe"
    return None


def _explain_name(error: Any, path: tuple[Any, ...], schemas: Schemas) -> Explained:
    name = error.instance
    at = (*path, name)
    thing = _container_kind(path)
    if error.validator == "enum" and thing:
        known = ", ".join(schemas.kinds(thing))
        return (at, True, f"unknown {thing} kind {name!r} (known: {known})")
    if error.validator == "pattern":
        return (at, True, f"{name!r} is not a valid name here (letters, digits, _ and - only)")
    return (at, True, f"key {name!r}: {' '.join(str(error.message).split())}")


def _explain_unknown_keys(error: Any, path: tuple[Any, ...], schemas: Schemas) -> list[Explained]:
    import difflib

    allowed = sorted(_allowed_keys(error.schema, schemas, error.schema.get("$id", MAIN_SCHEMA)))
    if not isinstance(error.instance, dict):
        return []
    extras = [key for key in error.instance if key not in allowed]
    if not extras and allowed:
        # jsonschema < 4.18 (Debian 12's 4.10) also calls an allowed key "unevaluated" when
        # its value is wrong; that value's own error is reported, so nothing to add here.
        return []
    if not extras:  # allowed keys unknown (an unusual schema): fall back to jsonschema's words
        extras = re.findall(r"'([^']*)'", str(error.message))
    lines: list[Explained] = []
    for key in extras:
        close = difflib.get_close_matches(str(key), allowed, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        listing = f"allowed: {', '.join(allowed)}" if allowed else "no keys are allowed here"
        lines.append(((*path, key), True, f"unknown key {key!r} ({guess}{listing})"))
    return lines


def _allowed_keys(schema: Any, schemas: Schemas, base: str, depth: int = 0) -> set[str]:
    """Property names a schema evaluates: its `properties`, through `$ref` and `allOf`."""
    if not isinstance(schema, dict) or depth > 8:
        return set()
    base = schema.get("$id", base)
    keys = set(schema.get("properties") or {})
    if isinstance(schema.get("$ref"), str):
        target = schemas.pointer(base, schema["$ref"])
        if target:
            keys |= _allowed_keys(target[1], schemas, target[0], depth + 1)
    for sub in schema.get("allOf") or []:
        keys |= _allowed_keys(sub, schemas, base, depth + 1)
    return keys


_TYPE_WORDS = {
    "object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
    "number": "a number", "boolean": "true or false", "null": "empty",
}


def _wrong_type(expected: str | list[str], instance: Any, thing: str | None) -> str:
    wanted = [expected] if isinstance(expected, str) else list(expected)
    words = " or ".join(_TYPE_WORDS.get(t, t) for t in wanted)
    if instance is None and "object" in wanted:
        return f"must be {words}, but it is empty (write {{}} for no options)"
    return f"must be {words}, not {_describe(instance)}"


def _describe(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if hasattr(value, "isoformat"):  # YAML reads 2024-01-01 as a date
        return f"a date ({value.isoformat()}; quote it to make it a string)"
    return f"a {type(value).__name__} ({_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_sentence(schema: Any) -> str:
    if not isinstance(schema, dict) or not isinstance(schema.get("description"), str):
        return ""
    sentence = schema["description"].split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 90 else ""


# --- reference checks --------------------------------------------------------------------


def join_names(names: Any) -> str:
    """A comma-separated list of names; odd ones (spaces, newlines) are quoted."""
    return ", ".join(dotted((name,)) if isinstance(name, str) else repr(name) for name in names)


def as_mapping(value: Any) -> dict[Any, Any]:
    """`value` if it is a mapping, else {} (a wrong shape is the schema check's finding)."""
    return value if isinstance(value, dict) else {}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

def iter_steps(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, dict[str, Any]]]:
    """(path of the step, kind, options) for every step of engage, restore and each job."""
    lists: list[tuple[tuple[Any, ...], Any]] = [
        (("engage",), data.get("engage")), (("restore",), data.get("restore"))
    ]
    for name, job in as_mapping(data.get("jobs")).items():
        lists.append((("jobs", name, "steps"), as_mapping(job).get("steps")))
    found = []
    for at, items in lists:
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and len(item) == 1:
                ((kind, options),) = item.items()
                found.append(((*at, index), kind, options if isinstance(options, dict) else {}))
    return found


# --- the committed main schema ------------------------------------------------------------


def stale_main_schema(schema_dir: Path | None = None) -> tuple[Path, str] | None:
    """(path, the text it should have) when the committed policy.schema.json does not list
    exactly the registry's kinds, else None."""
    directory = Path(schema_dir) if schema_dir is not None else resources.schema_dir()
    path = directory / "policy.schema.json"
    committed = json.loads(path.read_text(encoding="utf-8"))
    wanted = assemble_main(committed, registered_kinds())
    if wanted == committed:
        return None
    return path, json.dumps(wanted, indent=2)


def main(argv: Iterable[str] | None = None) -> int:
    """`python -m engine.schemacheck [--write]`: check (or rewrite) policy.schema.json's
    list of step and probe kinds against actions/registry.py."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        load_schemas()  # a fragment without its x-runs-on (or broken JSON) is refused
    except PolicyError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 1
    stale = stale_main_schema()
    if stale is None:
        print("policy.schema.json lists the registry's step and probe kinds")
        return 0
    path, text = stale
    if args == ["--write"]:
        path.write_text(text, encoding="utf-8")
        print(f"{path}: step and probe kinds rewritten from actions/registry.py")
        return 0
    print(f"{path}: stale list of step or probe kinds; run "
          "`python -m engine.schemacheck --write`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
