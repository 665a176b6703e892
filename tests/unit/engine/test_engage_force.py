"""`engage --now --force` reaches the monitor: the request record carries `force` (only for
engage), and a record without it, or with a non-boolean, is not forced."""
from __future__ import annotations

import json
from pathlib import Path

from engine.monitor_requests import submit, take_pending
from engine.paths import StatePaths


def test_force_travels_in_the_engage_request(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    forced = submit(paths, "engage", "op", force=True)
    plain = submit(paths, "engage", "op")
    restore = submit(paths, "restore", "op", force=True)  # restore has no --force
    record = json.loads(paths.request_file(forced.request_id).read_text())
    assert record["force"] is True
    taken = {r.request_id: r for r in take_pending(paths)}
    assert taken[forced.request_id].force is True
    assert taken[plain.request_id].force is False
    assert taken[restore.request_id].force is False


def test_only_a_true_boolean_forces(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    request = submit(paths, "engage", "op")
    file = paths.request_file(request.request_id)
    record = json.loads(file.read_text())
    record["force"] = "yes"
    file.write_text(json.dumps(record))
    (taken,) = take_pending(paths)
    assert taken.force is False


def _policy(tmp_path: Path):
    import socket

    from engine.policy import MonitorSpec, Policy, ProbeSpec, Step

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probes = {"standby": ProbeSpec("standby", "tcp", {"host": "127.0.0.1", "port": port,
                                                      "timeout": "1s"})}
    return Policy(path=tmp_path / "p.yaml", name="t", state_dir=tmp_path / "state",
                  probes=probes,
                  monitor=MonitorSpec(target="standby", interval=1, failures_to_engage=3),
                  engage=[Step("probe", {"name": "standby"}, where="engage[0]")],
                  restore=[Step("probe", {"name": "standby"}, where="restore[0]")])


def test_a_forced_engage_resumed_after_a_crash_stays_forced(tmp_path: Path) -> None:
    from engine.failover import Engine
    from engine.runner import Runner
    from engine.state import EngineState, StateStore
    from engine.states import State

    policy = _policy(tmp_path)
    store = StateStore(policy.state_dir)
    record = EngineState()
    forced = Runner(policy, store, record)
    forced.force = True
    forced._open_journal("engage")  # the forced engage journalled, then the process died
    assert record.run is not None and record.run["force"] is True
    resumed = Runner(policy, store, record)  # the next start, without --force
    report = resumed.run("engage", policy.engage)
    assert report.ok, report.failed
    assert report.steps[0].summary.startswith("OVERRIDDEN by engage --force: probe standby")
    # A restore after it is never forced, even in the same engine.
    record.state = State.ENGAGED
    record.run = None
    store.save(record)
    engine = Engine(policy, store, send_mail=False)
    engine.runner.force = True
    report = engine.restore()
    assert not report.ok and report.failed is not None
    assert report.failed.summary.startswith("probe standby failed: connection refused")
