"""Quorum with real network partitions (issue 14): S2 and S3 in network namespaces.

The test builds its own little network and removes it afterwards; nothing is added to
the root namespace (no link, address or rule): a hub namespace holds a bridge; each node
namespace (n1, n2, n3) holds one etcd member and one observer engine, joined to the hub
by a veth pair created inside the hub; production is an HTTP server in its own namespace.
Addresses (192.0.2.0/24, TEST-NET-1) exist only inside those namespaces. A partition is
an nftables table inside one node's namespace. Needs root, `ip` and `nft`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, require_binary, wait_until

pytestmark = pytest.mark.integration

ENGINE = [sys.executable, str(REPO / "bin" / "failover-engine")]
NODES = ("n1", "n2", "n3")
NAMES = {"n1": "obs1", "n2": "obs2", "n3": "obs3"}
ADDRESS = {"n1": "192.0.2.11", "n2": "192.0.2.12", "n3": "192.0.2.13", "prod": "192.0.2.100"}
FAILURES = 3


def _run(*args: str, stdin: str | None = None) -> None:
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")


class Net:
    """The namespaces of one test: `ns(name)` is the real namespace name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"fe{os.getpid() % 100000}"
        self.created: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.etcd_procs: list[subprocess.Popen[bytes]] = []

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def exec(self, name: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(name), *args]

    def add(self, name: str) -> None:
        _run("ip", "netns", "add", self.ns(name))
        self.created.append(self.ns(name))
        _run(*self.exec(name, "ip", "link", "set", "lo", "up"))

    def build(self) -> None:
        self.add("hub")
        _run(*self.exec("hub", "ip", "link", "add", "br0", "type", "bridge"))
        _run(*self.exec("hub", "ip", "link", "set", "br0", "up"))
        for node in (*NODES, "prod"):
            self.add(node)
            # Created inside the hub; one end is moved straight into the node's namespace.
            _run(*self.exec("hub", "ip", "link", "add", f"v-{node}", "type", "veth", "peer",
                            "name", "eth0", "netns", self.ns(node)))
            _run(*self.exec("hub", "ip", "link", "set", f"v-{node}", "master", "br0", "up"))
            _run(*self.exec(node, "ip", "addr", "add", f"{ADDRESS[node]}/24", "dev", "eth0"))
            _run(*self.exec(node, "ip", "link", "set", "eth0", "up"))

    def start(self, name: str, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("ab") as out:
            proc = subprocess.Popen(self.exec(name, *args), stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def partition(self, node: str, rules: str) -> None:
        """An nftables table inside the node's namespace (gone with the namespace): `rules`
        for outgoing packets, mirrored (saddr, iifname) for incoming ones."""
        incoming = rules.replace("daddr", "saddr").replace("oifname", "iifname")
        _run(*self.exec(node, "nft", "-f", "-"), stdin=f"""
table inet fe_partition {{
  chain out {{ type filter hook output priority 0; policy accept; {rules} }}
  chain in {{ type filter hook input priority 0; policy accept; {incoming} }}
}}
""")

    def teardown(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                # etcd members are killed (an abrupt loss, and no leadership hand-over
                # wait); engines and production get SIGTERM.
                if proc in self.etcd_procs:
                    proc.kill()
                else:
                    proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    require_binary("ip")
    require_binary("nft")
    etcd = require_binary("etcd")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    network = Net(tmp_path)
    network.etcd = etcd  # type: ignore[attr-defined]
    try:
        network.build()
    except RuntimeError as exc:
        network.teardown()
        if os.environ.get("FAILOVER_REQUIRE_SERVERS") == "1":
            pytest.fail(f"cannot build the test network: {exc}")
        pytest.skip(f"cannot build the test network: {exc}")
    yield network
    network.teardown()


def start_etcd(net: Net) -> None:
    cluster = ",".join(f"m{i}=http://{ADDRESS[n]}:2380" for i, n in enumerate(NODES))
    for i, node in enumerate(NODES):
        address = ADDRESS[node]
        proc = net.start(node, [net.etcd, "--name", f"m{i}",  # type: ignore[attr-defined]
                         "--data-dir", str(net.root / f"etcd-m{i}"),
                         "--listen-client-urls", f"http://{address}:2379",
                         "--advertise-client-urls", f"http://{address}:2379",
                         "--listen-peer-urls", f"http://{address}:2380",
                         "--initial-advertise-peer-urls", f"http://{address}:2380",
                         "--initial-cluster", cluster, "--initial-cluster-state", "new",
                         "--initial-cluster-token", net.prefix, "--pre-vote",
                         "--heartbeat-interval", "50", "--election-timeout", "500"],
                  f"etcd-m{i}.log")
        net.etcd_procs.append(proc)


def etcd_keys(net: Net, node: str, prefix: str) -> list[str] | None:
    """The keys under `prefix`, read from inside `node`'s namespace (None: unreachable)."""
    code = ("import json,sys; from engine.etcd import EtcdClient, EtcdError\n"
            f"c = EtcdClient({json.dumps(endpoints())}, timeout=1.0)\n"
            "try:\n"
            f"    print(json.dumps([kv.key.decode() for kv in c.range({prefix!r}, prefix=True)]))\n"
            "except EtcdError:\n"
            "    print('null')\n")
    done = subprocess.run(net.exec(node, sys.executable, "-c", code), capture_output=True,
                          text=True, timeout=30, cwd=REPO)
    return json.loads(done.stdout or "null")


def wait_for_verdicts(net: Net) -> None:
    """Until every observer's verdict is in the store (etcd elects its leader meanwhile)."""
    every = ["/fe-net/observers/obs1", "/fe-net/observers/obs2", "/fe-net/observers/obs3"]
    wait_until(lambda: sorted(etcd_keys(net, "n2", "/fe-net/observers/") or []) == every,
               60, "the three verdicts in the store")


def endpoints() -> list[str]:
    return [f"http://{ADDRESS[n]}:2379" for n in NODES]


def write_policy(root: Path, node: str) -> Path:
    name = NAMES[node]
    policy = root / f"{name}.yaml"
    policy.write_text(f"""\
version: 1
name: quorum-partition
state_dir: state-{name}
probes:
  production:
    http: {{url: "http://{ADDRESS['prod']}:8080/", timeout: 300ms}}
monitor:
  target: production
  interval: 500ms
  failures_to_engage: {FAILURES}
quorum:
  endpoints: {json.dumps(endpoints())}
  prefix: /fe-net/
  name: {name}
  observers: [obs1, obs2, obs3]
  actors: [obs1, obs2, obs3]
  engage_when: {{down: 2}}
  lease_ttl: 5s
  timeout: 200ms
engage:
  - lock: {{state: present}}
restore:
  - lock: {{state: absent}}
""")
    return policy


class Group:
    """The three observer engines, one in each node namespace."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.policies = {n: write_policy(net.root, n) for n in NODES}
        for node in NODES:
            net.start(node, [*ENGINE, "--policy", str(self.policies[node]), "run"],
                      f"{NAMES[node]}.log")

    def state(self, node: str) -> dict:
        try:
            path = self.net.root / f"state-{NAMES[node]}" / "state.json"
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def cycles(self, node: str) -> int:
        return int(self.state(node).get("cycles", 0))

    def engages(self) -> int:
        return sum(self.state(n).get("counts", {}).get("engages", 0) for n in NODES)

    def engaged(self) -> list[str]:
        return [n for n in NODES if self.state(n).get("state") in ("engaging", "engaged")]

    def status(self, node: str) -> str:
        done = subprocess.run([*ENGINE, "--policy", str(self.policies[node]), "status"],
                              capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr

    def more_cycles(self, count: int, what: str, nodes: tuple[str, ...] = NODES) -> None:
        marks = {n: self.cycles(n) for n in nodes}
        wait_until(lambda: all(self.cycles(n) >= marks[n] + count for n in nodes), 60, what)


def start_production(net: Net) -> subprocess.Popen[bytes]:
    www = net.root / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("ok\n")
    return net.start("prod", [sys.executable, "-m", "http.server", "8080", "--bind",
                              ADDRESS["prod"], "--directory", str(www)], "production.log")


def test_s2_observer_cut_from_production_by_a_partition(net: Net) -> None:
    start_etcd(net)
    start_production(net)
    group = Group(net)
    wait_for_verdicts(net)
    group.more_cycles(2, "two cycles each")
    # n1 loses its route to production only: it still reaches the store and the others.
    net.partition("n1", f"ip daddr {ADDRESS['prod']} drop;")
    group.more_cycles(4 * FAILURES, "obs1 well past its threshold", ("n1",))
    assert group.engages() == 0
    assert group.state("n1")["state"] == "suspect"
    assert group.state("n1")["failures"] >= FAILURES
    assert "quorum not reached (1/2)" in group.status("n1")
    assert group.state("n2")["state"] == "watching"


def test_s3_observer_cut_from_everything(net: Net) -> None:
    start_etcd(net)
    production = start_production(net)
    group = Group(net)
    wait_for_verdicts(net)
    group.more_cycles(2, "two cycles each")
    # n3 is cut from everything: production, the store, the other observers.
    net.partition("n3", 'oifname "eth0" drop;')
    wait_until(lambda: "/fe-net/observers/obs3" not in (etcd_keys(net, "n1",
                                                                   "/fe-net/observers/") or
                                                         ["/fe-net/observers/obs3"]),
               30, "obs3's verdict to vanish with its lease")
    # Production really goes down: the two connected observers agree, one engages, once.
    production.terminate()
    production.wait(10)
    wait_until(lambda: group.engages() >= 1, 60, "an engage by obs1 or obs2")
    group.more_cycles(2 * FAILURES, "more cycles on the connected observers", ("n1", "n2"))
    group.more_cycles(2, "more cycles on the cut observer", ("n3",))
    assert group.engages() == 1
    assert group.engaged() in (["n1"], ["n2"])
    assert group.state("n3")["state"] == "suspect"
    assert "quorum store unreachable" in group.status("n3")
