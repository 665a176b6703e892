"""The quorum metrics (engine/metrics.py `_quorum`), from the monitor's quorum snapshot:
values as the snapshot says while it is fresh; unknown ones left out when it is stale."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from engine.clock import boot_id
from engine.metrics import render_metrics
from engine.paths import StatePaths
from engine.quorum_shared import write_snapshot
from engine.state import EngineState, isotime, utcnow
from tests.unit.engine.test_metrics import parse, value
from tests.unit.engine.test_render import make_policy

QUORUM = {"endpoints": ["http://127.0.0.1:1"], "name": "obs1", "observers": ["obs1", "obs2"],
          "actors": ["obs1"], "engage_when": {"down": 2}}


def snapshot(policy, *, age: float, reachable: bool = True) -> None:
    policy.state_dir.mkdir(parents=True, exist_ok=True)
    write_snapshot(StatePaths(policy.state_dir).quorum_snapshot, {
        "format": 1, "written": isotime(utcnow() - timedelta(seconds=age)),
        "monotonic": {"written": {"mono": time.monotonic() - age, "boot": boot_id()}},
        "name": "obs1", "actor": True, "timeout": 2.0,
        "store": {"reachable": reachable, "problem": None if reachable else "quorum store "
                  "unreachable: http://127.0.0.1:1: connection refused"},
        "agreeing": 2 if reachable else None, "fresh": ["obs1", "obs2"] if reachable else None,
        "leader": {"held": reachable, "token": 1234 if reachable else None, "holder": "obs1",
                   "deadline_left": 20.0 if reachable else None},
        "shared": {"known": reachable, "problem": None, "state": "engaging", "holder": "obs1",
                   "token": 1234},
        "pause": None}, 0o600)


def families(tmp_path: Path):
    policy = make_policy(tmp_path, raw={"quorum": QUORUM})
    return policy, lambda: parse(render_metrics(policy, EngineState(), {}, utcnow(),
                                                paused=False))


def test_no_quorum_block_no_quorum_families(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    text = render_metrics(policy, EngineState(), {}, utcnow(), paused=False)
    assert "failover_engine_quorum_" not in text


def test_a_fresh_snapshot_gives_every_value(tmp_path: Path) -> None:
    policy, render = families(tmp_path)
    snapshot(policy, age=1.0)
    got = render()
    assert value(got, "quorum_store_reachable") == 1
    assert value(got, "quorum_observers_fresh") == 2
    assert value(got, "quorum_observers_agreeing") == 2
    assert value(got, "quorum_observers_needed") == 2
    assert value(got, "quorum_leader_held") == 1
    assert value(got, "quorum_leader_token") == 1234
    assert 18.0 < value(got, "quorum_leader_deadline_seconds") <= 19.0  # 20 s, 1 s ago
    assert value(got, "quorum_shared_state_known") == 1


def test_store_unreachable_and_stale_snapshots_say_unknown(tmp_path: Path) -> None:
    policy, render = families(tmp_path)
    snapshot(policy, age=0.5, reachable=False)
    got = render()
    assert value(got, "quorum_store_reachable") == 0
    assert value(got, "quorum_shared_state_known") == 0
    assert value(got, "quorum_observers_agreeing") is None  # not known: left out, never 0
    assert value(got, "quorum_leader_token") is None
    assert value(got, "quorum_leader_held") == 0
    # No monitor has looked for longer than 3 intervals: nothing but "not known".
    snapshot(policy, age=3 * 600 + 60)
    got = render()
    assert value(got, "quorum_shared_state_known") == 0
    for name in ("store_reachable", "observers_agreeing", "leader_held", "leader_token",
                 "leader_deadline_seconds"):
        assert value(got, "quorum_" + name) is None, name
    assert value(got, "quorum_snapshot_age_seconds") > 1800
    StatePaths(policy.state_dir).quorum_snapshot.unlink()
    got = render()
    assert value(got, "quorum_shared_state_known") == 0
    assert value(got, "quorum_store_reachable") is None
