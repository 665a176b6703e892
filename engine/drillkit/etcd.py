"""A throwaway 3-member etcd cluster (Debian's etcd-server 3.4) on loopback, for the drill.

    lab = EtcdLab(work / "etcd").start()   # EtcdMissing when no `etcd` binary is on PATH
    lab.endpoints                          # ["http://127.0.0.1:<port>", …]
    lab.stop()                             # every member killed; the data dirs stay in work

Each member listens on its own free ports on 127.0.0.1 (clients and peers, plain HTTP),
keeps its data under the directory it is given, logs to `m<i>.log` there, and runs with
`--pre-vote` (a rejoining member does not force an election) and short heartbeats, so
the cluster is ready within a second or two. Members run in their own process groups
and are SIGKILLed by `stop()`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.drillkit.ports import LOOPBACK, free_port
from engine.errors import UsageError

PACKAGE = "etcd-server"  # the Debian package that ships /usr/bin/etcd


class EtcdMissing(UsageError):
    """No etcd binary: exit 2, naming the Debian package (a missing dependency)."""


class EtcdLabError(RuntimeError):
    """The cluster did not come up (the message carries the tail of the members' logs)."""


def find_etcd() -> str:
    """The `etcd` binary on PATH; EtcdMissing naming the package and bin/bootstrap."""
    found = shutil.which("etcd")
    if found is None:
        raise EtcdMissing(f"etcd is not installed (no `etcd` on PATH): install the Debian "
                          f"package {PACKAGE} (bin/bootstrap does, as root)")
    return found


def member_args(binary: str, name: str, data_dir: Path, client_url: str, peer_url: str,
                cluster: str, token: str, *, new: bool = True) -> list[str]:
    """The command line of one member of a throwaway cluster: `--pre-vote` (a rejoining
    member does not force an election) and 50 ms heartbeats with a 500 ms election timeout,
    so a cluster is ready, or elects a new leader, within a second or so. `cluster` is the
    `--initial-cluster` list (`name=peer_url,…`). The drill, the tests' loopback cluster
    and their network-namespace cluster all start members with it."""
    return [binary, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", cluster, "--initial-cluster-token", token,
            "--initial-cluster-state", "new" if new else "existing", "--pre-vote",
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--logger", "zap", "--log-outputs", "stderr"]


@dataclass
class _Member:
    name: str
    client_port: int
    peer_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"


@dataclass
class EtcdLab:
    """Three etcd members under `root`; see the module docstring."""

    root: Path
    size: int = 3
    binary: str | None = None
    members: list[_Member] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        """The members' client URLs."""
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdLab:
        """Start every member and wait until a linearizable read works on each."""
        binary = self.binary or find_etcd()
        self.root.mkdir(parents=True, exist_ok=True)
        self.members = [_Member(f"m{i}", free_port(), free_port()) for i in range(self.size)]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        try:
            for m in self.members:
                argv = member_args(binary, m.name, self.root / m.name, m.endpoint, m.peer_url,
                                   cluster, f"drill-{os.getpid()}-{self.root.name}")
                with (self.root / f"{m.name}.log").open("ab") as log:
                    # Own process group: a kill reaches this member only, not the drill.
                    m.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                 stderr=log, start_new_session=True)
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        from engine.etcd import EtcdClient, EtcdError

        deadline = time.monotonic() + timeout
        pending = list(self.members)
        while pending:
            for m in list(pending):
                if m.process is not None and m.process.poll() is not None:
                    raise EtcdLabError(f"etcd member {m.name} exited {m.process.returncode}: "
                                       + self._tail(m))
                try:
                    EtcdClient([m.endpoint], timeout=1.0).range("drill-health-probe")
                    pending.remove(m)
                except EtcdError:
                    pass
            if pending and time.monotonic() > deadline:
                raise EtcdLabError(f"etcd not ready after {timeout:g}s: "
                                   + " | ".join(self._tail(m) for m in pending))
            if pending:
                time.sleep(0.1)

    def _tail(self, member: _Member) -> str:
        try:
            lines = (self.root / f"{member.name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " / ".join(lines[-2:])[-400:]

    def stop(self) -> None:
        """SIGKILL every member still running and reap it."""
        for m in self.members:
            if m.process is not None and m.process.poll() is None:
                os.killpg(m.process.pid, signal.SIGKILL)
        for m in self.members:
            if m.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.process.wait(10)
            m.process = None
