"""The policy model: dataclasses built from a validated YAML policy.

`load_policy(path)` reads the YAML safely (engine/yamlsource.py), validates it against
schemas/policy.schema.json and the fragments it refers to (JSON Schema 2020-12, every
error collected), checks references (probe, secret and label names) and returns a
`Policy`. Any problem
raises `PolicyError` listing every finding, sorted by line, each as
``FILE:LINE:COL: dotted.key.path: message``.

Relative paths: `state_dir`, the files in `secrets`, `monitor.metrics_file` and each job's
`status_log`, `pause_file` and `work_dir` are resolved relative to the directory of the
policy file, so a policy and its files can move together::

    state_dir: state            # → <dir of the policy>/state
    secrets: {tsig: keys/tsig.key}

Paths inside step, probe and notify options stay strings; those whose schema property
says `"x-path": true` are made absolute against the policy's directory too, the others
are kept as written (the actions read them).
The `state_dir` argument (the CLI's --state-dir) overrides the policy's; a relative
override is taken relative to the current directory, as any command-line path is.
Defaults: `monitor.hold_down` 1h, `monitor.metrics_file` <state_dir>/metrics.prom, a job's
`work_dir` <state_dir>/work/<job>, a step's `on_error` "continue" for notify and "abort"
for every other kind.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin

from engine.durations import parse_duration
from engine.errors import PolicyError
from engine.yamlsource import Source, dotted, read_yaml

# Options every step accepts (schemas/steps/common.json#/$defs/options); the rest are the kind's.
COMMON_STEP_OPTIONS = ("timeout", "retries", "on_error", "label")


@dataclass(frozen=True)
class Step:
    """One step of engage, restore or a job. `params` holds the kind's own options only."""

    kind: str
    params: dict[str, Any]
    timeout: float | None = None
    retries: int = 0
    on_error: str = "abort"
    label: str = ""
    where: str = ""
    line: int = 0

    @property
    def name(self) -> str:
        """The step's label if it has one, else its kind."""
        return self.label or self.kind


@dataclass(frozen=True)
class ProbeSpec:
    """A named probe: its kind (http, tcp) and options."""

    name: str
    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class MonitorSpec:
    """How production is watched and when an outage counts as prolonged."""

    target: str
    interval: float
    failures_to_engage: int
    guards: list[str] = field(default_factory=list)
    window: tuple[int, int] | None = None
    rise: int = 1
    hold_down: float = 3600.0
    metrics_file: Path | None = None
    auto_engage: bool = True


@dataclass(frozen=True)
class JobSpec:
    """A job run by cron through `failover-engine job NAME`."""

    name: str
    steps: list[Step]
    work_dir: Path
    schedule: str | None = None
    status_log: Path | None = None
    pause_file: Path | None = None
    notify_on_failure: bool = False
    allow_when_engaged: bool = False


@dataclass(frozen=True)
class Policy:
    """A loaded, validated policy."""

    path: Path
    name: str
    state_dir: Path
    monitor: MonitorSpec
    engage: list[Step]
    restore: list[Step]
    secrets: dict[str, Path] = field(default_factory=dict)
    notify: dict[str, Any] | None = None
    probes: dict[str, ProbeSpec] = field(default_factory=dict)
    jobs: dict[str, JobSpec] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def all_steps(self) -> list[Step]:
        """Every step of engage, restore and the jobs, in policy order."""
        steps = [*self.engage, *self.restore]
        for job in self.jobs.values():
            steps.extend(job.steps)
        return steps


def load_policy(path: str | Path, *, state_dir: str | Path | None = None) -> Policy:
    """Read, validate and build the policy at `path`; raise PolicyError listing every problem."""
    path = Path(path)
    source = read_yaml(path)
    if not isinstance(source.data, dict):
        kind = "a list" if isinstance(source.data, list) else f"a single value ({source.data!r})"
        line, col = source.position(())
        raise PolicyError(
            [f"{path}:{line}:{col}: the top level must be a mapping (version: 1, name: …, "
             f"monitor: …), not {kind}"]
        )
    schemas = load_schemas()
    # Reference checks run even when the schema finds problems (they skip values of the
    # wrong shape), so one run reports everything.
    findings = schema_problems(source, schemas) + reference_problems(source, schemas)
    if findings:
        raise PolicyError(format_findings(path, findings))
    return build_policy(source, state_dir=state_dir, schemas=schemas)


