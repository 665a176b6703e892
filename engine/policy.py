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
`work_dir` <state_dir>/work/<job>; a step's `retries` and `on_error` come from the
`default` its kind's fragment gives the option (notify.json: on_error continue), else from
common.json's (retries 0, on_error abort).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.durations import parse_duration
from engine.errors import PolicyError
from engine.paths import StatePaths
from engine.references import reference_problems
from engine.schemacheck import SCHEMA_BASE, Finding, Schemas, load_schemas, schema_problems
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
        # Never quote the value: a file that is not a policy (--policy /etc/shadow) must not
        # have its content echoed into an error message or a log.
        kind = "a list" if isinstance(source.data, list) else "a single value"
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
        else StatePaths(state).metrics_default,
        auto_engage=monitor_raw.get("auto_engage", True),
    )
    jobs: dict[str, JobSpec] = {}
    for name, job in (raw.get("jobs") or {}).items():
        jobs[name] = JobSpec(
            name=name,
            steps=_steps(source, ("jobs", name, "steps"), job["steps"], paths),
            work_dir=_resolve(base, job["work_dir"]) if "work_dir" in job
            else StatePaths(state).job_work_dir(name),
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


def _option(options: dict[str, Any], kind: str, name: str, schemas: Schemas,
            fallback: Any) -> Any:
    """A common step option as written, else its default from the kind's fragment or
    common.json (the schema is where defaults live), else `fallback`."""
    if name in options:
        return options[name]
    default = schemas.option_default(kind, name)
    return fallback if default is None else default


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
                retries=_option(options, kind, "retries", paths.schemas, 0),
                on_error=_option(options, kind, "on_error", paths.schemas, "abort"),
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
