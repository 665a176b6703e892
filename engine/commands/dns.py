"""`dns show`: what every authoritative server answers for the policy's alias right now.

The alias, its zone and the zone's primary come from the policy's `nsupdate` steps. The
servers are the primary plus, when a `wait_dns` step for the same name lists `servers`,
those; otherwise the zone's NS records as the primary itself answers them (each NS name
resolved through the primary's own data first, then the system resolver, and asked on the
primary's port). Each server is asked directly, without recursion. Values the policy
knows are labelled: the engage step's `set` is "standby", the restore step's `set`
"production".

    goc.egi.eu. CNAME (zone egi.eu., primary ns.muni.cz)
      ns.muni.cz        gocdb.hartree.stfc.ac.uk.  (standby)
      ns2.example.org   gocdb.hartree.stfc.ac.uk.  (standby)
    all 2 servers agree

Exit 0 when every server answers and all agree, 1 otherwise, 2 when the policy has no
nsupdate step.
"""
from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype

from actions.nsupdate import (
    IO_TIMEOUT,
    Answer,
    Server,
    absolute,
    canonical,
    parse_server,
    read_record,
    show,
)
from engine.commands import load
from engine.errors import StepError, UsageError
from engine.policy import Policy, Step


@dataclass
class Alias:
    """One record the policy repoints, with what it knows about it."""

    name: dns.name.Name
    rdtype: str
    zone: dns.name.Name
    primary: Server
    labels: dict[tuple[str, ...], str] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)


def _steps(policy: Policy) -> list[tuple[str, Step]]:
    found = [("engage", s) for s in policy.engage] + [("restore", s) for s in policy.restore]
    for job in policy.jobs.values():
        found += [(f"job {job.name}", s) for s in job.steps]
    return found


def aliases(policy: Policy) -> list[Alias]:
    """The distinct (name, type) pairs of the policy's nsupdate steps, in policy order."""
    found: dict[tuple[dns.name.Name, str], Alias] = {}
    steps = _steps(policy)
    for phase, step in steps:
        if step.kind != "nsupdate":
            continue
        p = step.params
        rdtype = str(p.get("type", "CNAME")).upper()
        name = absolute(p["name"])
        alias = found.setdefault((name, rdtype), Alias(
            name, rdtype, absolute(p["zone"]), parse_server(p["server"], p.get("port"))))
        label = "standby" if phase == "engage" else "production" if phase == "restore" else phase
        alias.labels.setdefault(canonical(rdtype, p["set"]), label)
        if "expect" in p and phase == "engage":
            alias.labels.setdefault(canonical(rdtype, p["expect"]), "production")
    for _phase, step in steps:
        if step.kind != "wait_dns" or not step.params.get("servers"):
            continue
        for alias in found.values():
            if absolute(step.params["name"]) == alias.name:
                port = int(step.params.get("port", 53))
                alias.servers += [parse_server(s, port) for s in step.params["servers"]]
    return list(found.values())


def _ask(server: Server, name: dns.name.Name, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    return dns.query.tcp(query, server.address(), timeout=IO_TIMEOUT, port=server.port)


def ns_servers(alias: Alias) -> list[tuple[str, Server]]:
    """The zone's NS names as the primary answers them: (NS name, server to ask)."""
    try:
        response = _ask(alias.primary, alias.zone, "NS")
    except (OSError, dns.exception.DNSException, StepError) as exc:
        raise StepError(f"cannot ask the primary {alias.primary} for the NS records of "
                        f"{alias.zone}: {exc}", retryable=True) from None
    names = sorted({rd.target for rrset in response.answer
                    if rrset.rdtype == dns.rdatatype.NS for rd in rrset})
    servers = []
    for ns in names:
        address = ns.to_text()
        try:  # glue or in-zone address first: the primary knows its own zone's servers
            glue = _ask(alias.primary, ns, "A")
            addresses = [rd.to_text() for rrset in glue.answer
                         if rrset.rdtype == dns.rdatatype.A for rd in rrset]
            if addresses:
                address = addresses[0]
        except (OSError, dns.exception.DNSException, StepError):
            pass
        server = Server(address, alias.primary.port)
        servers.append((ns.to_text() if address == ns.to_text() else f"{ns} ({server})", server))
    return servers


def _label(server: Server, alias: Alias, names: dict[Server, str]) -> str:
    text = names.get(server, str(server))
    return f"{text} (primary)" if server == alias.primary else text


def show_alias(alias: Alias, out: list[str]) -> bool:
    """Append the report lines for one alias; True when every server answers the same."""
    out.append(f"{alias.name} {alias.rdtype} (zone {alias.zone}, primary {alias.primary})")
    names: dict[Server, str] = {}
    servers = [alias.primary]
    extra = [(str(s), s) for s in alias.servers]
    if not extra:
        try:
            extra = ns_servers(alias)
        except StepError as exc:
            out.append(f"  {exc}")
    for text, server in extra:
        if not any(_same(server, known) for known in servers):
            servers.append(server)
            names[server] = text
    answers: dict[Server, Answer | str] = {}
    for server in servers:
        try:
            answers[server] = read_record(server, alias.name, alias.rdtype, IO_TIMEOUT)
        except StepError as exc:
            answers[server] = f"no answer: {exc}"
    width = max(len(_label(s, alias, names)) for s in servers)
    for server, answer in answers.items():
        if isinstance(answer, Answer):
            label = alias.labels.get(answer.values)
            text = show(answer.values) + (f"  ({label})" if label else "")
        else:
            text = answer
        out.append(f"  {_label(server, alias, names):<{width}}  {text}")
    values = {a.values for a in answers.values() if isinstance(a, Answer)}
    silent = sum(1 for a in answers.values() if not isinstance(a, Answer))
    if silent:
        out.append(f"{silent} of {len(servers)} servers did not answer"
                   + (f"; the others give {len(values)} different answers" if len(values) > 1
                      else ""))
    elif len(values) > 1:
        out.append(f"servers disagree: {len(values)} different answers from {len(servers)} "
                   "servers")
    else:
        out.append(f"all {len(servers)} servers agree")
    return not silent and len(values) == 1


def _same(a: Server, b: Server) -> bool:
    """The same server written twice (a name and its address count as different)."""
    if a.port != b.port:
        return False
    try:
        return ipaddress.ip_address(a.host) == ipaddress.ip_address(b.host)
    except ValueError:
        return a.host.rstrip(".").lower() == b.host.rstrip(".").lower()


def main(args: argparse.Namespace) -> int:
    policy = load(args)
    found = aliases(policy)
    if not found:
        raise UsageError(f"{policy.path}: the policy has no nsupdate step, so no DNS alias "
                         "to show")
    out: list[str] = []
    ok = True
    for alias in found:
        ok = show_alias(alias, out) and ok
    print("\n".join(out))
    return 0 if ok else 1
