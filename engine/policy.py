"""The policy model: dataclasses built from a validated YAML policy.

`load_policy(path)` reads the YAML, validates it against schemas/policy.schema.json,
checks references (probe and secret names) and returns a `Policy`; any problem raises
`PolicyError` listing every finding as `FILE:LINE:COL: dotted.key.path: message`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
