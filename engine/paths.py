"""Every path inside a policy's state directory, in one place.

Nothing else builds a path under `state_dir` by hand: the engine, the commands, the
jobs and the actions (which may import this small module) ask `StatePaths`. HACKING.md
("Files in state_dir") says who writes each file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StatePaths:
    """The layout of one state directory (`StatePaths(policy.state_dir)`)."""

    state_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir))

    @property
    def state_file(self) -> Path:
        """`state.json`: the EngineState record (engine/state.py), replaced atomically."""
        return self.state_dir / "state.json"

    @property
    def engine_lock(self) -> Path:
        """`engine.lock`: the flock one engine per policy holds (StateStore.hold)."""
        return self.state_dir / "engine.lock"

    @property
    def audit_log(self) -> Path:
        """`audit.jsonl`: one JSON line per applied change (the runner)."""
        return self.state_dir / "audit.jsonl"

    @property
    def paused(self) -> Path:
        """`paused`: the maintenance switch; while it exists the engine stays paused."""
        return self.state_dir / "paused"

    @property
    def requests_dir(self) -> Path:
        """`requests/`: CLI commands leave requests here for a running monitor."""
        return self.state_dir / "requests"

    def request_file(self, request_id: str) -> Path:
        """`requests/<id>.request.json`: one CLI request (engine/monitor_requests.py)."""
        return self.requests_dir / f"{request_id}.request.json"

    def reply_file(self, request_id: str) -> Path:
        """`requests/<id>.reply.json`: the monitor's answer to that request."""
        return self.requests_dir / f"{request_id}.reply.json"

    @property
    def spool_dir(self) -> Path:
        """`spool/`: mail that could not be sent yet (`*.eml`)."""
        return self.state_dir / "spool"

    @property
    def outbox_dir(self) -> Path:
        """`outbox/`: events waiting for a channel (`<id>.<channel>.json`; engine/outbox.py),
        and `outbox/sent/`, a marker per event and channel already delivered."""
        return self.state_dir / "outbox"

    @property
    def events_log(self) -> Path:
        """`events.jsonl`: every event the engine emitted, one JSON line each (the timeline)."""
        return self.state_dir / "events.jsonl"

    @property
    def readiness(self) -> Path:
        """`readiness.json`: the monitor's last readiness checks (engine/readiness.py)."""
        return self.state_dir / "readiness.json"

    @property
    def quorum_snapshot(self) -> Path:
        """`quorum.json`: the monitor's last view of the quorum store (store reachable, the
        count, the leader key, the shared state; engine/quorum_shared.py), for `status` and
        the metrics; rewritten every cycle, only with a `quorum:` block."""
        return self.state_dir / "quorum.json"

    @property
    def parked_dir(self) -> Path:
        """`parked/`: cron files `disable_cron` moved aside (unless the step sets park_dir)."""
        return self.state_dir / "parked"

    @property
    def metrics_default(self) -> Path:
        """`metrics.prom`: the metrics file when the policy sets no `monitor.metrics_file`."""
        return self.state_dir / "metrics.prom"

    @property
    def crash_dir(self) -> Path:
        """`crash/`: tracebacks of internal errors (never secrets)."""
        return self.state_dir / "crash"

    @property
    def jobs_dir(self) -> Path:
        """`jobs/`: each job's record and lock."""
        return self.state_dir / "jobs"

    def job_record(self, name: str) -> Path:
        """`jobs/<name>.json`: the job's last run, last success, data age (engine/jobs.py)."""
        return self.jobs_dir / f"{name}.json"

    def job_lock(self, name: str) -> Path:
        """`jobs/<name>.lock`: flock so two runs of a job never overlap."""
        return self.jobs_dir / f"{name}.lock"

    @property
    def standby_lock(self) -> Path:
        """`jobs/standby.lock`: flock ordering engage and an import's swap (engine/standby.py)."""
        return self.jobs_dir / "standby.lock"

    @property
    def swap_dir(self) -> Path:
        """`swap/`: journals of MariaDB swaps in progress or left half-done (import_mariadb)."""
        return self.state_dir / "swap"

    def swap_journal(self, database: str) -> Path:
        """`swap/<database>.json`: one swap's journal; present = live not known to be whole."""
        return self.swap_dir / f"{database}.json"

    @property
    def engine_entries(self) -> tuple[Path, ...]:
        """The engine's own entries at the top of the state directory, which must never be
        symbolic links (engine.fsutil.state_dir_problem). Not `work/` nor the metrics file:
        an operator may link those to a bigger disk or a collector's directory."""
        return (self.state_file, self.engine_lock, self.audit_log, self.paused,
                self.jobs_dir, self.requests_dir, self.spool_dir, self.parked_dir,
                self.crash_dir, self.outbox_dir, self.events_log, self.readiness,
                self.quorum_snapshot)

    def job_work_dir(self, name: str) -> Path:
        """`work/<name>/`: a job's work directory when the policy sets no `work_dir`."""
        return self.state_dir / "work" / name


def paused_flag(state_dir: str | Path) -> Path:
    """The maintenance switch file of `state_dir` (StatePaths(state_dir).paused)."""
    return StatePaths(Path(state_dir)).paused
