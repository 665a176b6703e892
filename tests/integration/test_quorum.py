"""Several observers through a real 3-member etcd (issue 14, first part): S1, S2, S6.

Three observer engines (`failover-engine run`, each its own process, policy and state
dir) share one etcd cluster (tests/fixtures/etcd.py). Production is a real HTTP server on
loopback. These tests do not use network namespaces yet: an observer "cut from
production" is one whose production probe points at a closed loopback port, one "cut
from everything" also has only closed ports as its etcd endpoints, and "majority lost"
is two of the three etcd members killed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from engine.drillkit.ports import free_port
from engine.quorum import STORE_DISARMED
from tests.fixtures.etcd import EtcdCluster, quorum_block
from tests.support import REPO, wait_until

pytestmark = pytest.mark.integration

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]
NAMES = ("obs1", "obs2", "obs3")
FAILURES = 3


class Production:
    """An HTTP server on loopback answering 200, or 503 once `down` is set."""

    def __init__(self) -> None:
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(503 if outer.down else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def production() -> Iterator[Production]:
    server = Production()
    yield server
    server.close()


# Several actors: only steps that run anywhere (x-runs-on; a `lock` step would be refused
# by validate). The `reachable` probe is a tcp probe of the test server, which still
# listens while "down".
STEPS = """\
engage:
  - probe: {name: reachable}
restore:
  - probe: {name: reachable}
"""


def write_policy(root: Path, name: str, url: str, endpoints: list[str], *,
                 actors: str = "[obs1, obs2, obs3]", lease_ttl: str = "5s",
                 steps: str = STEPS) -> Path:
    """One observer's policy: by default all three observers are actors, two must agree."""
    policy = root / f"{name}.yaml"
    server = urlsplit(url)
    policy.write_text(f"""\
version: 1
name: quorum-test
state_dir: state-{name}
probes:
  production:
    http: {{url: "{url}", timeout: 500ms}}
  reachable:
    tcp: {{host: {server.hostname}, port: {server.port}, timeout: 500ms}}
monitor:
  target: production
  interval: 400ms
  failures_to_engage: {FAILURES}
{quorum_block(endpoints, prefix="/fe-test/", name=name, actors=actors, lease_ttl=lease_ttl)}\
{steps}""")
    return policy


