"""The schema's own keywords, checked by the same code the engine runs.

JSON Schema cannot say "a finite duration of at most 366 days", "a cron line Debian's cron
accepts" or "a path the kernel can open", so the fragments say it with these keywords and
`extend_validator()` teaches the jsonschema validator to check them:

- `"x-duration": {"positive": true}`: a duration `engine.durations.parse_duration` accepts
  (finite, 0 or more, at most 366 days; more than 0 with `positive`);
- `"x-cron": true`: a job schedule `engine.schedule.schedule_problem` accepts;
- `"x-path": true`: besides marking a path to resolve (engine/policy.py), the value is a
  usable path: no NUL, at most `MAX_PATH` bytes, no component over 255 bytes.

Whatever passes these checks is what the engine can later use without an internal error.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_PATH = 1024  # leaves room under PATH_MAX (4096) for what the engine appends
MAX_NAME = 255  # NAME_MAX: one path component


def path_problem(value: str) -> str | None:
    """Why `value` cannot be a path the engine opens, or None."""
    if "\0" in value:
        return "a path cannot contain a NUL character"
    size = len(value.encode("utf-8", "surrogateescape"))
    if size > MAX_PATH:
        return f"path is {size} bytes long; at most {MAX_PATH}"
    for part in value.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME:
            return f"a path component is longer than {MAX_NAME} bytes ({part[:20]!r}…)"
    return None


def _x_duration(validator: Any, options: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    from engine.durations import parse_duration

    if not isinstance(instance, str | int | float):  # booleans included: parse refuses them
        yield ValidationError(f"{_short(instance)} is not a duration (use e.g. 30s, 10m, 7h)")
        return
    positive = bool(options.get("positive")) if isinstance(options, dict) else False
    try:
        parse_duration(instance, positive=positive)
    except ValueError as exc:
        yield ValidationError(str(exc))


def _x_cron(validator: Any, enabled: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    from engine.schedule import schedule_problem

    if enabled and isinstance(instance, str):
        problem = schedule_problem(instance)
        if problem:
            yield ValidationError(problem)


def _x_path(validator: Any, enabled: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if enabled and isinstance(instance, str):
        problem = path_problem(instance)
        if problem:
            yield ValidationError(problem)


KEYWORDS = {"x-duration": _x_duration, "x-cron": _x_cron, "x-path": _x_path}


def extend_validator(cls: Any) -> Any:
    """`cls` (a jsonschema validator class) that also checks the keywords above."""
    import attrs
    from jsonschema import validators

    extended = validators.extend(cls, KEYWORDS)

    # jsonschema picks the validator class again from each fragment's "$schema" when a
    # $ref enters it, which would drop these keywords inside every fragment: keep ours.
    def evolve(self: Any, **changes: Any) -> Any:
        changes.setdefault("schema", self.schema)
        for item in attrs.fields(type(self)):
            if item.init and item.alias not in changes:
                changes[item.alias] = getattr(self, item.name)
        return type(self)(**changes)

    extended.evolve = evolve
    return extended


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
