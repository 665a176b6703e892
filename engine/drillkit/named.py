"""A throwaway BIND 9 on 127.0.0.1: a primary that takes TSIG-keyed updates, and a secondary.

    lab = DnsLab(directory, zone="example.test",
                 records={"goc": ("CNAME", "prod.example.org.")})
    lab.start()                    # primary, relay and secondary listening on free ports
    lab.primary.port               # where nsupdate steps send (127.0.0.1:<port>)
    lab.servers                    # ["127.0.0.1:<primary>", "127.0.0.1:<secondary>"]
    lab.update_key_file            # key "update-key": may change the names in `records`
    lab.other_key_file             # key "other-key": may change only `other.<zone>`
    lab.hold_transfers()           # the secondary lags: its refreshes stall in the relay
    lab.release_transfers()        # … and catch up
    lab.primary.rndc("freeze", "example.test")
    lab.primary.stop(); lab.primary.start()     # an outage of the primary, same port
    lab.stop()                     # everything stopped; only `directory` was written

The secondary reaches the primary only through a small TCP relay (`Relay`) that can be
paused, so a test or the drill decides when the secondary catches up. It is configured
with `tcp-only` so its SOA refresh queries go through the relay too; NOTIFY goes straight
from the primary to the secondary. Secrets (TSIG keys, the rndc key) are written in files
of mode 0600 and only ever passed to named and rndc as file names.

Used by the tests (tests/fixtures/bind.py) and by `failover-engine drill`; it imports no
test framework. Needs `named` and `rndc` (Debian: bind9, bind9-dnsutils).
"""
from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from engine.drillkit.ports import LOOPBACK, free_port  # noqa: F401 - part of this module's API

_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])


class NamedError(RuntimeError):
    """named or rndc could not be found, configured, started or controlled."""


def find_binary(name: str) -> str:
    """Path of a BIND binary (named, rndc); NamedError saying how to install it."""
    found = shutil.which(name, path=_SBIN)
    if not found:
        raise NamedError(f"{name} is not installed (Debian: apt-get install bind9 bind9-dnsutils)")
    return found


