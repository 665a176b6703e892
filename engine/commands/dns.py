"""`dns show`: what every authoritative server answers for the policy's alias right now.

The command builds the policy's own `nsupdate` and `wait_dns` steps (through
`actions.registry.build_step`) and asks them what they read, so it never re-reads their
options differently:
- each distinct name/type of an `nsupdate` step is an alias; that step's server is the
  zone's primary;
- the servers shown are the primary, then exactly those the policy's `wait_dns` steps for
  that name wait on (`WaitDns.servers()`: their `servers`, or the zone's NS records found
  by `actions.dnsread.name_servers`). Without a `wait_dns` step for the name, the same
  lookup gives the zone's NS records, asked on the primary's port.
Each server is asked directly, without recursion (`actions.dnsread`), for the record and
for the zone's SOA serial (a lagging secondary has an older one). Values the policy knows
are labelled: the engage step's `set` is "standby", the restore step's `set` "production".

    goc.egi.eu. CNAME (zone egi.eu., primary ns.muni.cz)
      ns.muni.cz (primary)                serial 2024061103  gocdb.hartree.stfc.ac.uk.  (standby)
      ns2.example.org. (192.0.2.53)       serial 2024061103  gocdb.hartree.stfc.ac.uk.  (standby)
    all 2 servers agree

A primary that no `wait_dns` step waits on is marked "(primary, not waited on)".
Exit 0 when every server answers and all agree, 1 otherwise (also when the servers to
ask cannot be found), 2 when the policy has no nsupdate step.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from actions.dnsread import (
    IO_TIMEOUT,
    Answer,
    Server,
    name_servers,
    read_record,
    show,
    soa_serial,
)
from actions.nsupdate import NsUpdate
from actions.registry import build_step
from actions.wait_dns import WaitDns
from engine.commands import load
from engine.errors import StepError, UsageError
from engine.policy import Policy, Step


@dataclass
class Alias:
    """One record the policy repoints: its first nsupdate step, the wait_dns steps for the
    same record, and the values the policy knows by name."""

    update: NsUpdate
    waits: list[tuple[str, WaitDns]] = field(default_factory=list)  # (where, step)
    labels: dict[tuple[str, ...], str] = field(default_factory=dict)

    @property
    def primary(self) -> Server:
        """The server the nsupdate step reads and updates."""
        return self.update.server


def _steps(policy: Policy) -> list[tuple[str, Step]]:
    found = [("engage", s) for s in policy.engage] + [("restore", s) for s in policy.restore]
    for job in policy.jobs.values():
        found += [(f"job {job.name}", s) for s in job.steps]
    return found


def aliases(policy: Policy) -> list[Alias]:
    """The distinct (name, type) pairs of the policy's nsupdate steps, in policy order, each
    with the wait_dns steps for the same name and type."""
    found: dict[tuple[str, str], Alias] = {}
    steps = _steps(policy)
    for phase, step in steps:
        if step.kind != "nsupdate":
            continue
        update = build_step("nsupdate", step.params)
        assert isinstance(update, NsUpdate)
        alias = found.setdefault((update.name.to_text(), update.rdtype), Alias(update))
        label = "standby" if phase == "engage" else "production" if phase == "restore" else phase
        alias.labels.setdefault(update.want, label)
        if update.expect is not None and phase == "engage":
            alias.labels.setdefault(update.expect, "production")
    for phase, step in steps:
        if step.kind != "wait_dns":
            continue
        wait = build_step("wait_dns", step.params)
        assert isinstance(wait, WaitDns)
        waited = found.get((wait.name.to_text(), wait.rdtype))
        if waited is not None:
            waited.waits.append((step.where or phase, wait))
    return list(found.values())


def servers(alias: Alias) -> tuple[list[Server], list[str], bool]:
    """The servers to show, the primary first; lines saying why some could not be found;
    and whether a wait_dns step waits on the primary (True when there is no wait_dns step).

    A waited-on server that is the primary is shown once, under the name wait_dns gives it.
    """
    problems: list[str] = []
    others: list[Server] = []
    if alias.waits:
        for where, wait in alias.waits:
            try:
                others += wait.servers()
            except StepError as exc:
                problems.append(f"wait_dns ({where}): {exc}")
    else:
        try:
            others = name_servers(alias.update.zone, alias.primary.port)
        except StepError as exc:
            problems.append(str(exc))
    shown = [alias.primary]
    primary_waited = not alias.waits
    for server in others:
        if server.same(alias.primary):
            if not primary_waited:
                shown[0] = server
            primary_waited = True
        elif not any(server.same(known) for known in shown):
            shown.append(server)
    return shown, problems, primary_waited


def _serial(server: Server, alias: Alias) -> str:
    try:
        return f"serial {soa_serial(server, alias.update.zone, IO_TIMEOUT)}"
    except StepError:
        return "serial ?"


def show_alias(alias: Alias, out: list[str]) -> bool:
    """Append the report lines for one alias; True when every server answers the same."""
    out.append(f"{alias.update.name} {alias.update.rdtype} (zone {alias.update.zone}, "
               f"primary {alias.primary})")
    found, problems, primary_waited = servers(alias)
    out.extend(f"  {line}" for line in problems)
    answers: dict[Server, Answer | str] = {}
    serials: dict[Server, str] = {}
    for server in found:
        try:
            answers[server] = read_record(server, alias.update.name, alias.update.rdtype,
                                          IO_TIMEOUT)
            serials[server] = _serial(server, alias)
        except StepError as exc:
            answers[server] = f"no answer: {exc}"
            serials[server] = ""
    names = {s: str(s) for s in found}
    names[found[0]] += " (primary)" if primary_waited else " (primary, not waited on)"
    width = max(len(n) for n in names.values())
    serial_width = max(len(s) for s in serials.values())
    for server, answer in answers.items():
        if isinstance(answer, Answer):
            label = alias.labels.get(answer.values)
            text = show(answer.values) + (f"  ({label})" if label else "")
            out.append(f"  {names[server]:<{width}}  {serials[server]:<{serial_width}}  {text}")
        else:
            out.append(f"  {names[server]:<{width}}  {answer}")
    values = {a.values for a in answers.values() if isinstance(a, Answer)}
    silent = sum(1 for a in answers.values() if not isinstance(a, Answer))
    if silent:
        out.append(f"{silent} of {len(found)} servers did not answer"
                   + (f"; the others give {len(values)} different answers" if len(values) > 1
                      else ""))
    elif len(values) > 1:
        out.append(f"servers disagree: {len(values)} different answers from {len(found)} "
                   "servers")
    else:
        out.append(f"all {len(found)} servers agree")
    return not silent and not problems and len(values) == 1


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
