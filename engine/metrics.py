"""The metrics file: Prometheus text format (0.0.4) for node_exporter's textfile collector.

The monitor calls `render_metrics()` after every cycle and each job after it runs, then
`write_metrics()`, which replaces the file atomically (node_exporter must never read half
a file). Families, all labelled with `policy`:

    failover_engine_state{state}                      1 for the current state, 0 for the others
    failover_engine_paused                            1 while maintenance mode is on
    failover_engine_consecutive_failures              failed conclusive cycles in a row
    failover_engine_failures_to_engage                the policy's threshold
    failover_engine_probe_success{probe}              1/0, last result of each probe
    failover_engine_probe_latency_seconds{probe}      how long that probe took
    failover_engine_job_last_success_timestamp_seconds{job}
    failover_engine_job_data_age_seconds{job}         now - the job's data_completed time
    failover_engine_job_last_run_ok{job}              1/0, the job's latest run
    failover_engine_engages_total / _restores_total   engages / restores completed (counters
                                                      kept in the state file)
    failover_engine_disarmed                          1 while the failover could not engage
                                                      (engine/arming.py), else 0
    failover_engine_guards_failed_cycles              cycles in a row every guard failed
    failover_engine_client_cert_expiry_timestamp_seconds{probe}  the client cert's notAfter
    failover_engine_client_cert_days_left{probe}      days until it expires (negative after)
    failover_engine_hold_down_active                  1 while automatic engage is held down
    failover_engine_aborted                           1 while the engine waits for `reset`
    failover_engine_last_cycle_timestamp_seconds      end of the last completed cycle
    failover_engine_outbox_depth                      events waiting for a channel (outbox)
    failover_engine_outbox_oldest_age_seconds         how long the oldest has waited (0: none)
    failover_engine_outbox_undeliverable_critical     aborted/disarmed events a channel refused
    failover_engine_readiness{check,reason}           1/0 per readiness check at its last run
                                                      (reason: a fixed set, engine/readiness.py)
    failover_engine_readiness_checked_timestamp_seconds  when the readiness checks last ran

Only with a `quorum:` block (from the monitor's quorum snapshot, engine/quorum_shared.py):

    failover_engine_quorum_store_reachable            1/0, the monitor's last read of etcd
                                                      (left out while no monitor reads it)
    failover_engine_quorum_observers_fresh            observers with a fresh verdict
    failover_engine_quorum_observers_agreeing         fresh observers saying "prolonged"
    failover_engine_quorum_observers_needed           engage_when.down
    failover_engine_quorum_leader_held                1 while this engine holds the leader key
                                                      (left out while the snapshot is stale)
    failover_engine_quorum_leader_token               the leader key's fencing token (any
                                                      holder; left out when nobody holds it)
    failover_engine_quorum_leader_deadline_seconds    seconds before this holder's own
                                                      deadline (only while it holds the key)
    failover_engine_quorum_shared_state_known         1 when the monitor read the shared
                                                      state from the store lately, else 0
    failover_engine_quorum_snapshot_age_seconds       since the monitor's last look at etcd

A sample whose value is unknown (a probe never run, a job never succeeded) is left out
rather than written as 0, so alerts on it do not fire on a fresh install.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.arming import certificate_days_left
from engine.errors import FailoverError
from engine.fsutil import atomic_write
from engine.jobrecords import data_age, read_job_records, record_time
from engine.paths import StatePaths
from engine.policy import Policy
from engine.state import EngineState, StateStore, parse_isotime, utcnow
from engine.states import State

PREFIX = "failover_engine_"


@dataclass
class _Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def escape_label(value: str) -> str:
    """Escape a label value as the text format requires: backslash, quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """Escape HELP text: backslash and newline."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a fraction, NaN/±Inf spelled as Prometheus does."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def probe_result(result: dict[str, Any] | None) -> tuple[bool | None, float | None]:
    """(ok, latency seconds) of one entry of `EngineState.last_probes`, None where unknown.

    The monitor writes `{"ok": bool, "latency": seconds, "at": iso, "detail": str}`;
    `success` and `latency_seconds` are accepted as synonyms.
    """
    if not isinstance(result, dict):
        return None, None
    ok = result.get("ok", result.get("success"))
    latency = result.get("latency", result.get("latency_seconds"))
    ok_value = bool(ok) if isinstance(ok, bool | int) else None
    latency_value = float(latency) if isinstance(latency, int | float) else None
    return ok_value, latency_value


def _timestamp(text: str | None) -> float | None:
    try:
        moment = parse_isotime(text)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() if moment is not None and moment.tzinfo else None


def render_metrics(policy: Policy, state: EngineState, jobs: dict[str, dict[str, Any]],
                   now: datetime, *, paused: bool | None = None) -> str:
    """The whole metrics file for one policy. `paused` defaults to `<state_dir>/paused` existing."""
    if paused is None:
        paused = StatePaths(policy.state_dir).paused.exists()
    base = {"policy": policy.name}
    families: list[_Family] = []

    def family(name: str, kind: str, help_text: str) -> _Family:
        fam = _Family(PREFIX + name, kind, help_text)
        families.append(fam)
        return fam

    def single(name: str, kind: str, help_text: str, value: float) -> None:
        family(name, kind, help_text).samples.append((base, value))

    fam = family("state", "gauge", "1 for the engine's current state, 0 for every other state.")
    current = state.state
    for name in State:
        fam.samples.append(({**base, "state": name}, 1.0 if name == current else 0.0))

    single("paused", "gauge", "1 while maintenance mode (pause) is on.",
           1.0 if paused or current == State.PAUSED else 0.0)
    single("consecutive_failures", "gauge",
           "Consecutive failed conclusive probe cycles of the monitor target.",
           float(state.failures))
    single("failures_to_engage", "gauge",
           "Consecutive failures that engage the failover (from the policy).",
           float(policy.monitor.failures_to_engage))

    success = family("probe_success", "gauge", "1 if the probe's last run succeeded, else 0.")
    latency = family("probe_latency_seconds", "gauge", "Duration of the probe's last run.")
    for probe in sorted(set(policy.probes) | set(state.last_probes)):
        ok, seconds = probe_result(state.last_probes.get(probe))
        labels = {**base, "probe": probe}
        if ok is not None:
            success.samples.append((labels, 1.0 if ok else 0.0))
        if seconds is not None:
            latency.samples.append((labels, seconds))

    last_success = family("job_last_success_timestamp_seconds", "gauge",
                          "Unix time of the job's last successful run.")
    ages = family("job_data_age_seconds", "gauge",
                  "Age of the data the job last completed (now - data_completed).")
    last_ok = family("job_last_run_ok", "gauge", "1 if the job's latest run succeeded, else 0.")
    for job in sorted(set(policy.jobs) | set(jobs)):
        record = jobs.get(job) or {}
        labels = {**base, "job": job}
        moment = record_time(record, "last_success")
        if moment is not None and moment.tzinfo is not None:
            last_success.samples.append((labels, moment.timestamp()))
        age = data_age(record, now)
        if age is not None:
            ages.samples.append((labels, age))
        if isinstance(record.get("ok"), bool):
            last_ok.samples.append((labels, 1.0 if record["ok"] else 0.0))

    single("engages_total", "counter",
           "Engages completed (the failover reached engaged) since the state file was created.",
           float(state.counts.get("engages", 0)))
    single("restores_total", "counter",
           "Restores completed (production re-armed) since the state file was created.",
           float(state.counts.get("restores", 0)))
    single("disarmed", "gauge", "1 while the failover could not engage: every guard failing, "
           "or the target's probe cannot run (see status).", 1.0 if state.disarmed else 0.0)
    single("guards_failed_cycles", "gauge", "Monitor cycles in a row in which every guard failed.",
           float(state.guards_failed))
    expiry = family("client_cert_expiry_timestamp_seconds", "gauge",
                    "Unix time the probe's client certificate expires (notAfter).")
    days_left = family("client_cert_days_left", "gauge",
                       "Days until the probe's client certificate expires (negative: expired).")
    for probe, result in sorted(state.last_probes.items()):
        days = certificate_days_left(result, now) if isinstance(result, dict) else None
        if days is None:
            continue
        labels = {**base, "probe": probe}
        expiry.samples.append((labels, now.timestamp() + days * 86400.0))
        days_left.samples.append((labels, round(days, 3)))
    until = _timestamp(state.hold_down_until)
    single("hold_down_active", "gauge",
           "1 while automatic engage is blocked after a restore (monitor.hold_down).",
           1.0 if until is not None and until > now.timestamp() else 0.0)
    single("aborted", "gauge", "1 while an engage or restore aborted and waits for `reset`.",
           1.0 if current == State.ABORTED else 0.0)

    cycle = family("last_cycle_timestamp_seconds", "gauge",
                   "Unix time the monitor last completed a probe cycle.")
    last_cycle = _timestamp(state.last_cycle)
    if last_cycle is not None:
        cycle.samples.append((base, last_cycle))
    # The event outbox (engine/outbox.py): what waits for a channel, and for how long.
    from engine.outbox import Outbox

    outbox = Outbox(policy.state_dir).stats(now)
    single("outbox_depth", "gauge", "Events waiting in the outbox for a channel.",
           float(outbox.depth))
    single("outbox_oldest_age_seconds", "gauge",
           "Seconds the oldest event in the outbox has waited (0 when it is empty).",
           float(outbox.oldest_age_seconds or 0.0))
    single("outbox_undeliverable_critical", "gauge",
           "Aborted or disarmed events a channel has failed to take (check engine: CRITICAL).",
           float(len(outbox.waiting_critical)))
    _readiness(policy, family)
    _quorum(policy, family, now)

    return "".join(_render_family(f) for f in families)


def _quorum(policy: Policy, family: Any, now: datetime) -> None:
    """The quorum families (see the module docstring); nothing without a quorum block.
    What no monitor has read lately is left out, except `shared_state_known` (then 0)."""
    from engine.quorum_shared import current_view

    view = current_view(policy, StatePaths(policy.state_dir).quorum_snapshot, now)
    if view is None:
        return
    base = {"policy": policy.name}

    def single(name: str, help_text: str, value: float | None) -> None:
        fam = family("quorum_" + name, "gauge", help_text)
        if value is not None:
            fam.samples.append((base, float(value)))

    fresh = None if view["stale"] else view.get("fresh")
    store = view.get("store") or {}
    reachable = store.get("reachable")
    leader = view.get("leader") or {}
    single("store_reachable", "1 when the monitor's last read of the quorum store (etcd) "
           "succeeded, 0 when it failed.", None if reachable is None else float(reachable))
    single("observers_fresh", "Observers whose verdict is fresh in the quorum store.",
           len(fresh) if isinstance(fresh, list) and reachable else None)
    single("observers_agreeing", "Fresh observers that say the outage is prolonged.",
           view.get("agreeing") if reachable else None)
    single("observers_needed", "Fresh observers that must agree (quorum.engage_when.down).",
           view.get("needed") if isinstance(view.get("needed"), int) else None)
    single("leader_held", "1 while this engine holds the quorum's leader key (left out "
           "while no monitor cycle has looked lately, e.g. during a long engage run).",
           None if view["stale"] else 1.0 if leader.get("held") else 0.0)
    token = leader.get("token")
    single("leader_token", "The leader key's fencing token (its create revision), whoever "
           "holds it.", token if reachable and isinstance(token, int) else None)
    left = leader.get("deadline_left")
    single("leader_deadline_seconds", "Seconds before this holder's own deadline (last "
           "renewal sent + lease TTL - margin): it stops acting then.",
           left if leader.get("held") and isinstance(left, int | float) else None)
    single("shared_state_known", "1 when the monitor read the shared state from the quorum "
           "store lately, else 0 (status says why).",
           1.0 if (view.get("shared") or {}).get("known") else 0.0)
    single("snapshot_age_seconds", "Seconds since the monitor last looked at the quorum store.",
           view.get("age_seconds"))


def _readiness(policy: Policy, family: Any) -> None:
    """`readiness{check, reason}` 1/0 per check of the monitor's last readiness run, and
    when it ran (engine/readiness.py); nothing when there is no readiness block or run."""
    from engine.readiness import load_record, readiness_config

    if readiness_config(policy) is None:
        return
    try:
        record = load_record(policy.state_dir)
    except (OSError, ValueError, FailoverError):
        return  # damaged or unreadable: status and check readiness say so; no guessed 0/1
    if record is None:
        return
    base = {"policy": policy.name}
    ready = family("readiness", "gauge", "1 when the readiness check passed at the last run, "
                   "else 0; `reason` is one of a fixed set (engine/readiness.py REASONS).")
    for name, check in sorted(record.checks.items()):
        ready.samples.append(({**base, "check": name, "reason": check.reason},
                              1.0 if check.ok else 0.0))
    when = _timestamp(record.checked_at) if record.checked_at else None
    if when is not None:
        family("readiness_checked_timestamp_seconds", "gauge",
               "Unix time the readiness checks last ran.").samples.append((base, when))


def _render_family(fam: _Family) -> str:
    lines = [f"# HELP {fam.name} {escape_help(fam.help)}", f"# TYPE {fam.name} {fam.kind}"]
    for labels, value in fam.samples:
        label_text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        lines.append(f"{fam.name}{{{label_text}}} {format_value(value)}")
    return "\n".join(lines) + "\n"


def write_metrics(path: str | Path, text: str) -> None:
    """Replace the metrics file atomically, world-readable (node_exporter runs as its own user).

    Not fsynced: it is rewritten after every cycle, and a collector needs the atomic
    rename, not durability (measured: cycle p50 0.87–0.94×, see BENCHMARKS.md)."""
    atomic_write(path, text, mode=0o644, durable=False)


def metrics_path(policy: Policy) -> Path:
    """`monitor.metrics_file`, else the state directory's default (StatePaths)."""
    return Path(policy.monitor.metrics_file or StatePaths(policy.state_dir).metrics_default)


def refresh_metrics(policy: Policy, state: EngineState | None = None,
                    now: datetime | None = None) -> Path:
    """Re-render the metrics file from the state file and the job records; return its path.

    For a job process (which must not take the engine lock): it reads `state.json` as it
    is, so the file it writes agrees with the monitor's. Raises OSError/FailoverError.
    """
    if state is None:
        state = StateStore(policy.state_dir).load()
    path = metrics_path(policy)
    text = render_metrics(policy, state, read_job_records(policy.state_dir), now or utcnow())
    write_metrics(path, text)
    return path