@dataclass(frozen=True)
class TsigSecret:
    """A TSIG key as BIND writes it; `text()` is the `key` clause, never logged."""

    name: str
    algorithm: str = "hmac-sha256"
    secret: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())

    def text(self) -> str:
        return (f'key "{self.name}" {{\n\talgorithm {self.algorithm};\n'
                f'\tsecret "{self.secret}";\n}};\n')

    def write(self, path: Path) -> Path:
        """Write the key file with mode 0600 (created that way, never briefly readable)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.text())
        os.chmod(path, 0o600)
        return path

    def __repr__(self) -> str:
        return f"TsigSecret(name={self.name!r}, algorithm={self.algorithm!r}, secret=<hidden>)"


class Relay:
    """A TCP relay 127.0.0.1:port → 127.0.0.1:target that can be paused.

    While paused, connections are accepted but no byte moves in either direction, so the
    client sees a server that is slow rather than gone; `release()` lets everything flow.
    """

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._open = threading.Event()
        self._open.set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        self._stopping.clear()
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    def pause(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    def stop(self) -> None:
        self._stopping.set()
        self._open.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._track(client)
        self._wait_open()
        try:
            upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        client.settimeout(None)
        self._track(upstream)
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        self._pump(upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self._wait_open()  # paused: hold the bytes until released
                if self._stopping.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)

    def _wait_open(self) -> None:
        while not self._open.wait(0.2):
            if self._stopping.is_set():
                return

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class Named:
    """One named process with its own config, working dir, port and rndc control port."""

    def __init__(self, name: str, directory: Path, config: str, port: int, rndc_port: int,
                 rndc_key: TsigSecret) -> None:
        self.name = name
        self.directory = directory
        self.port = port
        self.rndc_port = rndc_port
        self.config_file = directory / "named.conf"
        self.log_file = directory / "named.log"
        self._rndc_conf = directory / "rndc.conf"
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(config)
        fd = os.open(self._rndc_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(rndc_key.text())
            handle.write(
                f'options {{ default-server {LOOPBACK}; default-port {rndc_port};'
                f' default-key "{rndc_key.name}"; }};\n'
            )

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start named in the foreground (-g: logs to named.log) and wait until it answers."""
        if self.running:
            return
        command = [find_binary("named"), "-g", "-4", "-n", "1", "-c", str(self.config_file)]
        if os.geteuid() == 0:
            command += ["-u", "root"]  # keep file ownership in the temp dir simple
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise NamedError(f"{self.name} named exited at start; see {self.log_file}:\n"
                                 + self.log_tail())
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise NamedError(f"{self.name} named did not answer within {timeout}s; see {self.log_file}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop named (SIGTERM, then SIGKILL after `timeout`); the ports are free afterwards."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def rndc(self, *args: str, timeout: float = 10.0) -> str:
        """Run `rndc ARGS` against this named (its own control port and key file)."""
        result = subprocess.run(
            [find_binary("rndc"), "-c", str(self._rndc_conf), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if result.returncode != 0:
            raise NamedError(f"rndc {' '.join(args)} on {self.name}: "
                             f"{(result.stderr or result.stdout).strip()}")
        return result.stdout

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _answers(self) -> bool:
        # rndc answering means the control channel is up, which named opens after loading zones.
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                pass
            with socket.create_connection((LOOPBACK, self.rndc_port), timeout=0.2):
                return True
        except OSError:
            return False


def _options(directory: Path, port: int, extra: str = "") -> str:
    return f"""options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    managed-keys-directory "{directory}";
    listen-on port {port} {{ {LOOPBACK}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ {LOOPBACK}; }};
    allow-transfer {{ {LOOPBACK}; }};
    notify-delay 0;
    startup-notify-rate 100;
    notify-rate 100;
    serial-query-rate 100;
    {extra}
}};
"""


def _controls(port: int, key: TsigSecret) -> str:
    return (f'controls {{ inet {LOOPBACK} port {port} allow {{ {LOOPBACK}; }}'
            f' keys {{ "{key.name}"; }}; }};\n')


class DnsLab:
    """A primary (and optional secondary behind a pausable relay) serving `zone` on loopback."""

    def __init__(self, directory: str | Path, *, zone: str = "example.test",
                 records: Mapping[str, tuple[str, str]] | None = None,
                 other_name: str = "other", extra_zones: Sequence[str] = (),
                 secondary: bool = True, ttl: int = 60) -> None:
        self.directory = Path(directory)
        self.zone = zone.rstrip(".")
        self.records = dict(records or {"goc": ("CNAME", "prod.example.org.")})
        self.other_name = other_name
        self.extra_zones = [z.rstrip(".") for z in extra_zones]
        self.with_secondary = secondary
        self.ttl = ttl
        self.update_key = TsigSecret("update-key")
        self.other_key = TsigSecret("other-key")
        self._rndc_key = TsigSecret("rndc-key")
        self.primary: Named | None = None
        self.secondary: Named | None = None
        self.relay: Relay | None = None
        self.update_key_file = self.directory / "update-key.key"
        self.other_key_file = self.directory / "other-key.key"
        self.revoked: set[str] = set()  # labels whose update-key grant is taken away

    # -- names -------------------------------------------------------------------------
    def fqdn(self, label: str) -> str:
        """`goc` → `goc.example.test.`"""
        return f"{label}.{self.zone}."

    @property
    def servers(self) -> list[str]:
        """`host:port` of every authoritative server, primary first."""
        found = [self.primary.address] if self.primary else []
        if self.secondary:
            found.append(self.secondary.address)
        return found

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> DnsLab:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.update_key.write(self.update_key_file)
        self.other_key.write(self.other_key_file)
        primary_port, primary_rndc = free_port(), free_port()
        secondary_port = free_port() if self.with_secondary else None
        primary_dir = self.directory / "primary"
        primary_dir.mkdir(exist_ok=True)
        for zone in [self.zone, *self.extra_zones]:
            (primary_dir / f"{zone}.db").write_text(self._zone_text(zone))
        self.primary = Named("primary", primary_dir, self._primary_conf(
            primary_dir, primary_port, primary_rndc, secondary_port), primary_port, primary_rndc,
            self._rndc_key)
        try:
            self.primary.start()
            if secondary_port is not None:
                self.relay = Relay(primary_port)
                self.relay.start()
                secondary_dir = self.directory / "secondary"
                secondary_rndc = free_port()
                self.secondary = Named("secondary", secondary_dir, self._secondary_conf(
                    secondary_dir, secondary_port, secondary_rndc), secondary_port, secondary_rndc,
                    self._rndc_key)
                self.secondary.start()
                self.wait_serials_match()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in (self.secondary, self.primary):
            if server is not None:
                server.stop()
        if self.relay is not None:
            self.relay.stop()

    def __enter__(self) -> DnsLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the update grant ----------------------------------------------------------------
    def set_grant(self, label: str, granted: bool) -> None:
        """Give or take away update-key's grant for `label` (as a DNS admin's config
        change would): the primary's named.conf is rewritten and `rndc reload` applies it."""
        if self.primary is None:
            raise NamedError("the lab is not started")
        (self.revoked.discard if granted else self.revoked.add)(label)
        secondary_port = self.secondary.port if self.secondary is not None else None
        self.primary.config_file.write_text(self._primary_conf(
            self.primary.directory, self.primary.port, self.primary.rndc_port, secondary_port))
        self.primary.rndc("reload")

    # -- the lagging secondary ---------------------------------------------------------
    def hold_transfers(self) -> None:
        """From now on the secondary's refresh queries and transfers stall in the relay."""
        if self.relay is None:
            raise NamedError("this lab has no secondary")
        self.relay.pause()

    def release_transfers(self) -> None:
        """Let the secondary catch up, and nudge it to refresh now rather than at its timer."""
        if self.relay is None or self.secondary is None:
            raise NamedError("this lab has no secondary")
        self.relay.release()
        with contextlib.suppress(NamedError):  # NOTIFY or the refresh timer will do it
            self.secondary.rndc("refresh", self.zone)

    def serial(self, server: Named) -> int | None:
        """The zone's SOA serial on one server, asked directly (None if it does not answer)."""
        query = dns.message.make_query(f"{self.zone}.", dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD  # no recursion: ask this server for its own copy
        try:
            answer = dns.query.tcp(query, LOOPBACK, port=server.port, timeout=2)
        except (OSError, dns.exception.DNSException):
            return None
        for rrset in answer.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    def wait_serials_match(self, timeout: float = 20.0) -> None:
        """Wait until the secondary holds the primary's serial (NamedError after `timeout`)."""
        if self.primary is None or self.secondary is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            want = self.serial(self.primary)
            if want is not None and self.serial(self.secondary) == want:
                return
            time.sleep(0.05)
        raise NamedError(f"the secondary did not reach serial {self.serial(self.primary)} of "
                         f"the primary within {timeout}s; see {self.secondary.log_file}")

    # -- configuration -----------------------------------------------------------------
    def _zone_text(self, zone: str) -> str:
        lines = [
            f"$TTL {self.ttl}",
            f"@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 {self.ttl}",
            "@ IN NS ns1",
            "@ IN NS ns2",
            f"ns1 IN A {LOOPBACK}",
            f"ns2 IN A {LOOPBACK}",
        ]
        if zone == self.zone:
            lines += [f"{label} IN {rtype} {value}"
                      for label, (rtype, value) in self.records.items()]
            lines.append(f"{self.other_name} IN CNAME elsewhere.example.org.")
        return "\n".join(lines) + "\n"

    def _primary_conf(self, directory: Path, port: int, rndc_port: int,
                      secondary_port: int | None) -> str:
        notify = (f"notify explicit; also-notify {{ {LOOPBACK} port {secondary_port}; }};"
                  if secondary_port is not None else "notify no;")
        grants = "".join(
            f"        grant {self.update_key.name} name {self.fqdn(label)} CNAME A AAAA;\n"
            for label in self.records if label not in self.revoked
        )
        grants += f"        grant {self.other_key.name} name {self.fqdn(self.other_name)} ANY;\n"
        zones = (f'zone "{self.zone}" {{\n    type primary;\n'
                 f'    file "{directory}/{self.zone}.db";\n'
                 f"    {notify}\n    update-policy {{\n{grants}    }};\n}};\n")
        for extra in self.extra_zones:
            zones += (f'zone "{extra}" {{ type primary; file "{directory}/{extra}.db";'
                      " notify no; };\n")
        return (_options(directory, port) + self.update_key.text() + self.other_key.text()
                + self._rndc_key.text() + _controls(rndc_port, self._rndc_key) + zones)

    def _secondary_conf(self, directory: Path, port: int, rndc_port: int) -> str:
        assert self.relay is not None
        # tcp-only: the SOA refresh query goes over TCP too, so the relay can hold it back.
        extra = "min-refresh-time 1; min-retry-time 1;"
        return (_options(directory, port, extra) + self._rndc_key.text()
                + _controls(rndc_port, self._rndc_key)
                + f"server {LOOPBACK} {{ tcp-only yes; }};\n"
                + f'zone "{self.zone}" {{\n    type secondary;\n'
                + f"    primaries {{ {LOOPBACK} port {self.relay.port}; }};\n"
                + f'    file "{directory}/{self.zone}.db";\n'
                + f"    allow-notify {{ {LOOPBACK}; }};\n    notify no;\n}};\n")