class Observers:
    """Three monitor processes; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, root: Path, urls: dict[str, str],
                 endpoints: list[str] | dict[str, list[str]], **options: str) -> None:
        self.root = root
        per = endpoints if isinstance(endpoints, dict) else {n: endpoints for n in NAMES}
        self.policies = {n: write_policy(root, n, urls[n], per[n], **options) for n in NAMES}
        self.procs = {n: subprocess.Popen([*ENGINE, "--policy", str(p), "run"],
                                          stdout=(root / f"{n}.log").open("wb"),
                                          stderr=subprocess.STDOUT)
                      for n, p in self.policies.items()}

    def state(self, name: str) -> dict:
        try:
            return json.loads((self.root / f"state-{name}" / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def engages(self) -> int:
        return sum(self.state(n).get("counts", {}).get("engages", 0) for n in NAMES)

    def engaged(self) -> list[str]:
        return [n for n in NAMES if self.state(n).get("state") in ("engaging", "engaged")]

    def cycles(self, name: str) -> int:
        return int(self.state(name).get("cycles", 0))

    def status(self, name: str) -> str:
        done = subprocess.run([*ENGINE, "--policy", str(self.policies[name]), "status"],
                              capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr

    def check_engine(self, name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ENGINE, "--policy", str(self.policies[name]), "check",
                               "engine"], capture_output=True, text=True, timeout=30)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def observers_factory(tmp_path: Path) -> Iterator:
    started: list[Observers] = []

    def start(urls: dict[str, str], endpoints: list[str] | dict[str, list[str]],
              **options: str) -> Observers:
        group = Observers(tmp_path, urls, endpoints, **options)
        started.append(group)
        return group

    yield start
    for group in started:
        group.stop()


def test_s1_production_down_gives_exactly_one_engage(etcd_cluster: EtcdCluster,
                                                     production: Production,
                                                     observers_factory) -> None:
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints)
    # Healthy first: every observer publishes, nobody engages.
    wait_until(lambda: all(group.cycles(n) >= 3 for n in NAMES), 60, "three cycles each")
    verdicts = etcd_cluster.client().range("/fe-test/observers/", prefix=True)
    assert sorted(kv.key.decode() for kv in verdicts) == [f"/fe-test/observers/{n}"
                                                         for n in NAMES]
    assert all(json.loads(kv.value)["verdict"] == "ok" for kv in verdicts)
    assert group.engages() == 0
    production.down = True
    wait_until(lambda: group.engages() >= 1, 60, "an engage")
    # Every observer has then gone on counting well past the threshold: still one engage.
    marks = {n: group.cycles(n) for n in NAMES}
    wait_until(lambda: all(group.cycles(n) >= marks[n] + 2 * FAILURES for n in NAMES), 60,
               "more cycles on every observer")
    assert group.engages() == 1
    assert len(group.engaged()) == 1
    leader = group.engaged()[0]
    holder = etcd_cluster.client().get("/fe-test/leader")
    assert holder is not None and json.loads(holder.value)["name"] == leader
    for other in set(NAMES) - {leader}:
        status = group.status(other)
        # Refused: the key is the leader's, or its fresh verdict says it is engaged.
        assert f"leader key held by {leader}" in status or f"{leader} is engaged" in status
        assert group.state(other)["state"] == "suspect"


def test_a_voter_mirrors_the_actors_shared_state_in_status_and_metrics(
        etcd_cluster: EtcdCluster, production: Production, observers_factory,
        tmp_path: Path) -> None:
    # The GOCDB shape: obs1 acts, obs2 and obs3 only vote. Once obs1 engaged, obs2's own
    # state stays suspect, but its status and metrics show the shared state from the store.
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints,
                              actors="[obs1]")
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")
    production.down = True
    wait_until(lambda: group.state("obs1").get("state") == "engaged", 60, "obs1 to engage")
    leader = etcd_cluster.client().get("/fe-test/leader")
    assert leader is not None
    token = leader.create_revision
    wait_until(lambda: f"shared: engaged by obs1 (token {token})" in group.status("obs2"), 30,
               "obs2's status to mirror the shared state")
    assert group.state("obs2")["state"] == "suspect"
    done = subprocess.run([*ENGINE, "--policy", str(group.policies["obs2"]), "status",
                           "--json"], capture_output=True, text=True, timeout=30)
    shared = json.loads(done.stdout)["quorum"]["shared"]
    assert (shared["known"], shared["state"], shared["holder"], shared["token"]) == (
        True, "engaged", "obs1", token)
    assert shared["run"]["phase"] == "engage" and shared["run"]["last_step"] == 1

    def metric(name: str, family: str) -> str | None:
        text = (tmp_path / f"state-{name}" / "metrics.prom").read_text()
        for line in text.splitlines():
            if line.startswith(f"failover_engine_quorum_{family}{{"):
                return line.rsplit(" ", 1)[1]
        return None

    assert metric("obs2", "store_reachable") == "1"
    assert metric("obs2", "leader_held") == "0"
    assert metric("obs2", "leader_token") == str(token)
    assert metric("obs2", "shared_state_known") == "1"
    assert metric("obs2", "observers_needed") == "2"
    assert metric("obs1", "leader_held") == "1"
    assert float(metric("obs1", "leader_deadline_seconds") or 0) > 0


def test_s5_etcd_leader_killed_then_production_down(etcd_cluster: EtcdCluster,
                                                   production: Production,
                                                   observers_factory) -> None:
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints)
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")
    leader = etcd_cluster.leader()
    assert leader is not None
    etcd_cluster.stop(leader)
    production.down = True
    wait_until(lambda: group.engages() >= 1, 60, "an engage without the etcd leader")
    group_cycles = {n: group.cycles(n) for n in NAMES}
    wait_until(lambda: all(group.cycles(n) >= group_cycles[n] + 2 * FAILURES for n in NAMES),
               60, "more cycles on every observer")
    assert group.engages() == 1
    assert len(group.engaged()) == 1


def test_s2_observer_cut_from_production_only_does_not_engage(
        etcd_cluster: EtcdCluster, production: Production, observers_factory) -> None:
    dead = f"http://127.0.0.1:{free_port()}/"
    group = observers_factory({"obs1": dead, "obs2": production.url, "obs3": production.url},
                              etcd_cluster.endpoints)
    wait_until(lambda: group.cycles("obs1") >= 4 * FAILURES, 60, "obs1 past its threshold")
    assert group.engages() == 0
    assert group.state("obs1")["state"] == "suspect"
    status = group.status("obs1")
    assert "quorum not reached (1/2)" in status, status
    assert "quorum not reached (1/2): not engaging" in group.log("obs1")
    assert etcd_cluster.client().get("/fe-test/leader") is None


def test_s3_observer_cut_from_the_store_never_acts(etcd_cluster: EtcdCluster,
                                                 production: Production,
                                                 observers_factory) -> None:
    # obs3 reaches neither the store (its endpoints are closed loopback ports) nor, since
    # production is down, production: it must never act, and it has no verdict to count.
    cut = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    group = observers_factory({n: production.url for n in NAMES},
                              {"obs1": etcd_cluster.endpoints, "obs2": etcd_cluster.endpoints,
                               "obs3": cut})
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")
    production.down = True
    wait_until(lambda: group.engages() >= 1, 60, "an engage by obs1 or obs2")
    marks = {n: group.cycles(n) for n in NAMES}
    wait_until(lambda: all(group.cycles(n) >= marks[n] + 2 * FAILURES for n in NAMES), 60,
               "more cycles on every observer")
    assert group.engages() == 1
    assert group.engaged() in (["obs1"], ["obs2"])
    assert group.state("obs3")["state"] == "suspect"
    assert "quorum store unreachable" in group.status("obs3")
    names = [kv.key.decode() for kv in etcd_cluster.client().range("/fe-test/observers/",
                                                                    prefix=True)]
    assert "/fe-test/observers/obs3" not in names


def test_s6_majority_lost_nobody_engages_until_it_is_back(
        etcd_cluster: EtcdCluster, production: Production, observers_factory) -> None:
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints)
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")
    etcd_cluster.stop(0)
    etcd_cluster.stop(1)
    production.down = True
    marks = {n: group.cycles(n) for n in NAMES}
    wait_until(lambda: all(group.cycles(n) >= marks[n] + 2 * FAILURES for n in NAMES), 90,
               "cycles past the threshold without a majority")
    assert group.engages() == 0
    for name in NAMES:
        status = group.status(name)
        assert "quorum store unreachable" in status, status
        assert group.state(name)["state"] == "suspect"
        # The failover is disarmed, and the Nagios check says so (WARNING, not OK).
        assert group.state(name)["disarmed"] == STORE_DISARMED
        check = group.check_engine(name)
        assert check.returncode == 1, check.stdout + check.stderr
        assert check.stdout.startswith("ENGINE WARNING") and "quorum store (etcd)" in check.stdout
    # The majority back: one engage, by one observer.
    etcd_cluster.start(0)
    wait_until(lambda: group.engages() >= 1, 90, "an engage once the majority is back")
    marks = {n: group.cycles(n) for n in NAMES}
    wait_until(lambda: all(group.cycles(n) >= marks[n] + FAILURES for n in NAMES), 60,
               "more cycles on every observer")
    assert group.engages() == 1
    assert len(group.engaged()) == 1
    assert all(group.state(n)["disarmed"] is None for n in NAMES)  # armed again


def test_s7_actor_cut_from_the_store_mid_engage_stops_at_its_deadline(
        etcd_cluster: EtcdCluster, production: Production, observers_factory,
        tmp_path: Path) -> None:
    # The one actor (obs1, the GOCDB shape) engages: a step that outlasts the lease, then
    # a step that marks it ran. The store goes away during the long step: the engage
    # stops at obs1's own deadline, before the next step; it resumes (the first steps not
    # run twice) once obs1 holds the leader key again.
    started, after = tmp_path / "long-step-started", tmp_path / "after-the-long-step"
    long_step = f"import pathlib, time; pathlib.Path('{started}').touch(); time.sleep(4)"
    steps = f"""\
