"""Quorum under faults (issue 14): S4, S7, S9 in network namespaces, S8 against real BIND.

S4, S7 and S9 run in the namespaces of tests/fixtures/netns.py (three etcd members, three
observer engines, production over a bridge; nothing in the root namespace; root only).
Their engage has `command` steps that record their side effects in a file (`start N` /
`done N`), and a slow one in the middle makes "mid-engage" a condition the test waits for,
not a moment it guesses. `command` runs on an actor only, so obs1 is the one actor and
obs2, obs3 vote (the GOCDB shape).

S8 needs no namespace: three observers on loopback share the loopback etcd cluster
(tests/fixtures/etcd.py) and a real `named` (tests/fixtures/bind.py); obs1's DNS server is
reached through a relay that holds UPDATE messages until the test releases them, which
makes "a late update" deterministic.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from engine.drillkit.named import DnsLab
from engine.drillkit.ports import free_port
from tests.fixtures.bind import PROD
from tests.fixtures.etcd import EtcdCluster
from tests.fixtures.netns import (
    ENGINE,
    FAILURES,
    NODES,
    PREFIX,
    Etcd,
    Group,
    Net,
    start_production,
)
from tests.support import LOOPBACK, wait_until

pytestmark = pytest.mark.integration

EFFECT = """\
import sys, time
log, name, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(log, "a") as out:
    out.write(f"start {name}\\n")
time.sleep(pause)
with open(log, "a") as out:
    out.write(f"done {name}\\n")
"""


class Effects:
    """Three engage steps after the lock: `command` steps appending to one file; step 3
    (the second command) is slow. `steps` is the policy's engage/restore text."""

    def __init__(self, root: Path, slow: float) -> None:
        self.path = root / "effects.log"
        script = root / "effect.py"
        script.write_text(EFFECT)

        def command(name: str, pause: float) -> str:
            argv = [sys.executable, str(script), str(self.path), name, str(pause)]
            return f"  - command: {{argv: {json.dumps(argv)}}}\n"

        self.steps = ("engage:\n  - lock: {state: present}\n" + command("2", 0)
                      + command("3", slow) + command("4", 0)
                      + "restore:\n  - lock: {state: absent}\n")

    def lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def count(self) -> Counter[str]:
        return Counter(self.lines())


def engage_steps(group: Group, node: str) -> list[str]:
    return [e["step"] for e in group.audit(node) if e.get("phase") == "engage"]


def assert_each_step_once(group: Group, effects: Effects) -> None:
    """obs1 applied steps 1-4 once each; nobody else applied any."""
    assert engage_steps(group, "n1") == [f"engage step {i}" for i in range(1, 5)]
    assert engage_steps(group, "n2") == [] and engage_steps(group, "n3") == []
    done = effects.count()
    assert [done[f"done {i}"] for i in range(2, 5)] == [1, 1, 1], effects.lines()
    assert group.state("n1")["counts"]["engages"] == 1
    assert group.engages() == 1


def position(text: str, needle: str) -> int:
    """Where `needle` first appears in `text` (fails the test when it does not)."""
    at = text.find(needle)
    assert at >= 0, f"{needle!r} not in the log"
    return at


def engage_until_slow_step(net: Net, *, slow: int, lease_ttl: str
                           ) -> tuple[Etcd, Group, Effects]:
    """Three observers, obs1 the one actor with command steps (step `slow` sleeps);
    production goes down and the test returns once obs1 has started step 3."""
    etcd = Etcd(net)
    production = start_production(net)
    effects = Effects(net.root, slow=slow)
    group = Group(net, actors="[obs1]", lease_ttl=lease_ttl, steps=effects.steps)
    group.wait_for_verdicts(etcd)
    group.more_cycles(2, "two cycles each")
    production.terminate()
    production.wait(10)
    wait_until(lambda: "start 3" in effects.lines(), 60, "obs1 to engage and reach its slow step")
    return etcd, group, effects


def test_s7_actor_cut_from_the_store_mid_engage_stops_at_its_deadline(net: Net) -> None:
    etcd, group, effects = engage_until_slow_step(net, slow=4, lease_ttl="2s")
    # obs1 is cut from the store mid-engage: from the other nodes and from its own member
    # (an nft table in its namespace only).
    net.partition("n1", 'oifname "eth0" drop; tcp dport 2379 drop;')
    wait_until(lambda: "stopping before step 4" in group.log("n1"), 30,
               "the runner to stop before the next step")
    log = group.log("n1")
    assert position(log, "leader key lost") < position(log, "stopping before step 4")
    assert "our own deadline passed" in log or "no renewal before the deadline" in log
    assert "start 4" not in effects.lines()  # no step after the deadline
    assert group.state("n1")["state"] == "engaging"
    assert sorted(group.state("n1")["run"]["steps"]) == ["0", "1", "2"]  # the journal
    assert engage_steps(group, "n1") == ["engage step 1", "engage step 2", "engage step 3"]
    # Healed: obs1 takes the key again and resumes at step 4; nothing runs twice.
    net.heal("n1")
    wait_until(lambda: group.state("n1").get("state") == "engaged", 60,
               "the engage to resume once obs1 holds the key again")
    assert "resuming the interrupted engage" in group.log("n1")
    assert_each_step_once(group, effects)
    assert effects.count()["start 3"] == 1


