"""Reading DNS, shared by `nsupdate`, `wait_dns` and `failover-engine dns show`.

One place for every read the engine makes:
- `Server` / `parse_server`: a server to ask directly, as written in a policy
  (`ns.example.org`, `192.0.2.1:5353`, `[2001:db8::1]:53`); `Server.address()` resolves a
  name through the system (the one place a server name becomes an address);
- `read_record(server, name, type)`: one server's own answer for name/type (TCP, no
  recursion, authoritative or an error);
- `soa_serial(server, zone)`: the zone's SOA serial on one server (a lagging secondary
  has an older one);
- `find_zone(name)` and `name_servers(zone, port)`: the one name-server lookup: the zone's
  NS records, each resolved to an address, as servers to ask. Both use the system's
  resolver (`dns.resolver.get_default_resolver()`) unless a resolver is passed, so
  `wait_dns` and `dns show` always find the same servers.
- `canonical`, `absolute`, `show`: values and names written the way a server writes them.

Every failure is a StepError naming the server, the name and the type; network failures
and SERVFAIL are retryable, a server that is not authoritative is not.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from engine.errors import StepError

IO_TIMEOUT = 10.0  # one network exchange; a step's own `timeout` caps it further


# -- servers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Server:
    """A DNS server to ask directly: `host` as written (name or address) and its port."""

    host: str
    port: int = 53
    label: str = field(default="", compare=False)  # e.g. the NS name an address came from

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = host if self.port == 53 else f"{host}:{self.port}"
        return f"{self.label} ({where})" if self.label else where

    def address(self) -> str:
        """The IP address to send to: `host` itself, or its first address from the system."""
        try:
            return str(ipaddress.ip_address(self.host))
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise StepError(f"DNS server {self.host}: cannot resolve its name ({exc.strerror})",
                            retryable=True) from None
        return str(infos[0][4][0])

    def same(self, other: Server) -> bool:
        """The same server written twice (`::1` and `0::1`, `NS.example.` and `ns.example`);
        a name and its address count as different servers."""
        if self.port != other.port:
            return False
        try:
            return ipaddress.ip_address(self.host) == ipaddress.ip_address(other.host)
        except ValueError:
            return self.host.rstrip(".").lower() == other.host.rstrip(".").lower()


def parse_server(text: str, port: int | None = None) -> Server:
    """`ns.example.org`, `192.0.2.1`, `192.0.2.1:5353`, `[2001:db8::1]:5353`, `2001:db8::1`.

    An explicit `port` wins over the default 53 but not over a port written in `text`.
    """
    text = str(text).strip()
    host, written = text, None
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        host = inside
        if rest.startswith(":"):
            written = rest[1:]
    elif text.count(":") == 1:
        host, written = text.split(":")
    if not host:
        raise StepError(f"server {text!r}: no host; write a name or address, optionally :port")
    if written is not None:
        if not written.isdigit() or not 0 < int(written) < 65536:
            raise StepError(f"server {text!r}: {written!r} is not a port number")
        return Server(host, int(written))
    return Server(host, int(port) if port else 53)


# -- names and values ---------------------------------------------------------------------
def absolute(name: str) -> dns.name.Name:
    """A name as written, always absolute (`goc.egi.eu` and `goc.egi.eu.` are the same)."""
    try:
        return dns.name.from_text(str(name), origin=dns.name.root)
    except dns.exception.DNSException as exc:
        raise StepError(f"{name!r} is not a valid DNS name ({exc})") from None


def canonical(rdtype: str, values: str | Sequence[str]) -> tuple[str, ...]:
    """Values as the server writes them (absolute names, canonical addresses), sorted."""
    items = [values] if isinstance(values, str) else list(values)
    out = set()
    for item in items:
        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, str(item),
                                        origin=dns.name.root, relativize=False)
        except dns.exception.DNSException as exc:
            raise StepError(f"{item!r} is not a valid {rdtype} value ({exc})") from None
        # Through the wire form and back: dnspython < 2.4 (Debian 12's 2.3) keeps an
        # address as typed (2001:db8:0::1) where the server writes it canonically.
        wire = rdata.to_wire() or b""
        rdata = dns.rdata.from_wire(dns.rdataclass.IN, rdata.rdtype, wire, 0, len(wire))
        out.add(rdata.to_text())
    return tuple(sorted(out))


def show(values: Sequence[str]) -> str:
    """Values for a message: `a, b`, or `(nothing)`."""
    return ", ".join(values) if values else "(nothing)"


# -- asking one server --------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """What one server answers for name/type: sorted values (empty: none) and the TTL."""

    values: tuple[str, ...]
    ttl: int | None = None

    def __str__(self) -> str:
        return show(self.values)


def _ask(server: Server, name: dns.name.Name, rdtype: str, timeout: float
         ) -> dns.message.Message:
    """One query to `server` itself (TCP, no recursion), its authoritative answer or a
    StepError. NXDOMAIN counts as an answer (with nothing in it)."""
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    try:
        response = dns.query.tcp(query, server.address(), timeout=timeout, port=server.port)
    except dns.exception.Timeout:
        raise StepError(f"timeout: {server} did not answer a query for {name} {rdtype} within "
                        f"{timeout:.0f}s", retryable=True) from None
    except ConnectionRefusedError:
        raise StepError(f"connection refused by {server} (TCP) while reading "
                        f"{name} {rdtype}: is named running there?", retryable=True) from None
    except OSError as exc:
        raise StepError(f"cannot reach {server} to read {name} {rdtype}: {exc.strerror or exc}",
                        retryable=True) from None
    except dns.exception.DNSException as exc:
        raise StepError(f"bad answer from {server} for {name} {rdtype}: {exc}",
                        retryable=True) from None
    rcode = response.rcode()
    if rcode == dns.rcode.SERVFAIL:
        raise StepError(f"SERVFAIL: {server} failed to answer {name} {rdtype}; retrying",
                        retryable=True)
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not response.flags & dns.flags.AA:
        raise StepError(f"NOTAUTH: {server} is not authoritative for {name} (it answered "
                        f"{dns.rcode.to_text(rcode)} without authority); point `server` at the "
                        "zone's primary and check `zone`")
    return response


def read_record(server: Server, name: dns.name.Name, rdtype: str,
                timeout: float = IO_TIMEOUT) -> Answer:
    """Ask `server` directly (TCP, no recursion) for name/type; StepError on any failure.

    NXDOMAIN and NODATA are an empty answer. A server that refuses or answers without the
    AA flag is not authoritative for the name, which is an error, not an empty answer.
    """
    response = _ask(server, name, rdtype, timeout)
    wanted = dns.rdatatype.from_text(rdtype)
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == wanted:
            return Answer(tuple(sorted(rd.to_text() for rd in rrset)), rrset.ttl)
    return Answer(())


def soa_serial(server: Server, zone: dns.name.Name, timeout: float = IO_TIMEOUT) -> int:
    """The serial of `zone` on `server` itself; StepError when it has no SOA for the zone."""
    response = _ask(server, zone, "SOA", timeout)
    for rrset in response.answer:
        if rrset.name == zone and rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    raise StepError(f"{server} has no SOA record for zone {zone}; check `zone`")


# -- the zone's name servers --------------------------------------------------------------
def find_zone(name: dns.name.Name, resolver: dns.resolver.Resolver | None = None
              ) -> dns.name.Name:
    """The zone that holds `name`, from the resolver (default: the system's)."""
    try:
        return dns.resolver.zone_for_name(name, resolver=resolver)
    except dns.exception.DNSException as exc:
        raise StepError(f"cannot find the zone of {name} ({exc}); set `zone` or `servers`",
                        retryable=True) from None


def name_servers(zone: dns.name.Name, port: int = 53,
                 resolver: dns.resolver.Resolver | None = None) -> list[Server]:
    """The zone's NS names, each resolved to an address, as servers to ask on `port`.

    The one name-server lookup: NS records and their A/AAAA come from `resolver` (default:
    the system's). Two NS names with one address give one server (labelled with the
    first name, sorted); an NS name without any address is an error.
    """
    resolver = resolver or dns.resolver.get_default_resolver()
    try:
        targets = sorted({rd.target for rd in resolver.resolve(zone, "NS")})
    except dns.exception.DNSException as exc:
        raise StepError(f"cannot find the name servers of zone {zone} ({exc}); "
                        "list them in `servers`", retryable=True) from None
    servers: list[Server] = []
    for target in targets:
        addresses: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                addresses += sorted(rd.to_text() for rd in resolver.resolve(target, rdtype))
            except dns.exception.DNSException:
                continue
        if not addresses:
            raise StepError(f"name server {target} of zone {zone} has no address; "
                            "list the servers in `servers`", retryable=True)
        server = Server(addresses[0], port, label=target.to_text())
        if server not in servers:  # two NS names for one address: ask it once
            servers.append(server)
    return servers
