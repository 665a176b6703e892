"""Reference checks: names a policy uses must be defined in it.

The monitor's target and guards, and probe steps (`x-probe-refs`), name probes; secret
references (the properties each fragment lists under `x-secret-refs`) name entries of
`secrets`; step labels are unique within a phase; a window's failures fit in its cycles;
notify needs the notify block; with a `quorum:` block, steps that act on this host's
files run on one actor only (engine/runs_on.py).
"""
from __future__ import annotations

from typing import Any

from engine.schemacheck import Finding, Schemas, as_mapping, is_int, iter_steps, join_names
from engine.yamlsource import Source, dotted


def _secret_ref_paths(schema: Any, prefix: tuple[str, ...] = (), depth: int = 0,
                      keyword: str = "x-secret-refs") -> list[str]:
    """Dotted paths of the properties listed in `x-secret-refs` (or `keyword`: the probe
    step's `x-probe-refs`), wherever they sit under `properties` (notify-config.json lists
    `credentials` on its `email.smtp` object)."""
    if not isinstance(schema, dict) or depth > 10:
        return []
    paths = [".".join((*prefix, ref)) for ref in schema.get(keyword) or []
             if isinstance(ref, str)]
    for name, sub in (schema.get("properties") or {}).items():
        paths.extend(_secret_ref_paths(sub, (*prefix, name), depth + 1, keyword))
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

    probes = as_mapping(data.get("probes"))
    monitor = as_mapping(data.get("monitor"))
    raw_guards = monitor.get("guards")
    guards: list[Any] = raw_guards if isinstance(raw_guards, list) else []
    defined = join_names(probes) or "none"
    named: list[tuple[tuple[Any, ...], Any]] = [(("monitor", "target"), monitor.get("target"))]
    named += [(("monitor", "guards", i), g) for i, g in enumerate(guards)]
    for path, name in named:
        if not isinstance(name, str):
            continue  # absent or of the wrong type: the schema check reports it
        if name not in probes:
            add(path, f"probe {name!r} is not defined (defined probes: {defined}; "
                      "add it under `probes:`)")
        elif path[1] == "guards" and name == monitor.get("target"):
            add(path, f"probe {name!r} is the target; a guard must be a different probe")
    window = as_mapping(monitor.get("window"))
    failures, cycles = window.get("failures"), window.get("cycles")
    if isinstance(failures, int) and isinstance(cycles, int) and is_int(failures) \
            and is_int(cycles) and failures > cycles:
        add(("monitor", "window", "failures"),
            f"{failures} failures can never happen in {cycles} cycles "
            "(failures must be at most cycles)")

    secrets = as_mapping(data.get("secrets"))
    known = join_names(secrets) if secrets else "none; add it under `secrets:`"

    def check_secrets(at: tuple[Any, ...], options: Any, fragment: dict[str, Any]) -> None:
        for inner, name in _secret_refs(options, _secret_ref_paths(fragment)):
            if name not in secrets:
                add((*at, *inner), f"secret {name!r} is not defined (defined secrets: {known})")

    labels: dict[tuple[Any, ...], dict[str, str]] = {}
    for at, kind, options in iter_steps(data):
        fragment = schemas.fragment(f"steps/{kind}.json")
        check_secrets((*at, kind), options, fragment)
        # A step that runs a probe (x-probe-refs in its fragment) must name a defined one.
        for inner, name in _secret_refs(options, _secret_ref_paths(fragment,
                                                                   keyword="x-probe-refs")):
            if name not in probes:
                add((*at, kind, *inner), f"probe {name!r} is not defined (defined probes: "
                                         f"{defined}; add it under `probes:`)")
        label = options.get("label")
        if isinstance(label, str) and label:
            seen = labels.setdefault(at[:-1], {})
            if label in seen:
                add((*at, kind, "label"), f"label {label!r} is already used by {seen[label]} "
                                         "(labels name steps in logs and the journal)")
            else:
                seen[label] = dotted(at)
    for name, probe in probes.items():
        for kind, options in as_mapping(probe).items():
            check_secrets(("probes", name, kind), options, schemas.fragment(f"probes/{kind}.json"))
    if isinstance(data.get("quorum"), dict):
        check_secrets(("quorum",), data["quorum"], schemas.fragment("quorum.json"))
        from engine.quorum import quorum_reference_problems

        for path, message in quorum_reference_problems(data["quorum"],
                                                        monitor.get("interval")):
            add(("quorum", *path), message)
        from engine.runs_on import runs_on_problems

        # Steps acting on this host's files cannot run on whichever actor holds the key.
        for path, message in runs_on_problems(data, schemas):
            add(path, message)
    if isinstance(data.get("notify"), dict):
        check_secrets(("notify",), data["notify"], schemas.fragment("notify-config.json"))
    elif "notify" not in data:
        for name, job in as_mapping(data.get("jobs")).items():
            if as_mapping(job).get("notify_on_failure") is True:
                add(("jobs", name, "notify_on_failure"),
                    "needs the top-level `notify:` block to know where to send mail")
        for at, kind, _options in iter_steps(data):
            if kind == "notify":
                add((*at, kind), "a notify step needs the top-level `notify:` block "
                                 "(the mail relay and the recipients)")
    return findings