def test_s4_actor_sigkilled_mid_engage_resumes_on_restart(net: Net) -> None:
    etcd, group, effects = engage_until_slow_step(net, slow=4, lease_ttl="3s")
    # SIGKILL to obs1's engine and the step it runs (its process group, as systemd would).
    net.kill(group.procs["n1"])
    journal = group.state("n1")["run"]
    assert group.state("n1")["state"] == "engaging"
    assert sorted(journal["steps"]) == ["0", "1"]  # steps 1 and 2 done, 3 interrupted
    assert "done 3" not in effects.lines()
    group.start("n1")
    wait_until(lambda: group.state("n1").get("state") == "engaged", 60,
               "the restarted obs1 to resume the engage")
    log = group.log("n1")
    assert "step 1 lock: done before the restart" in log
    assert "step 2 command: done before the restart" in log
    assert_each_step_once(group, effects)
    # The interrupted step ran again from its start (steps are idempotent, not resumable
    # inside); the ones before it did not.
    assert effects.count()["start 2"] == 1 and effects.count()["start 3"] == 2


def test_s9_frozen_observer_verdict_vanishes_and_the_others_engage_once(net: Net) -> None:
    etcd = Etcd(net)
    production = start_production(net)
    group = Group(net)  # all three actors, steps that run anywhere
    group.wait_for_verdicts(etcd)
    group.more_cycles(2, "two cycles each")
    frozen = group.procs["n3"]
    os.kill(frozen.pid, signal.SIGSTOP)  # frozen, not dead: no publish, no renewal
    group.wait_for_verdicts(etcd, ("n1", "n2"))  # obs3's verdict vanishes with its lease
    production.terminate()
    production.wait(10)
    wait_until(lambda: group.engages() >= 1, 60, "an engage by obs1 or obs2")
    leader = group.engaged()
    assert leader in (["n1"], ["n2"])
    os.kill(frozen.pid, signal.SIGCONT)
    group.more_cycles(2 * FAILURES, "obs3 awake, well past its threshold", ("n3",))
    group.wait_for_verdicts(etcd)  # its verdict is back
    assert group.engages() == 1
    assert group.engaged() == leader
    assert group.state("n3")["state"] == "suspect"
    assert "not engaging" in group.log("n3")
    assert all(entry.get("phase") != "engage" for n in NODES for entry in group.audit(n)
               if n != leader[0])


def test_s9_frozen_holder_wakes_past_its_deadline_and_takes_no_step(net: Net) -> None:
    etcd, group, effects = engage_until_slow_step(net, slow=3, lease_ttl="2s")
    holder = group.procs["n1"]
    os.kill(holder.pid, signal.SIGSTOP)  # the engine only: its step's child runs on
    wait_until(lambda: "done 3" in effects.lines(), 30, "the slow step's child to finish")
    wait_until(lambda: etcd.keys("n2", f"{PREFIX}leader") == [], 30,
               "the frozen holder's leader key to expire in the store")
    os.kill(holder.pid, signal.SIGCONT)
    # Awake past its deadline: it notices on its own monotonic clock and takes no step
    # until it holds the key again (with a new token).
    wait_until(lambda: group.state("n1").get("state") == "engaged", 60,
               "obs1 to take the key again and resume")
    log = group.log("n1")
    assert position(log, "leader key lost") < position(log, "stopping before step 4") \
        < position(log, "resuming the interrupted engage") \
        < position(log, "step.start: engage step 4")
    tokens = [int(line.split("(token ")[1].split(",")[0]) for line in log.splitlines()
              if "quorum: leader key taken (token" in line]
    assert len(tokens) == 2 and tokens[1] > tokens[0], tokens
    assert_each_step_once(group, effects)


