"""Quorum in network namespaces (issue 14): S1, S2, S3, S5, S6 and S10 with real partitions.

Each node (n1, n2, n3) is a namespace with one etcd member and one observer engine,
joined by a bridge in its own namespace; production is an HTTP server in another
(tests/fixtures/netns.py: nothing in the root namespace, addresses only inside the
namespaces, all removed afterwards). All three observers are actors (S10: obs1 alone,
the voters' requests cross the bridge to it); their engage is a
`probe` step of the node's own standby service (x-runs-on: anywhere; it changes nothing,
so it leaves no audit entry), and "exactly one engage" is read from every observer's
state, log (the runner's step lines) and audit log. Needs root: skipped without it.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from engine.quorum import STORE_DISARMED
from tests.fixtures.netns import (
    ADDRESS,
    ENGINE,
    FAILURES,
    NAMES,
    NODES,
    PREFIX,
    Etcd,
    Group,
    Net,
    start_production,
)
from tests.support import wait_until

pytestmark = pytest.mark.integration


def engage_entries(group: Group) -> list[tuple[str, str]]:
    """(node, step) of every engage step any observer ran: its log's step.start lines and
    its audit log (a step that changes something)."""
    ran = [(node, line.split("step.start: ", 1)[1].removesuffix(" probe: starting"))
           for node in NODES for line in group.log(node).splitlines()
           if "step.start: engage step" in line]
    audited = [(node, entry["step"]) for node in NODES for entry in group.audit(node)
               if entry.get("phase") == "engage"]
    return ran + audited


def assert_one_engage(group: Group, etcd: Etcd) -> str:
    """Exactly one observer engaged, once, and holds the leader key; returns its node."""
    assert group.engages() == 1
    engaged = group.engaged()
    assert len(engaged) == 1, engaged
    leader = engaged[0]
    assert engage_entries(group) == [(leader, "engage step 1")]
    holder = etcd.value(leader, f"{PREFIX}leader")
    assert holder is not None and holder["name"] == NAMES[leader]
    for other in set(NODES) - {leader}:
        assert group.state(other)["state"] == "suspect"
        status = group.status(other)
        # Refused: the key is the leader's, or its fresh verdict or the shared state says
        # it is engaged.
        assert (f"leader key held by {NAMES[leader]}" in status
                or f"{NAMES[leader]} is engaged" in status
                or f"engaged by {NAMES[leader]}" in status), status
    return leader


def test_s1_production_down_gives_exactly_one_engage(net: Net) -> None:
    etcd = Etcd(net)
    production = start_production(net)
    group = Group(net)
    group.wait_for_verdicts(etcd)
    group.more_cycles(2, "two cycles each")
    assert group.engages() == 0 and engage_entries(group) == []
    production.terminate()
    production.wait(10)
    wait_until(lambda: group.engages() >= 1, 60, "an engage")
    # Every observer goes on counting well past the threshold: still one engage.
    group.more_cycles(2 * FAILURES, "more cycles on every observer")
    assert_one_engage(group, etcd)


def test_s2_observer_cut_from_production_by_a_partition(net: Net) -> None:
    etcd = Etcd(net)
    start_production(net)
    group = Group(net)
    group.wait_for_verdicts(etcd)
    group.more_cycles(2, "two cycles each")
    # n1 loses its route to production only: it still reaches the store and the others.
    net.partition("n1", f"ip daddr {ADDRESS['prod']} drop;")
    group.more_cycles(4 * FAILURES, "obs1 well past its threshold", ("n1",))
    assert group.engages() == 0
    assert engage_entries(group) == []
    assert group.state("n1")["state"] == "suspect"
    assert group.state("n1")["failures"] >= FAILURES
    assert "quorum not reached (1/2)" in group.status("n1")
    assert group.state("n2")["state"] == "watching"


def test_s3_observer_cut_from_everything(net: Net) -> None:
    etcd = Etcd(net)
    production = start_production(net)
    group = Group(net)
    group.wait_for_verdicts(etcd)
    group.more_cycles(2, "two cycles each")
    # n3 is cut from everything: production, the store, the other observers.
    net.partition("n3", 'oifname "eth0" drop;')
    group.wait_for_verdicts(etcd, ("n1", "n2"))  # obs3's verdict vanishes with its lease
    # Production really goes down: the two connected observers agree, one engages, once.
    production.terminate()
    production.wait(10)
    wait_until(lambda: group.engages() >= 1, 60, "an engage by obs1 or obs2")
    group.more_cycles(2 * FAILURES, "more cycles on the connected observers", ("n1", "n2"))
    group.more_cycles(2, "more cycles on the cut observer", ("n3",))
    assert group.engages() == 1
    assert group.engaged() in (["n1"], ["n2"])
    assert [node for node, _ in engage_entries(group)] == group.engaged()
    assert group.state("n3")["state"] == "suspect"
    assert "quorum store unreachable" in group.status("n3")


def test_s5_etcd_leader_member_killed_then_production_down(net: Net) -> None:
    etcd = Etcd(net)
    production = start_production(net)
    group = Group(net)
    group.wait_for_verdicts(etcd)
    group.more_cycles(2, "two cycles each")
    leader = etcd.leader()
    assert leader is not None
    etcd.kill(leader)
    production.terminate()
    production.wait(10)
    wait_until(lambda: group.engages() >= 1, 60, "an engage without the etcd leader")
    group.more_cycles(2 * FAILURES, "more cycles on every observer")
    # The two members left elected a new leader among themselves.
    assert etcd.leader(NODES[(leader + 1) % 3]) not in (None, leader)
    assert_one_engage(group, etcd)


def test_s6_majority_lost_by_a_partition_nobody_engages_until_it_heals(net: Net) -> None:
    etcd = Etcd(net)
    production = start_production(net)
    group = Group(net)
    group.wait_for_verdicts(etcd)
    group.more_cycles(2, "two cycles each")
    # The members of n1 and n2 are cut from their peers (port 2380): every member is
    # alive and answers clients, but none has a majority. The observers still reach
    # every member, and production.
    for node in ("n1", "n2"):
        net.partition(node, "tcp dport 2380 drop; tcp sport 2380 drop;")
    production.terminate()
    production.wait(10)
    group.more_cycles(3 * FAILURES, "cycles past the threshold without a majority")
    assert group.engages() == 0
    assert engage_entries(group) == []
    for node in NODES:
        status = group.status(node)
        assert "quorum store unreachable" in status, status
        assert group.state(node)["state"] == "suspect"
        assert group.state(node)["disarmed"] == STORE_DISARMED
        # The Nagios check says so (WARNING, not OK).
        check = group.check_engine(node)
        assert check.returncode == 1, check.stdout + check.stderr
        assert check.stdout.startswith("ENGINE WARNING") and "quorum store (etcd)" in check.stdout
    # n1's member rejoins n3's: a majority again, and one engage, by one observer.
    net.heal("n1")
    wait_until(lambda: group.engages() >= 1, 90, "an engage once the majority is back")
    group.more_cycles(FAILURES, "more cycles on every observer")
    assert_one_engage(group, etcd)
    assert all(group.state(n)["disarmed"] is None for n in NODES)  # armed again


def ask(net: Net, group: Group, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    """An operator's command on `node`, run inside its namespace (it reaches the store
    over the bridge like that node's engine)."""
    return subprocess.run(net.exec(node, *ENGINE, "--policy", str(group.policies[node]), *args),
                          capture_output=True, text=True, timeout=120)


