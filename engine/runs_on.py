"""Where steps run under a quorum: `x-runs-on` of each step kind against `quorum.actors`.

Every step fragment declares `"x-runs-on": "actor"` (the step acts on this host's files or
services: a lock file, cron, a local dump, a program run here) or `"anywhere"` (it acts on
something remote: DNS, mail, a probe); engine/schemacheck.py refuses a fragment without
it. With a `quorum:` block, the engage and restore steps run on whichever actor holds the
leader key, so:

- with more than one name in `quorum.actors`, an `actor` step in engage or restore is an
  error (one line per step: the data it acts on exists on one host only);
- with one actor, an observer whose `name` is not that actor never runs those steps: a
  warning from `validate` (it only votes), not an error — the same policy file may be
  shared by every observer.

Jobs are not checked: cron runs them on their own host, never under the leader key.

One more warning belongs here, as it is about acting from a host that may have lost the
lease: an engage or restore `nsupdate` step without `expect` sends its update without a
prerequisite, so a deposed actor's update still in flight would be applied by the DNS
server after the new holder's (issue 14, S8); with `expect` the server refuses it.
"""
from __future__ import annotations

from typing import Any

from engine.schemacheck import Schemas, as_mapping

PHASES = ("engage", "restore")


def _actors(quorum: dict[str, Any]) -> list[str]:
    listed = quorum.get("actors")
    return [a for a in listed if isinstance(a, str)] if isinstance(listed, list) else []


def actor_steps(data: dict[str, Any], schemas: Schemas
                ) -> list[tuple[tuple[Any, ...], str, int, str]]:
    """(YAML path of the step, phase, index, kind) of each engage/restore step whose kind
    runs on an actor only (`x-runs-on: actor`)."""
    found = []
    for phase in PHASES:
        steps = data.get(phase)
        for index, item in enumerate(steps if isinstance(steps, list) else []):
            if not (isinstance(item, dict) and len(item) == 1):
                continue  # the schema check reports a malformed step
            (kind,) = item
            if isinstance(kind, str) and schemas.runs_on(kind) == "actor":
                found.append(((phase, index, kind), phase, index, kind))
    return found


def _label(phase: str, index: int) -> str:
    # As engine.runner.step_label names a step (the runner is not imported at load time).
    return f"{phase} step {index + 1}"


def _anywhere_kinds(schemas: Schemas) -> str:
    return ", ".join(k for k in schemas.kinds("step") if schemas.runs_on(k) == "anywhere")


def runs_on_problems(data: dict[str, Any], schemas: Schemas
                     ) -> list[tuple[tuple[Any, ...], str]]:
    """(path of the step, one line) for each `actor` step of engage or restore when the
    quorum names more than one actor; [] without a quorum block or with one actor."""
    quorum = data.get("quorum")
    if not isinstance(quorum, dict):
        return []
    actors = _actors(quorum)
    if len(actors) < 2:
        return []
    names = ", ".join(actors)
    anywhere = _anywhere_kinds(schemas)
    return [(path, f"{_label(phase, index)} ({kind}) acts on this host's files or services "
                   f"(x-runs-on: actor), but engage and restore steps run on whichever of "
                   f"the {len(actors)} actors ({names}) holds the leader key: keep one actor "
                   "in quorum.actors (the standby, where that data lives), or remove the "
                   f"step (only kinds that run anywhere may act from several: {anywhere})")
            for path, phase, index, kind in actor_steps(data, schemas)]


def runs_on_warnings(data: dict[str, Any], schemas: Schemas) -> list[str]:
    """One line when this observer (`quorum.name`) is not an actor yet the policy has
    `actor` steps in engage or restore: they never run on this host. [] otherwise (also
    when several actors make those steps an error already)."""
    quorum = as_mapping(data.get("quorum"))
    name, actors = quorum.get("name"), _actors(quorum)
    if not isinstance(name, str) or name in actors or len(actors) != 1:
        return []
    steps = actor_steps(data, schemas)
    if not steps:
        return []
    listed = ", ".join(f"{_label(phase, index)} ({kind})" for _, phase, index, kind in steps)
    return [f"quorum.name {name!r} is not one of quorum.actors ({actors[0]}): this observer "
            f"only votes, so {listed} never run here; they run on {actors[0]}"]


def unfenced_update_warnings(data: dict[str, Any]) -> list[str]:
    """With a `quorum:` block, one line per engage/restore `nsupdate` step without
    `expect`: its update carries no prerequisite, so a late one from a deposed actor would
    still be applied. [] without a quorum block."""
    if not isinstance(data.get("quorum"), dict):
        return []
    lines = []
    for phase in PHASES:
        steps = data.get(phase)
        for index, item in enumerate(steps if isinstance(steps, list) else []):
            options = item.get("nsupdate") if isinstance(item, dict) else None
            if isinstance(options, dict) and "expect" not in options:
                lines.append(f"{_label(phase, index)} (nsupdate) has no `expect`: its update "
                             "carries no prerequisite, so a late update from an actor that "
                             "lost the leader key would still be applied; set expect: to the "
                             "value the record holds before this step")
    return lines