# -- S8: a deposed actor's late DNS update, against real BIND --------------------------------
class UpdateGate:
    """A TCP relay on loopback to `named`: queries pass at once, each UPDATE (opcode 5) is
    held until `release` is set. `held` is set when one arrives."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.held = threading.Event()
        self.release = threading.Event()
        self.server = socket.create_server((LOOPBACK, 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    @staticmethod
    def _message(sock: socket.socket) -> bytes | None:
        def exactly(size: int) -> bytes | None:
            data = b""
            while len(data) < size:
                chunk = sock.recv(size - len(data))
                if not chunk:
                    return None
                data += chunk
            return data

        head = exactly(2)
        return None if head is None else exactly(struct.unpack("!H", head)[0])

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection((LOOPBACK, self.upstream), timeout=30) as up:
            while (message := self._message(client)) is not None:
                if (message[2] >> 3) & 0xF == 5:  # UPDATE
                    self.held.set()
                    self.release.wait(60)
                up.sendall(struct.pack("!H", len(message)) + message)
                answer = self._message(up)
                if answer is None:
                    return
                client.sendall(struct.pack("!H", len(answer)) + answer)

    def close(self) -> None:
        self.release.set()
        self.server.close()


@pytest.fixture
def update_gate(dns_lab: DnsLab) -> Iterator[UpdateGate]:
    assert dns_lab.primary is not None
    gate = UpdateGate(dns_lab.primary.port)
    yield gate
    gate.close()


def cname(lab: DnsLab) -> str:
    assert lab.primary is not None
    reply = dns.query.tcp(dns.message.make_query("goc.example.test.", "CNAME"), LOOPBACK,
                          port=lab.primary.port, timeout=3)
    return reply.answer[0][0].to_text() if reply.answer else "(none)"


def dns_policy(root: Path, name: str, *, port: int, key: Path, endpoints: list[str],
               closed: int, failures: int) -> Path:
    """obs1 and obs2 may act; their engage is one nsupdate step (runs anywhere) that
    switches goc.example.test. from PROD to standby-<name>, only if it is still PROD."""
    switch = (f"server: {LOOPBACK}, port: {port}, zone: example.test., "
              "name: goc.example.test., type: CNAME, ttl: 60, key: tsig")
    policy = root / f"{name}.yaml"
    policy.write_text(f"""\
version: 1
name: quorum-dns
state_dir: state-{name}
secrets: {{tsig: {key}}}
probes:
  production: {{tcp: {{host: {LOOPBACK}, port: {closed}, timeout: 300ms}}}}
monitor: {{target: production, interval: 400ms, failures_to_engage: {failures}}}
quorum:
  endpoints: {json.dumps(endpoints)}
  prefix: /fe-dns/
  name: {name}
  observers: [obs1, obs2, obs3]
  actors: [obs1, obs2]
  engage_when: {{down: 2}}
  lease_ttl: 5s
  timeout: 200ms
engage:
  - nsupdate: {{{switch}, expect: {PROD}, set: standby-{name}.example.org.}}
restore:
  - nsupdate: {{{switch}, expect: standby-{name}.example.org., set: {PROD}}}
""")
    return policy


def test_s8_a_deposed_actors_late_dns_update_is_refused_by_the_prerequisite(
        etcd_cluster: EtcdCluster, dns_lab: DnsLab, update_gate: UpdateGate,
        tmp_path: Path) -> None:
    assert dns_lab.primary is not None
    key = tmp_path / "tsig.key"
    key.write_text(dns_lab.update_key_file.read_text())
    key.chmod(0o600)
    closed = free_port()  # production: nothing listens there
    # obs1 (through the gate) and obs3 (votes only) call the outage prolonged after 3
    # failures; obs2 only after 1000, so obs1 is the one that engages automatically.
    ports = {"obs1": update_gate.port, "obs2": dns_lab.primary.port,
             "obs3": dns_lab.primary.port}
    failures = {"obs1": FAILURES, "obs2": 1000, "obs3": FAILURES}
    policies = {n: dns_policy(tmp_path, n, port=ports[n], key=key,
                              endpoints=etcd_cluster.endpoints, closed=closed,
                              failures=failures[n]) for n in ports}
    procs = [subprocess.Popen([*ENGINE, "--policy", str(p), "run"],
                              stdout=(tmp_path / f"{n}.log").open("wb"),
                              stderr=subprocess.STDOUT) for n, p in policies.items()]

    def log(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text(errors="replace")

    try:
        # obs1 engages: it read the record (PROD, through the gate), and its UPDATE — with
        # the prerequisite "the CNAME is exactly PROD" — is now held on the way.
        assert update_gate.held.wait(60), "obs1's update never reached the gate"
        client = etcd_cluster.client()
        leader = client.get("/fe-dns/leader")
        assert leader is not None and json.loads(leader.value)["name"] == "obs1"
        # obs1 is deposed: its leader lease is gone. An operator engages through obs2,
        # which takes the key and switches the record.
        client.revoke(leader.lease)
        done = subprocess.run([*ENGINE, "--policy", str(policies["obs2"]), "engage", "--now"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert cname(dns_lab) == "standby-obs2.example.org."
        # Now obs1's late update arrives: the server refuses it, the record is unchanged.
        update_gate.release.set()
        wait_until(lambda: "prerequisite failed" in log("obs1"), 30,
                   "obs1's nsupdate step to fail on the prerequisite")
        assert cname(dns_lab) == "standby-obs2.example.org."
        assert "leader key lost" in log("obs1")
        audit = [json.loads(line) for line in
                 (tmp_path / "state-obs1" / "audit.jsonl").read_text().splitlines()]
        assert [(a["step"], a["outcome"]) for a in audit] == [("engage step 1", "failed")]
        assert audit[0]["summary"].startswith(
            "prerequisite failed: goc.example.test. CNAME on "
            f"{LOOPBACK}:{update_gate.port} is standby-obs2.example.org., not the expected "
            f"{PROD}")
        state = json.loads((tmp_path / "state-obs1" / "state.json").read_text())
        assert state["state"] != "engaged"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