def format_findings(path: Path, findings: list[Finding]) -> list[str]:
    """Sorted, de-duplicated `FILE:LINE:COL: key.path: message` lines."""
    lines: list[str] = []
    for finding in sorted(set(findings)):
        line = f"{path}:{finding.line}:{finding.col}: {finding.where}: {finding.message}"
        # One problem, one line, whatever odd characters the policy's keys hold.
        line = line.replace("\r", "\\r").replace("\n", "\\n")
        if line not in lines:
            lines.append(line)
    return lines


def _resolve(base: Path, value: str | Path) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def build_policy(source: Source, *, state_dir: str | Path | None = None,
                 schemas: Schemas | None = None) -> Policy:
    """Dataclasses from a policy that has passed the schema and reference checks."""
    raw: dict[str, Any] = source.data
    path = source.path.resolve()
    base = path.parent
    paths = _PathResolver(base, schemas or load_schemas())
    if state_dir is not None:
        state = Path(state_dir).expanduser().resolve()
    else:
        state = _resolve(base, raw["state_dir"])
    monitor_raw = raw["monitor"]
    window = monitor_raw.get("window")
    monitor = MonitorSpec(
        target=monitor_raw["target"],
        interval=parse_duration(monitor_raw["interval"]),
        failures_to_engage=monitor_raw["failures_to_engage"],
        guards=list(monitor_raw.get("guards", [])),
        window=(window["failures"], window["cycles"]) if window else None,
        rise=monitor_raw.get("rise", 1),
        hold_down=parse_duration(monitor_raw.get("hold_down", "1h")),
        metrics_file=_resolve(base, monitor_raw["metrics_file"])
        if "metrics_file" in monitor_raw
        else state / "metrics.prom",
        auto_engage=monitor_raw.get("auto_engage", True),
    )
    jobs: dict[str, JobSpec] = {}
    for name, job in (raw.get("jobs") or {}).items():
        jobs[name] = JobSpec(
            name=name,
            steps=_steps(source, ("jobs", name, "steps"), job["steps"], paths),
            work_dir=_resolve(base, job["work_dir"]) if "work_dir" in job
            else state / "work" / name,
            schedule=job.get("schedule"),
            status_log=_resolve(base, job["status_log"]) if "status_log" in job else None,
            pause_file=_resolve(base, job["pause_file"]) if "pause_file" in job else None,
            notify_on_failure=job.get("notify_on_failure", False),
            allow_when_engaged=job.get("allow_when_engaged", False),
        )
    probes = {
        name: ProbeSpec(name=name, kind=kind,
                        params=paths.localize(dict(params or {}), f"probes/{kind}.json"))
        for name, probe in (raw.get("probes") or {}).items()
        for kind, params in probe.items()
    }
    return Policy(
        path=path,
        name=raw["name"],
        state_dir=state,
        monitor=monitor,
        engage=_steps(source, ("engage",), raw["engage"], paths),
        restore=_steps(source, ("restore",), raw["restore"], paths),
        secrets={name: _resolve(base, file) for name, file in (raw.get("secrets") or {}).items()},
        notify=paths.localize(raw["notify"], "notify-config.json") if "notify" in raw else None,
        probes=probes,
        jobs=jobs,
        raw=raw,
    )


def _steps(source: Source, at: tuple[str, ...], items: list[dict[str, Any]],
           paths: _PathResolver) -> list[Step]:
    steps: list[Step] = []
    for index, item in enumerate(items):
        ((kind, options),) = item.items()
        options = dict(options or {})
        timeout = options.get("timeout")
        params = {k: v for k, v in options.items() if k not in COMMON_STEP_OPTIONS}
        steps.append(
            Step(
                kind=kind,
                params=paths.localize(params, f"steps/{kind}.json"),
                timeout=parse_duration(timeout) if timeout is not None else None,
                retries=options.get("retries", 0),
                on_error=options.get("on_error", "continue" if kind == "notify" else "abort"),
                label=options.get("label", ""),
                where=dotted((*at, index)),
                line=source.position((*at, index))[0],
            )
        )
    return steps


