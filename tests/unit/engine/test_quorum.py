"""engine/quorum.py: the block's checks, freshness, agreement and the leader key's deadline
(against a real 3-member etcd, tests/fixtures/etcd.py)."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.failover import Engine
from engine.monitor import Monitor
from engine.paths import StatePaths
from engine.policy import MonitorSpec, Policy, ProbeSpec, Step
from engine.quorum import (
    Quorum,
    QuorumSpec,
    engage_by_operator,
    fenced,
    mirror_engine,
    quorum_reference_problems,
    quorum_spec,
)
from engine.quorum_shared import SharedState, current_view, status_lines
from engine.state import StateStore, utcnow
from engine.states import State
from tests.fixtures.etcd import EtcdCluster
from tests.support import wait_until


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(cluster: EtcdCluster, name: str, *, down: int = 2, ttl: float = 30.0) -> QuorumSpec:
    return QuorumSpec(endpoints=cluster.endpoints, name=name, observers=["a", "b", "c"],
                      actors=["a", "b"], down=down, prefix="/t/", timeout=0.5, lease_ttl=ttl)


def test_spec_from_policy_defaults_and_paths(tmp_path: Path) -> None:
    policy = SimpleNamespace(path=tmp_path / "p.yaml", name="gocdb", raw={"quorum": {
        "endpoints": ["https://e1:2379"], "name": "a", "observers": ["a"], "actors": ["a"],
        "engage_when": {"down": 1}, "ca": "pki/ca.pem", "client_cert": "/etc/fe/c.pem",
        "client_key": "/etc/fe/c.key"}})
    got = quorum_spec(policy)
    assert got is not None
    assert got.prefix == "/failover-engine/gocdb/"
    assert got.lease_ttl == 30.0 and got.timeout == 2.0
    assert got.ca == tmp_path / "pki" / "ca.pem"
    assert got.client_cert == Path("/etc/fe/c.pem")
    assert quorum_spec(SimpleNamespace(path=tmp_path / "p.yaml", name="x", raw={})) is None


def test_reference_problems() -> None:
    assert quorum_reference_problems({"endpoints": ["https://e:1"], "name": "a",
                                      "observers": ["a", "b"], "actors": ["a"],
                                      "engage_when": {"down": 2}}) == []
    problems = dict(quorum_reference_problems({
        "endpoints": ["http://e:1", "https://e:2"], "name": "z", "observers": ["a"],
        "actors": ["a", "q"], "engage_when": {"down": 2}, "user": "u", "client_cert": "c"}))
    assert "not one of quorum.observers" in problems[("name",)]
    assert "'q'" in problems[("actors", 1)]
    assert "can never agree" in problems[("engage_when", "down")]
    assert "mix of http:// and https://" in problems[("endpoints",)]
    assert ("user",) in problems
    # A store call must not make a cycle overrun the monitor's interval.
    slow = dict(quorum_reference_problems({"endpoints": ["https://e:1"], "name": "a",
                                           "observers": ["a"], "actors": ["a"],
                                           "engage_when": {"down": 1}, "timeout": "3s"},
                                          "5s"))
    assert "at most half the interval" in slow[("timeout",)]
    assert quorum_reference_problems({"endpoints": ["https://e:1"], "name": "a",
                                      "observers": ["a"], "actors": ["a"],
                                      "engage_when": {"down": 1}}, "10s") == []


@pytest.mark.integration
def test_agreement_and_freshness_by_the_readers_clock(etcd_cluster: EtcdCluster) -> None:
    clock = Clock()
    a = Quorum(spec(etcd_cluster, "a"), interval=1.0, clock=clock)
    b = Quorum(spec(etcd_cluster, "b"), interval=1.0, clock=clock)
    c = Quorum(spec(etcd_cluster, "c"), interval=1.0, clock=clock)
    assert a.publish("failed", 3, True) is None
    assert c.publish("failed", 1, False) is None
    decision = a.may_engage()
    assert not decision.allowed and decision.reason == "quorum not reached (1/2)"
    # An unknown name does not vote.
    a.client.put("/t/observers/intruder", json.dumps({"prolonged": True}))
    assert a.count().down == 1
    b.publish("failed", 3, True)
    assert a.count().down == 2
    # b goes silent: its key is still there (lease), but by a's clock it has not changed
    # for longer than the verdict TTL, so it no longer counts; a's own does while renewed.
    clock.now += a.verdict_ttl + 1
    a.publish("failed", 4, True)
    count = a.count()
    assert count.fresh == ("a",) and count.line() == "quorum not reached (1/2)"
    b.publish("failed", 4, True)
    decision = a.may_engage()
    assert decision.allowed and decision.token is not None
    assert "quorum reached (2/2); leader key taken" in decision.reason
    # b agrees too, but the key is a's: b does not engage.
    refused = b.may_engage()
    assert not refused.allowed and "leader key held by a" in refused.reason
    # c only votes.
    assert "only votes" in c.may_engage().reason
    a.release()
    assert a.client.get("/t/leader") is None
    assert b.may_engage().allowed
    b.release()
    a.close()
    assert a.client.get("/t/observers/a") is None  # withdrawn at once on shutdown


@pytest.mark.integration
def test_holder_stops_at_its_own_deadline_when_cut_from_the_store(
        etcd_cluster: EtcdCluster) -> None:
    a = Quorum(spec(etcd_cluster, "a", down=1, ttl=3.0), interval=0.2)
    a.publish("failed", 3, True)
    decision = a.may_engage()
    assert decision.allowed
    assert a.holds() == decision.token
    assert not a.halt.is_set()
    etcd_cluster.stop_all()  # the store is gone: no renewal can succeed
    wait_until(a.halt.is_set, 20, "the holder to halt at its deadline")
    assert a.holds() is None and a.holding is None


@pytest.mark.integration
def test_halt_is_set_the_moment_the_deadline_passes_before_the_renewer_sees_it(
        etcd_cluster: EtcdCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # A holder frozen past its deadline may be woken in the runner's thread first: the
    # runner's check before its next step must already say stop. The renewer is kept
    # from running here, so only the deadline itself can set halt.
    monkeypatch.setattr(Quorum, "_start_renewer", lambda self: None)
    clock = Clock()
    a = Quorum(spec(etcd_cluster, "a", down=1, ttl=30.0), interval=1.0, clock=clock)
    a.publish("failed", 3, True)
    assert a.may_engage().allowed and a.holding is not None
    assert not a.halt.is_set()
    clock.now = a.holding.deadline - 0.01
    assert not a.halt.is_set()
    clock.now = a.holding.deadline
    assert a.halt.is_set() and a.holds() is None
    a.release()
    a.close()


@pytest.mark.integration
def test_store_unreachable_is_said(etcd_cluster: EtcdCluster) -> None:
    a = Quorum(spec(etcd_cluster, "a", down=1), interval=0.2)
    etcd_cluster.stop_all()
    problem = a.publish("failed", 3, True)
    assert problem is not None and problem.startswith("quorum store unreachable: ")
    decision = a.may_engage()
    assert not decision.allowed and decision.reason.startswith("quorum store unreachable")


@pytest.mark.integration
def test_a_busy_observer_stops_a_second_engage(etcd_cluster: EtcdCluster) -> None:
    a = Quorum(spec(etcd_cluster, "a"), interval=1.0)
    b = Quorum(spec(etcd_cluster, "b"), interval=1.0)
    c = Quorum(spec(etcd_cluster, "c"), interval=1.0)
    a.publish("failed", 3, True, state="suspect")
    c.publish("failed", 3, True, state="suspect")
    b.publish("failed", 3, False, state="engaged")  # b engaged already (its key expired)
    decision = a.may_engage()
    assert not decision.allowed
    assert decision.reason == "quorum reached (2/2); b is engaged"
    assert a.client.get("/t/leader") is None


# -- the shared state (issue 14, second part) ---------------------------------------------
@pytest.mark.integration
def test_a_deposed_holders_fenced_mirror_is_refused(etcd_cluster: EtcdCluster) -> None:
    a = Quorum(spec(etcd_cluster, "a", down=1), interval=1.0)
    b = Quorum(spec(etcd_cluster, "b", down=1), interval=1.0)
    a.publish("failed", 3, True)
    taken = a.may_engage()
    assert taken.allowed
    assert a.write_shared("engaging", reason="watching → engaging") is True
    seen = b.observe()
    assert seen is not None and seen.shared is not None
    assert (seen.shared.state, seen.shared.holder, seen.shared.token) == (
        "engaging", "a", taken.token)
    # a is deposed behind its back (its lease revoked: what expiry does) and b takes the
    # key (b's may_engage would refuse: the shared state says a is engaging).
    assert a.holding is not None
    b.client.revoke(a.holding.lease)
    assert b.may_engage().reason.endswith(f"shared state: engaging by a (token {taken.token})")
    assert isinstance(b.take_leader(), int)
    assert b.write_shared("engaging") is True
    # a's late write is refused by the store; a stops acting and says so.
    assert a.write_shared("engaged", reason="engaging → engaged") is False
    assert a.halt.is_set() and a.holding is None and a.holds() is None
    stored = b.observe()
    assert stored is not None and stored.shared is not None
    assert (stored.shared.holder, stored.shared.state) == ("b", "engaging")
    # Only the holder writes at all.
    assert a.write_shared("engaged") is None
    b.release()


@pytest.mark.integration
def test_the_shared_state_pause_and_hold_down_stop_another_actor(
        etcd_cluster: EtcdCluster) -> None:
    clock = Clock()
    a = Quorum(spec(etcd_cluster, "a", down=1), interval=1.0, clock=clock)
    b = Quorum(spec(etcd_cluster, "b", down=1), interval=1.0, clock=clock)
    a.publish("failed", 3, True)
    assert a.may_engage().allowed
    token = a.holds()
    a.write_shared("engaged")
    # a dies while engaged: its verdict and its key go, its mirror stays.
    a.close()
    assert a.holding is not None
    a.client.revoke(a.holding.lease)
    b.publish("failed", 3, True)
    refused = b.may_engage()
    assert not refused.allowed
    assert refused.reason == f"quorum reached (1/1); shared state: engaged by a (token {token})"
    # A shared pause stops every actor too.
    a.client.put("/t/shared/pause", json.dumps({"paused": True, "by": "ops", "reason": "tests"}))
    assert "paused through the quorum store by ops (tests)" in b.may_engage().reason
    a.client.delete("/t/shared/pause")
    # a restored and wrote its hold-down (100 s left when written): b counts it down
    # on its own clock from when it saw the write.
    a.client.put("/t/shared/state", SharedState("watching", "a", 7, "a",
                                                 hold_down_left=100.0).to_json())
    assert "hold-down after the restore by a: 100s left" in b.may_engage().reason
    clock.now += 60
    b.publish("failed", 3, True)
    assert "hold-down after the restore by a: 40s left" in b.may_engage().reason
    clock.now += 41
    b.publish("failed", 3, True)
    decision = b.may_engage()
    assert decision.allowed, decision.reason
    # Not a shared state at all: never guessed, b refuses.
    b.release()
    a.client.put("/t/shared/state", "not json")
    assert "holds no shared state this engine can read" in b.may_engage().reason
    snap = b.snapshot()
    assert snap["shared"]["known"] is False and snap["store"]["reachable"] is True


@pytest.mark.integration
def test_snapshot_says_unknown_when_the_store_is_gone(etcd_cluster: EtcdCluster) -> None:
    a = Quorum(spec(etcd_cluster, "a", down=1), interval=0.2)
    a.publish("failed", 3, True)
    assert a.observe() is not None
    snap = a.snapshot()
    assert snap["store"] == {"reachable": True, "problem": None}
    assert snap["agreeing"] == 1 and snap["fresh"] == ["a"]
    assert snap["shared"] == {"known": True, "problem": None}  # nothing written yet
    etcd_cluster.stop_all()
    assert a.publish("failed", 4, True) is not None
    assert a.observe() is None
    snap = a.snapshot()
    assert snap["store"]["reachable"] is False
    assert snap["store"]["problem"].startswith("quorum store unreachable")
    assert snap["shared"]["known"] is False and snap["agreeing"] is None


def quorum_policy(tmp_path: Path, url: str, cluster: EtcdCluster, **quorum: object) -> Policy:
    """One actor `a` that decides alone (down: 1), engaging with one lock step."""
    block = {"endpoints": cluster.endpoints, "name": "a", "observers": ["a", "b"],
             "actors": ["a"], "engage_when": {"down": 1}, "prefix": "/t/", "timeout": "500ms",
             "lease_ttl": "30s", **quorum}
    return Policy(path=tmp_path / "p.yaml", name="q", state_dir=tmp_path / "state",
                  monitor=MonitorSpec(target="production", interval=1.0, failures_to_engage=2),
                  probes={"production": ProbeSpec("production", "http",
                                                  {"url": url, "timeout": "1s"})},
                  engage=[Step("lock", {"state": "present"}, where="engage[0]")],
                  restore=[Step("lock", {"state": "absent"}, where="restore[0]")],
                  raw={"quorum": block})


@pytest.mark.integration
def test_the_monitor_mirrors_transitions_and_shows_them(
        tmp_path: Path, http_server, etcd_cluster: EtcdCluster) -> None:
    policy = quorum_policy(tmp_path, http_server.url("/"), etcd_cluster)
    engine = Engine(policy, StateStore(policy.state_dir), send_mail=False)
    monitor = Monitor(engine)
    monitor.cycle()
    view = current_view(policy, StatePaths(policy.state_dir).quorum_snapshot, utcnow())
    assert view is not None and not view["stale"]
    assert "shared: nothing in the store yet" in "\n".join(status_lines(view))
    http_server.stop()
    monitor.cycle()
    monitor.cycle()  # prolonged: a takes the key and engages; each transition mirrored
    assert engine.record.state == State.ENGAGED
    metrics = (policy.state_dir / "metrics.prom").read_text()
    assert 'failover_engine_quorum_observers_agreeing{policy="q"} 1' in metrics
    assert 'failover_engine_quorum_observers_needed{policy="q"} 1' in metrics
    quorum = monitor.quorum
    assert quorum is not None and quorum.holding is not None
    token = quorum.holding.token
    stored = SharedState.parse(etcd_cluster.client().get("/t/shared/state").value)
    assert stored is not None
    assert (stored.state, stored.holder, stored.token) == ("engaged", "a", token)
    assert stored.reason == "engaging → engaged (engaged)"
    assert stored.run is not None and (stored.run["phase"], stored.run["last_step"],
                                       stored.run["last_step_name"]) == ("engage", 1, "lock")
    monitor.cycle()
    text = "\n".join(status_lines(current_view(
        policy, StatePaths(policy.state_dir).quorum_snapshot, utcnow())))
    assert f"shared: engaged by a (token {token}), changed by a" in text
    assert f"leader key: held by this engine (token {token}, " in text
    metrics = (policy.state_dir / "metrics.prom").read_text()
    assert 'failover_engine_quorum_store_reachable{policy="q"} 1' in metrics
    assert 'failover_engine_quorum_leader_held{policy="q"} 1' in metrics
    assert f'failover_engine_quorum_leader_token{{policy="q"}} {token}' in metrics
    # Engaged, a no longer calls the outage prolonged (nothing left to engage).
    assert 'failover_engine_quorum_observers_agreeing{policy="q"} 0' in metrics
    assert 'failover_engine_quorum_observers_fresh{policy="q"} 1' in metrics
    assert 'failover_engine_quorum_shared_state_known{policy="q"} 1' in metrics
    # Restored: the final armed state goes to the store before the key is given back.
    engine.restore()
    monitor.cycle()
    assert quorum.holding is None and etcd_cluster.client().get("/t/leader") is None
    stored = SharedState.parse(etcd_cluster.client().get("/t/shared/state").value)
    assert stored is not None and stored.state == "watching" and stored.token == token
    assert stored.hold_down_left is not None and stored.hold_down_left > 3000
    # The store gone: status says the shared state is unknown, never the last answer.
    etcd_cluster.stop_all()
    monitor.cycle()
    view = current_view(policy, StatePaths(policy.state_dir).quorum_snapshot, utcnow())
    text = "\n".join(status_lines(view))
    assert "store: UNREACHABLE (quorum store unreachable: " in text
    assert "shared: unknown (quorum store unreachable: " in text
    metrics = (policy.state_dir / "metrics.prom").read_text()
    assert 'failover_engine_quorum_store_reachable{policy="q"} 0' in metrics
    assert 'failover_engine_quorum_shared_state_known{policy="q"} 0' in metrics
    assert "failover_engine_quorum_leader_token{" not in metrics


@pytest.mark.integration
def test_a_reload_applies_a_changed_quorum_block_but_not_while_busy(
        tmp_path: Path, http_server, etcd_cluster: EtcdCluster,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="failover_engine")
    policy = quorum_policy(tmp_path, http_server.url("/"), etcd_cluster)
    changed = quorum_policy(tmp_path, http_server.url("/"), etcd_cluster, lease_ttl="20s")
    engine = Engine(policy, StateStore(policy.state_dir), send_mail=False)
    monitor = Monitor(engine, reload=lambda: changed)
    first = monitor.quorum
    assert first is not None
    engage_by_operator(first, engine, lambda: engine.engage(manual=True),
                       without_quorum=False, who="test")
    assert engine.record.state == State.ENGAGED and first.holding is not None
    monitor.reload_requested.set()
    monitor._maybe_reload()
    assert monitor.quorum is first  # holding the key while engaged: kept
    assert "quorum settings change deferred until armed" in caplog.text
    monitor.cycle()
    assert monitor.quorum is first and first.holding is not None
    engine.restore()
    monitor.cycle()  # armed again: the old one lets go, the new one is in force
    assert monitor.quorum is not first and monitor.quorum is not None
    assert monitor.quorum.spec.lease_ttl == 20.0
    assert first.holding is None and etcd_cluster.client().get("/t/leader") is None
    stored = etcd_cluster.client().get("/t/shared/state")
    assert stored is not None and json.loads(stored.value)["state"] == "watching"
    assert "SIGHUP: quorum settings applied" in caplog.text
    # The block removed: this observer decides alone, its snapshot goes.
    alone = quorum_policy(tmp_path, http_server.url("/"), etcd_cluster)
    alone = dataclasses.replace(alone, raw={})
    monitor._reload = lambda: alone
    monitor.reload_requested.set()
    monitor._maybe_reload()
    assert monitor.quorum is None
    assert not StatePaths(policy.state_dir).quorum_snapshot.exists()


@pytest.mark.integration
def test_each_journal_save_is_fenced_a_deposed_holder_stops_before_its_next_step(
        tmp_path: Path, http_server, etcd_cluster: EtcdCluster) -> None:
    policy = dataclasses.replace(
        quorum_policy(tmp_path, http_server.url("/"), etcd_cluster),
        engage=[Step("lock", {"state": "present", "file": str(tmp_path / "one.lock")},
                     where="engage[0]"),
                Step("lock", {"state": "present", "file": str(tmp_path / "two.lock")},
                     where="engage[1]")])
    engine = Engine(policy, StateStore(policy.state_dir), send_mail=False)
    quorum = Quorum(quorum_spec(policy), interval=1.0)
    quorum.publish("failed", 3, True)
    assert quorum.may_engage().allowed and quorum.holding is not None
    other = etcd_cluster.client()

    def mirror() -> None:
        # Deposed behind our back right after step 1 was done (its lease revoked: what an
        # expiry does); the fenced write of that save is refused.
        if (tmp_path / "one.lock").exists() and quorum.holding is not None:
            other.revoke(quorum.holding.lease)
        mirror_engine(quorum, engine)

    with fenced(quorum, engine, mirror):
        engine.engage(manual=True)
    assert (tmp_path / "one.lock").exists()
    assert not (tmp_path / "two.lock").exists()  # no step after the refused write
    assert quorum.halt.is_set() and quorum.holding is None
    assert engine.record.run is not None and list(engine.record.run["steps"]) == ["0"]
    # The store kept the last journal position written under our token: step 1 not done.
    stored = SharedState.parse(other.get("/t/shared/state").value)
    assert stored is not None and stored.state == "engaging"
    assert stored.run is not None and stored.run["steps_done"] == 0
    assert engine.runner.after_save is None and engine.runner.stop is not quorum.halt
    quorum.close()