def test_s10_pause_and_resume_through_voters_are_done_by_the_actor(net: Net) -> None:
    etcd = Etcd(net)
    production = start_production(net)
    group = Group(net, actors="[obs1]")
    group.wait_for_verdicts(etcd)
    group.more_cycles(2, "two cycles each")
    # Through obs3, which only votes: the request crosses the bridge to the store, obs1
    # (the actor, in another namespace) does it and writes the shared pause.
    paused = ask(net, group, "n3", "pause", "--reason", "maintenance window")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    document = etcd.value("n2", f"{PREFIX}shared/pause")
    assert document is not None and document["paused"] is True
    assert document["reason"] == "maintenance window"
    assert group.state("n1")["state"] == "paused"
    production.terminate()
    production.wait(10)
    group.more_cycles(3 * FAILURES, "every observer well past its threshold while paused")
    assert group.engages() == 0 and engage_entries(group) == []
    # Resumed through obs2: obs1 engages, once.
    resumed = ask(net, group, "n2", "resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    wait_until(lambda: group.engages() >= 1, 60, "the engage once resumed")
    group.more_cycles(2 * FAILURES, "more cycles on every observer")
    assert assert_one_engage(group, etcd) == "n1"
    requests = [(e["step"].split()[0], e["via"], e["outcome"]) for e in group.audit("n1")
                if e.get("kind") == "request"]
    assert requests == [("pause", "obs3", "executing"), ("resume", "obs2", "executing")]
    for voter in ("n2", "n3"):
        assert not any(e.get("kind") == "request" for e in group.audit(voter))
    document = etcd.value("n2", f"{PREFIX}shared/pause")
    assert document is not None and document["paused"] is False
    assert json.loads((group.state_dir("n1") / "state.json").read_text())["state"] == "engaged"