class _PathResolver:
    """Makes relative paths in options absolute against the policy's directory, for the
    properties whose schema says `"x-path": true` (so `client_cert: pki/client.pem` means
    the same file whatever the engine's working directory is). Unmarked strings stay as
    written, as do paths that are absolute or start with `~` (expanded)."""

    def __init__(self, base: Path, schemas: Schemas) -> None:
        self.base = base
        self.schemas = schemas

    def localize(self, value: Any, relative: str) -> Any:
        document = SCHEMA_BASE + relative
        return self._walk(value, self.schemas.by_id.get(document), document, 0)

    def _walk(self, value: Any, schema: Any, base_id: str, depth: int) -> Any:
        if not isinstance(value, dict) or not isinstance(schema, dict) or depth > 8:
            return value
        properties = self._properties(schema, base_id, depth)
        result = dict(value)
        for key, item in value.items():
            if key not in properties:
                continue
            sub, sub_id = properties[key]
            if sub.get("x-path") is True and isinstance(item, str) and item:
                result[key] = str(_resolve(self.base, item))
            elif isinstance(item, dict):
                result[key] = self._walk(item, sub, sub_id, depth + 1)
        return result

    def _properties(self, schema: dict[str, Any], base_id: str,
                    depth: int) -> dict[str, tuple[dict[str, Any], str]]:
        """name → (its schema with a local $ref followed, that schema's document id)."""
        found: dict[str, tuple[dict[str, Any], str]] = {}
        if isinstance(schema.get("$ref"), str) and depth < 8:
            target = self.schemas.pointer(base_id, schema["$ref"])
            if target and isinstance(target[1], dict):
                found.update(self._properties(target[1], target[0], depth + 1))
        for name, sub in (schema.get("properties") or {}).items():
            if not isinstance(sub, dict):
                continue
            sub_id = base_id
            if isinstance(sub.get("$ref"), str) and "x-path" not in sub:
                target = self.schemas.pointer(base_id, sub["$ref"])
                if target and isinstance(target[1], dict):
                    own = {k: v for k, v in sub.items() if k != "$ref"}
                    sub, sub_id = {**target[1], **own}, target[0]
            found[name] = (sub, sub_id)
        return found


# --- schema validation ------------------------------------------------------------------

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
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


@functools.lru_cache(maxsize=4)
def load_schemas(schema_dir: Path = SCHEMA_DIR) -> Schemas:
    """Load every *.json under `schema_dir` by its `$id` into a registry (no network access)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

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
        schema_id = contents.get("$id") if isinstance(contents, dict) else None
        if not isinstance(schema_id, str):
            raise PolicyError([f"{file}: schema has no \"$id\" (every schema file needs one)"])
        by_id[schema_id] = contents
    if MAIN_SCHEMA not in by_id:
        raise PolicyError([f"{schema_dir}/policy.schema.json: missing (a broken install)"])
    missing = frozenset(_referenced_documents(by_id) - set(by_id))
    # A registry without `retrieve` never fetches anything: an unknown $ref is an error.
    registry = Registry().with_resources(
        [(sid, Resource.from_contents(doc, default_specification=DRAFT202012))
         for sid, doc in by_id.items()]
        + [(sid, DRAFT202012.create_resource({})) for sid in missing]
    )
    validator = Draft202012Validator(by_id[MAIN_SCHEMA], registry=registry)
    return Schemas(by_id=by_id, validator=validator, missing=missing)


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
    from referencing.exceptions import Unresolvable

    findings: list[Finding] = []
    try:
        for error in schemas.validator.iter_errors(source.data):
            for path, on_key, message in _explain(error, schemas):
                line, col = source.position(path, key=on_key)
                findings.append(Finding(line, col, dotted(path), message))
    except Unresolvable as exc:  # a $ref into a document that exists but lacks the anchor
        ref = getattr(exc, "ref", None) or str(exc)
        findings.append(Finding(1, 1, "(schema)", f"cannot validate: schema reference {ref!r} "
                                f"does not resolve in {SCHEMA_DIR} (a broken install)"))
    findings.extend(_missing_fragment_uses(source, schemas))
    return findings


def _missing_fragment_uses(source: Source, schemas: Schemas) -> list[Finding]:
    """A finding for each step, probe or notify block whose schema file does not exist."""
    if not schemas.missing:
        return []
    data = source.data if isinstance(source.data, dict) else {}
    uses: list[tuple[tuple[Any, ...], str, str]] = [
        ((*at, kind), f"steps/{kind}.json", f"step kind {kind!r}")
        for at, kind, _options in _iter_steps(data)
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
                                    f"{SCHEMA_DIR / relative} is missing (an incomplete install)"))
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


def _names(names: Any) -> str:
    """A comma-separated list of names; odd ones (spaces, newlines) are quoted."""
    return ", ".join(dotted((name,)) if isinstance(name, str) else repr(name) for name in names)


def _mapping(value: Any) -> dict[Any, Any]:
    """`value` if it is a mapping, else {} (a wrong shape is the schema check's finding)."""
    return value if isinstance(value, dict) else {}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _iter_steps(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, dict[str, Any]]]:
    """(path of the step, kind, options) for every step of engage, restore and each job."""
    lists: list[tuple[tuple[Any, ...], Any]] = [
        (("engage",), data.get("engage")), (("restore",), data.get("restore"))
    ]
    for name, job in _mapping(data.get("jobs")).items():
        lists.append((("jobs", name, "steps"), _mapping(job).get("steps")))
    found = []
    for at, items in lists:
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and len(item) == 1:
                ((kind, options),) = item.items()
                found.append(((*at, index), kind, options if isinstance(options, dict) else {}))
    return found