engage:
  - lock: {{state: present}}
  - command: {{argv: [python3, -c, "{long_step}"]}}
  - command: {{argv: [touch, "{after}"]}}
restore:
  - lock: {{state: absent}}
"""
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints,
                              actors="[obs1]", lease_ttl="2s", steps=steps)
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")
    production.down = True
    wait_until(started.exists, 60, "obs1 to engage and reach its long step")
    etcd_cluster.stop_all()
    wait_until(lambda: "leader key lost" in group.log("obs1"), 30,
               "obs1 to give up at its own deadline")
    wait_until(lambda: "stopping before step 3" in group.log("obs1"), 30,
               "the runner to stop before the next step")
    assert not after.exists()
    assert group.state("obs1")["state"] == "engaging"
    for index in range(3):
        etcd_cluster.start(index)
    wait_until(lambda: group.state("obs1").get("state") == "engaged", 60,
               "the engage to resume once obs1 holds the key again")
    assert after.exists()
    assert group.engages() == 1
    audit = [json.loads(line) for line in
             (tmp_path / "state-obs1" / "audit.jsonl").read_text().splitlines()]
    # Each step applied once: none twice after the resume, none by another observer.
    assert [a["step"] for a in audit] == ["engage step 1", "engage step 2", "engage step 3"]
    assert not (tmp_path / "state-obs2" / "audit.jsonl").exists()
    assert not (tmp_path / "state-obs3" / "audit.jsonl").exists()


def test_engage_now_needs_the_leader_key_unless_without_quorum(
        etcd_cluster: EtcdCluster, production: Production, observers_factory,
        tmp_path: Path) -> None:
    group = observers_factory({n: production.url for n in NAMES}, etcd_cluster.endpoints)
    wait_until(lambda: all(group.cycles(n) >= 2 for n in NAMES), 60, "two cycles each")

    def engage(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ENGINE, "--policy", str(group.policies[name]), "engage",
                               "--now", *extra], capture_output=True, text=True, timeout=120)

    # Through obs1's monitor: it takes the key and engages.
    first = engage("obs1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert group.state("obs1")["state"] == "engaged"
    # obs2's monitor is refused while obs1 holds the key; nothing done there.
    second = engage("obs2")
    assert second.returncode == 1
    assert "engage needs the quorum's leader key: leader key held by obs1" in second.stderr
    assert group.state("obs2")["state"] == "watching"
    # obs3 without its monitor, and the store without a majority: refused, then
    # --without-quorum acts anyway and the audit log says so.
    group.procs["obs3"].terminate()
    group.procs["obs3"].wait(30)
    etcd_cluster.stop(0)
    etcd_cluster.stop(1)
    third = engage("obs3")
    assert third.returncode == 1
    assert "engage needs the quorum's leader key: quorum store unreachable" in third.stderr
    assert group.state("obs3")["state"] == "watching"
    assert not (tmp_path / "state-obs3" / "audit.jsonl").exists()
    forced = engage("obs3", "--without-quorum")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "without the quorum's leader key" in forced.stdout
    assert group.state("obs3")["state"] == "engaged"
    audit = [json.loads(line) for line in
             (tmp_path / "state-obs3" / "audit.jsonl").read_text().splitlines()]
    assert audit[0]["kind"] == "quorum" and audit[0]["outcome"] == "without-quorum"
    # The probe step changes nothing, so it is journalled, not audited.
    assert [a["step"] for a in audit[1:]] == []
    assert "engage step 1" in forced.stdout, forced.stdout
