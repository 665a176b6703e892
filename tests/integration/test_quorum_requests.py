"""S10: engage, restore, reset and pause requested through any observer (issue 14).

Three observer engines (`failover-engine run`) share a real 3-member etcd cluster, as in
tests/integration/test_quorum.py (its helpers are reused). In the GOCDB shape obs1 is the
one actor; obs2 and obs3 only vote, so a command run there leaves a request in the store
that obs1's monitor answers (engine/quorum_requests.py).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.etcd import EtcdCluster
from tests.integration import test_quorum as base
from tests.integration.test_quorum import ENGINE, NAMES, Observers, Production
from tests.support import wait_until

pytestmark = pytest.mark.integration
# test_quorum's fixtures: its production server and its observer processes.
production = base.production
observers_factory = base.observers_factory

STEPS = """\
engage:
  - lock: {state: present}
restore:
  - lock: {state: absent}
"""


def cli(group: Observers, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "--policy", str(group.policies[name]), *args],
                          capture_output=True, text=True, timeout=120)


def requests_in_audit(root: Path, name: str) -> list[tuple[str, str, str]]:
    path = root / f"state-{name}" / "audit.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [(e["step"].split()[0], e["via"], e["outcome"]) for e in entries
            if e["kind"] == "request"]


def test_s10_engage_restore_pause_through_observers_that_only_vote(
        etcd_cluster: EtcdCluster, production: Production, observers_factory,
        tmp_path: Path) -> None:
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints,
                              actors="[obs1]", steps=STEPS)
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")
    # obs3's own monitor is stopped: a command there still asks through the store.
    group.procs["obs3"].terminate()
    group.procs["obs3"].wait(30)
    store = etcd_cluster.client()

    # The machine refuses a restore while watching: exit 1 with the actor's reason, and the
    # key taken for it is given back.
    early = cli(group, "obs2", "restore")
    assert early.returncode == 1, early.stdout + early.stderr
    assert "obs1 refused the restore: policy quorum-test: cannot restore from state " \
           "watching" in early.stderr
    assert store.get("/fe-test/leader") is None

    engage = cli(group, "obs2", "engage", "--now")
    assert engage.returncode == 0, engage.stdout + engage.stderr
    assert "done by obs1: its state is engaged" in engage.stdout
    assert group.state("obs1")["state"] == "engaged"
    assert group.state("obs2")["state"] == "watching"
    holder = store.get("/fe-test/leader")  # kept while the standby serves
    assert holder is not None and json.loads(holder.value)["name"] == "obs1"

    restore = cli(group, "obs3", "restore")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "done by obs1: its state is watching" in restore.stdout
    assert group.state("obs1")["state"] == "watching"

    pause = cli(group, "obs2", "pause", "--reason", "maintenance window")
    assert pause.returncode == 0, pause.stdout + pause.stderr
    assert group.state("obs1")["state"] == "paused"
    shared = store.get("/fe-test/shared/pause")
    assert shared is not None
    document = json.loads(shared.value)
    assert document["paused"] is True and document["reason"] == "maintenance window"
    assert "through observer obs2" in document["by"]
    assert (tmp_path / "state-obs1" / "paused").exists()

    resume = cli(group, "obs3", "resume")
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert group.state("obs1")["state"] == "watching"
    shared = store.get("/fe-test/shared/pause")
    assert shared is not None and json.loads(shared.value)["paused"] is False
    assert not (tmp_path / "state-obs1" / "paused").exists()

    # obs1's audit log: each request with the observer it came through, then the steps.
    assert requests_in_audit(tmp_path, "obs1") == [
        ("restore", "obs2", "executing"), ("restore", "obs2", "refused"),
        ("engage", "obs2", "executing"), ("restore", "obs3", "executing"),
        ("pause", "obs2", "executing"), ("resume", "obs3", "executing")]
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "state-obs1" / "audit.jsonl").read_text().splitlines()]
    assert steps.count("engage step 1") == 1 and steps.count("restore step 1") == 1
    # Nothing ran on the observers that only vote; no request or reply is left behind.
    assert not (tmp_path / "state-obs2" / "audit.jsonl").exists()
    assert not (tmp_path / "state-obs3" / "audit.jsonl").exists()
    assert store.range("/fe-test/requests/", prefix=True) == []
    assert store.range("/fe-test/replies/", prefix=True) == []


def test_s10_no_actor_answers_refused_within_the_wait(
        etcd_cluster: EtcdCluster, production: Production, observers_factory) -> None:
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints,
                              actors="[obs1]", steps=STEPS)
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")
    group.procs["obs1"].terminate()
    group.procs["obs1"].wait(30)
    done = cli(group, "obs2", "engage", "--now", "--wait", "2s")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no actor (obs1) picked up the engage request within 2s" in done.stderr
    assert "nothing was done" in done.stderr
    assert etcd_cluster.client().range("/fe-test/requests/", prefix=True) == []
    assert group.state("obs1")["state"] == "watching"
    # --without-quorum never goes through the store, and an observer that votes never acts.
    forced = cli(group, "obs2", "engage", "--now", "--without-quorum")
    assert forced.returncode == 1
    assert "observer obs2 only votes" in forced.stderr
    assert group.state("obs2")["state"] == "watching"


def test_restore_and_reset_on_an_actor_need_the_leader_key(
        etcd_cluster: EtcdCluster, production: Production, observers_factory,
        tmp_path: Path) -> None:
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints,
                              actors="[obs1]", steps=STEPS)
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")
    engage = cli(group, "obs1", "engage", "--now")
    assert engage.returncode == 0, engage.stdout + engage.stderr
    store = etcd_cluster.client()
    # Another engine takes the leader key from obs1: its lease revoked, then the key
    # created by "intruder" (retried if obs1's monitor wins it back in between).
    for _ in range(20):
        current = store.get("/fe-test/leader")
        if current is not None and json.loads(current.value)["name"] == "intruder":
            break
        if current is not None:
            store.revoke(current.lease)
        store.create("/fe-test/leader", json.dumps({"name": "intruder", "host": "elsewhere",
                                                    "pid": 1}), lease=store.grant(60).id)
    else:
        pytest.fail("the intruder never got the leader key")
    # Through obs1's monitor (a local request): refused, nothing done.
    for kind in ("restore", "reset"):
        refused = cli(group, "obs1", kind)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"{kind} needs the quorum's leader key: leader key held by intruder " \
               "(pid 1 on elsewhere)" in refused.stderr
        assert group.state("obs1")["state"] == "engaged"
    # Without a monitor the command acts itself: refused too.
    group.procs["obs1"].terminate()
    group.procs["obs1"].wait(30)
    alone = cli(group, "obs1", "restore")
    assert alone.returncode == 1
    assert "restore needs the quorum's leader key: leader key held by intruder" in alone.stderr
    assert group.state("obs1")["state"] == "engaged"
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "state-obs1" / "audit.jsonl").read_text().splitlines()]
    assert steps == ["engage step 1"]  # no restore step ran
    # The intruder gone, the same command restores.
    store.delete("/fe-test/leader")
    restored = cli(group, "obs1", "restore")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert group.state("obs1")["state"] == "watching"
    assert store.get("/fe-test/leader") is None  # given back once armed
    shared = store.get("/fe-test/shared/state")  # mirrored before it was given back
    assert shared is not None and json.loads(shared.value)["state"] == "watching"
    # pause and resume on the actor without its monitor: here, under the key, shared.
    pause = cli(group, "obs1", "pause", "--reason", "patching")
    assert pause.returncode == 0, pause.stdout + pause.stderr
    assert "paused, shared through the quorum's store (state paused)" in pause.stdout
    shared_pause = store.get("/fe-test/shared/pause")
    assert shared_pause is not None
    document = json.loads(shared_pause.value)
    assert document["paused"] is True and document["reason"] == "patching"
    assert document["by"].endswith("on the command line") and "(pid " in document["by"]
    assert store.get("/fe-test/leader") is None  # taken for it, given back
    resume = cli(group, "obs1", "resume")
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert group.state("obs1")["state"] == "watching"
    shared_pause = store.get("/fe-test/shared/pause")
    assert shared_pause is not None and json.loads(shared_pause.value)["paused"] is False