def _secret_ref_paths(schema: Any, prefix: tuple[str, ...] = (), depth: int = 0) -> list[str]:
    """Dotted paths of the properties listed in `x-secret-refs`, wherever they sit under
    `properties` (notify-config.json lists `credentials` on its `email.smtp` object)."""
    if not isinstance(schema, dict) or depth > 10:
        return []
    paths = [".".join((*prefix, ref)) for ref in schema.get("x-secret-refs") or []
             if isinstance(ref, str)]
    for name, sub in (schema.get("properties") or {}).items():
        paths.extend(_secret_ref_paths(sub, (*prefix, name), depth + 1))
    return paths


def _secret_refs(options: Any, refs: list[str]) -> list[tuple[tuple[Any, ...], str]]:
    """(path inside `options`, secret name) for each property listed in `x-secret-refs`."""
    found: list[tuple[tuple[Any, ...], str]] = []
    for ref in refs:
        node: Any = options
        parts: tuple[Any, ...] = tuple(ref.split("."))
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str):
            found.append((parts, node))
        elif isinstance(node, list):
            found.extend(
                ((*parts, i), item) for i, item in enumerate(node) if isinstance(item, str)
            )
    return found


def reference_problems(source: Source, schemas: Schemas) -> list[Finding]:
    """Names that must be defined elsewhere in the policy: probes, secrets, unique labels."""
    data: dict[str, Any] = source.data
    findings: list[Finding] = []

    def add(path: tuple[Any, ...], message: str) -> None:
        line, col = source.position(path)
        findings.append(Finding(line, col, dotted(path), message))

    probes = _mapping(data.get("probes"))
    monitor = _mapping(data.get("monitor"))
    guards = monitor.get("guards") if isinstance(monitor.get("guards"), list) else []
    defined = _names(probes) or "none"
    for path, name in [(("monitor", "target"), monitor.get("target"))] + [
        (("monitor", "guards", i), g) for i, g in enumerate(guards)
    ]:
        if not isinstance(name, str):
            continue  # absent or of the wrong type: the schema check reports it
        if name not in probes:
            add(path, f"probe {name!r} is not defined (defined probes: {defined}; "
                      "add it under `probes:`)")
        elif path[1] == "guards" and name == monitor.get("target"):
            add(path, f"probe {name!r} is the target; a guard must be a different probe")
    window = _mapping(monitor.get("window"))
    failures, cycles = window.get("failures"), window.get("cycles")
    if _is_int(failures) and _is_int(cycles) and failures > cycles:
        add(("monitor", "window", "failures"),
            f"{failures} failures can never happen in {cycles} cycles "
            "(failures must be at most cycles)")

    secrets = _mapping(data.get("secrets"))
    known = _names(secrets) if secrets else "none; add it under `secrets:`"

    def check_secrets(at: tuple[Any, ...], options: Any, fragment: dict[str, Any]) -> None:
        for inner, name in _secret_refs(options, _secret_ref_paths(fragment)):
            if name not in secrets:
                add((*at, *inner), f"secret {name!r} is not defined (defined secrets: {known})")

    labels: dict[tuple[Any, ...], dict[str, str]] = {}
    for at, kind, options in _iter_steps(data):
        check_secrets((*at, kind), options, schemas.fragment(f"steps/{kind}.json"))
        label = options.get("label")
        if isinstance(label, str) and label:
            seen = labels.setdefault(at[:-1], {})
            if label in seen:
                add((*at, kind, "label"), f"label {label!r} is already used by {seen[label]} "
                                         "(labels name steps in logs and the journal)")
            else:
                seen[label] = dotted(at)
    for name, probe in probes.items():
        for kind, options in _mapping(probe).items():
            check_secrets(("probes", name, kind), options, schemas.fragment(f"probes/{kind}.json"))
    if isinstance(data.get("notify"), dict):
        check_secrets(("notify",), data["notify"], schemas.fragment("notify-config.json"))
    elif "notify" not in data:
        for name, job in _mapping(data.get("jobs")).items():
            if _mapping(job).get("notify_on_failure") is True:
                add(("jobs", name, "notify_on_failure"),
                    "needs the top-level `notify:` block to know where to send mail")
        for at, kind, _options in _iter_steps(data):
            if kind == "notify":
                add((*at, kind), "a notify step needs the top-level `notify:` block "
                                 "(the mail relay and the recipients)")
    return findings
