"""A loopback world for the benchmarks: HTTPS production, guard, SMTP sink, BIND, a policy.

`LoopbackWorld(directory, dns=True).start()` starts the drillkit servers on free ports
and `write_policy()` renders a drill-like policy whose engage is exactly the five
operations of the engage benchmark (notify, check_dump_age, disable_cron, nsupdate, lock)
and whose probes point at the loopback HTTPS server. `reset()` puts the world back
between two engages: cron file back, DNS record back, lock and state removed.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ZONE = "bench.test"
NAME = f"www.{ZONE}."
PRODUCTION = f"production.{ZONE}."
STANDBY = f"standby.{ZONE}."


class LoopbackWorld:
    """The servers and files one benchmark needs; `stop()` stops everything it started."""

    def __init__(self, directory: Path, *, dns: bool = True, smtp: bool = True,
                 https_in_child: bool = False, secondary: bool = False) -> None:
        self.directory = directory
        self.secondary = secondary  # a BIND secondary fed by NOTIFY/IXFR from the primary
        self.with_dns = dns
        self.with_smtp = smtp
        # A monitor measured in this process must not share its GIL with the servers.
        self.https_in_child = https_in_child
        self.child: subprocess.Popen | None = None
        self.pki: Any = None
        self.production: Any = None
        self.guard: Any = None
        self.sink: Any = None
        self.lab: Any = None
        self.tsig = directory / "secrets" / "update-key.key"
        self.cron = directory / "cron.d" / "failover-engine-bench"
        self.status_log = directory / "import.log"

    def start(self) -> LoopbackWorld:
        from engine.drillkit.https import HttpsServer
        from engine.drillkit.pki import make_pki

        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.pki = make_pki(self.directory / "pki")
            if self.https_in_child:
                self._start_child()
            else:
                self.production = HttpsServer(cert=self.pki.server.cert, key=self.pki.server.key,
                                              client_ca=self.pki.ca.cert,
                                              routes={"/health": (200, "OK")}).start()
                self.guard = HttpsServer(cert=None, key=None, routes={"/": (200, "OK")}).start()
            if self.with_smtp:
                from engine.drillkit.smtp import SmtpSink

                self.sink = SmtpSink().start()
            if self.with_dns:
                from engine.drillkit.named import DnsLab

                self.lab = DnsLab(self.directory / "dns", zone=ZONE, secondary=self.secondary,
                                  records={"www": ("CNAME", PRODUCTION)}).start()
                self.tsig.parent.mkdir(mode=0o700, exist_ok=True)
                shutil.copy(self.lab.update_key_file, self.tsig)
                self.tsig.chmod(0o600)
            else:  # a real key file, for the host checks; no server will see it
                from engine.drillkit.named import TsigSecret

                self.tsig.parent.mkdir(mode=0o700, exist_ok=True)
                TsigSecret("update-key").write(self.tsig)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in (self.lab, self.sink, self.guard, self.production):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        if self.child is not None:
            child, self.child = self.child, None
            with contextlib.suppress(Exception):
                child.stdin.close()  # type: ignore[union-attr]
                child.wait(timeout=10)
            if child.poll() is None:
                child.kill()
                child.wait()

    def _start_child(self) -> None:
        pki = self.pki
        self.child = subprocess.Popen(
            [sys.executable, "-m", "bench.world", str(pki.server.cert), str(pki.server.key),
             str(pki.ca.cert)], cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.child.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the HTTPS server process did not start")
        ports = json.loads(line)
        self.production = _Remote("https", ports["production"])
        self.guard = _Remote("http", ports["guard"])
    @property
    def dns_port(self) -> int:
        return int(self.lab.primary.port) if self.lab is not None else 53

    def write_policy(self, path: Path, *, interval: str = "10m", state_dir: str = "state",
                     extra_engage: list[dict] | None = None) -> Path:
        """Render the benchmark policy to `path` (relative paths resolve next to it)."""
        smtp_port = self.sink.port if self.sink is not None else 25
        policy: dict[str, Any] = {
            "version": 1,
            "name": "bench",
            "state_dir": state_dir,
            "secrets": {"tsig": str(self.tsig)},
            "notify": {"email": {"smtp": {"host": "127.0.0.1", "port": smtp_port},
                                 "from": "failover-engine@bench.test",
                                 "to": ["admins@bench.test"], "subject": "bench"}},
            "probes": {
                "production": {"http": {
                    "url": self.production.url("/health"),
                    "client_cert": str(self.pki.client.cert),
                    "client_key": str(self.pki.client.key),
                    "ca_file": str(self.pki.ca.cert), "timeout": "2s"}},
                "outside": {"http": {"url": self.guard.url("/"), "timeout": "2s"}},
            },
            "monitor": {"target": "production", "guards": ["outside"], "interval": interval,
                        "failures_to_engage": 3, "rise": 2, "hold_down": "1m"},
            "engage": [
                {"notify": {"message": "Production failed 3 probes in a row; engaging."}},
                {"check_dump_age": {"status_log": str(self.status_log), "max_age": "7h",
                                    "require_last_ok": True}},
                {"disable_cron": {"file": str(self.cron)}},
                {"nsupdate": {"server": "127.0.0.1", "port": self.dns_port, "zone": f"{ZONE}.",
                              "name": NAME, "type": "CNAME", "ttl": 60, "expect": PRODUCTION,
                              "set": STANDBY, "key": "tsig", "timeout": "5s"}},
                {"lock": {"state": "present"}},
                *(extra_engage or []),
            ],
            "restore": [{"lock": {"state": "absent"}}],
        }
        path.write_text(yaml.safe_dump(policy, sort_keys=False))
        # The state dir exists on an installed host (and the engine creates it on first use).
        (path.parent / state_dir).mkdir(mode=0o700, exist_ok=True)
        self.write_inputs()
        return path

    def write_inputs(self) -> None:
        """The cron file and an import status log 30 minutes old ("completed ok")."""
        self.cron.parent.mkdir(exist_ok=True)
        self.cron.write_text("17 * * * * root failover-engine --policy bench.yaml job import\n")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(time.time() - 1800))
        self.status_log.write_text(f"{stamp} INFO: completed ok\n")

    # -- between two engages --------------------------------------------------------
    def set_record(self, value: str) -> None:
        """Point the alias at `value` with a TSIG-signed update (no prerequisite)."""
        import dns.query
        import dns.tsigkeyring
        import dns.update

        key = self.lab.update_key
        keyring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})
        update = dns.update.UpdateMessage(f"{ZONE}.", keyring=keyring)
        update.replace(NAME, 60, "CNAME", value)
        reply = dns.query.tcp(update, "127.0.0.1", port=self.dns_port, timeout=5)
        if reply.rcode() != 0:
            raise RuntimeError(f"resetting {NAME} to {value} failed: rcode {reply.rcode()}")

    def record(self, port: int | None = None) -> str:
        """The alias's target as one server answers it (default: the primary)."""
        import dns.message
        import dns.query

        reply = dns.query.udp(dns.message.make_query(NAME, "CNAME"), "127.0.0.1",
                              port=port or self.dns_port, timeout=2)
        for rrset in reply.answer:
            for rdata in rrset:
                return rdata.to_text()
        return "(none)"

    def reset(self, *parked_dirs: Path, lock: Path | None = None) -> None:
        """Cron file back, DNS record back, lock removed, parked copies removed."""
        for folder in parked_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        if lock is not None:
            lock.unlink(missing_ok=True)
        self.write_inputs()
        if self.lab is not None and self.record() != PRODUCTION:
            self.set_record(PRODUCTION)
        if self.lab is not None:
            self.wait_everywhere(PRODUCTION)

    def server_ports(self) -> list[int]:
        """The DNS servers' ports: the primary, and the secondary when there is one."""
        return [int(server.rsplit(":", 1)[1]) for server in self.lab.servers]

    def wait_everywhere(self, value: str, timeout: float = 20.0) -> float:
        """Poll every server until each answers `value`; the perf_counter moment it did."""
        deadline = time.monotonic() + timeout
        pending = self.server_ports()
        while True:
            pending = [port for port in pending if self.record(port) != value]
            if not pending:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{NAME} not {value} on port(s) {pending} after {timeout} s")
            time.sleep(0.001)


class _Remote:
    """A server running in the child process: only its address is known here."""

    def __init__(self, scheme: str, port: int) -> None:
        self.scheme, self.port = scheme, port

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Stopped with the child process."""


def _serve(cert: str, key: str, client_ca: str) -> None:
    """The child: production and guard until stdin closes; their ports as one JSON line."""
    from engine.drillkit.https import HttpsServer

    production = HttpsServer(cert=cert, key=key, client_ca=client_ca,
                             routes={"/health": (200, "OK")}).start()
    guard = HttpsServer(cert=None, key=None, routes={"/": (200, "OK")}).start()
    print(json.dumps({"production": production.port, "guard": guard.port}), flush=True)
    sys.stdin.read()
    production.stop()
    guard.stop()


if __name__ == "__main__":
    _serve(*sys.argv[1:4])
