"""wait_dns — wait until every authoritative server answers the expected value, then settle.

    restore:
      - nsupdate: {server: ns.muni.cz, zone: egi.eu, name: goc.egi.eu., ttl: 60,
                   expect: gocdb.hartree.stfc.ac.uk., set: goc.stfc.ac.uk., key: tsig}
      - wait_dns:
          name: goc.egi.eu.
          expect: goc.stfc.ac.uk.
          # type: CNAME               # default: A or AAAA when `expect` is an address, else CNAME
          # servers: ["ns.muni.cz", "192.0.2.53:5353", "[2001:db8::53]:53"]
          settle: 2h                  # after all agree, wait this long for caches (default: TTL)
          interval: 30s               # how often to ask (default 10s)
          timeout: 6h                 # give up, naming the servers that still disagree

Each server is asked directly, without recursion, over TCP. By default the servers are
the zone's NS records (the zone is `zone`, or found from the system resolver), each
resolved to an address and asked on `port` (default 53). The reading and the name-server
lookup are `actions.dnsread`'s, shared with `nsupdate` and `dns show`; `dns show` lists
exactly the servers this step waits on (`WaitDns.servers()`).

Progress lines go to the log whenever the picture changes, e.g. "1/2 servers answer
goc.stfc.ac.uk.; 127.0.0.1:5301 still answers gocdb.hartree.stfc.ac.uk.". The step
succeeds when all servers have agreed for `settle`; if one falls back out of agreement
the settle clock starts again. At the step's `timeout` it fails naming every server that
disagrees. The start time, the time all servers first agreed and the deadline are kept
in the step's progress, so after a crash or restart it continues waiting instead of
starting over (and does not wait longer than the original timeout).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from actions.dnsread import (
    IO_TIMEOUT,
    Answer,
    Server,
    absolute,
    canonical,
    find_zone,
    name_servers,
    parse_server,
    read_record,
    show,
)
from engine.durations import format_duration, parse_duration
from engine.errors import StepError


def guess_type(expect: str | list[str]) -> str:
    """A for IPv4 values, AAAA for IPv6, CNAME for names."""
    first = expect if isinstance(expect, str) else expect[0]
    try:
        return "AAAA" if ipaddress.ip_address(str(first)).version == 6 else "A"
    except ValueError:
        return "CNAME"


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class WaitDns:
    """Wait for all authoritative servers to answer `expect`, then `settle` (see module doc)."""

    kind: ClassVar[str] = "wait_dns"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.name = absolute(params["name"])
        self.rdtype = str(params.get("type") or guess_type(params["expect"])).upper()
        self.expect = canonical(self.rdtype, params["expect"])
        self.port = int(params.get("port", 53))
        self.listed = [parse_server(s, self.port) for s in params.get("servers") or []]
        self.zone = absolute(params["zone"]) if params.get("zone") else None
        self.settle = parse_duration(params["settle"]) if "settle" in params else None
        self.interval = parse_duration(params.get("interval", "10s")) or 1.0

    def clock(self) -> float:
        """Wall-clock seconds: stored in progress so a restart can resume (tests fake it)."""
        return time.time()

    # -- plan ---------------------------------------------------------------------------
    def plan(self, ctx: Context) -> Plan:
        want = show(self.expect)
        try:
            servers = self.servers()
        except StepError as exc:
            return Plan(f"wait until every server answers {self.name} {self.rdtype} {want}",
                        problem=str(exc))
        answers = self._ask(servers, ctx)
        settle = format_duration(self.settle) if self.settle is not None else "the record's TTL"
        summary = (f"wait until {len(servers)} servers answer {self.name} {self.rdtype} {want}, "
                   f"then {settle}; now {self._picture(answers)}")
        return Plan(summary, before={str(s): str(a) for s, a in answers.items()},
                    after={str(s): want for s in servers}, done=False)

    # -- apply --------------------------------------------------------------------------
    def apply(self, ctx: Context) -> Outcome:
        servers = self.servers()
        progress = ctx.progress
        now = self.clock()
        if "started" in progress:
            since = progress.get("agreed_since")
            ctx.log(f"resuming the wait begun at {_iso(progress['started'])}"
                    + (f"; all servers agreed since {_iso(since)}" if since else ""))
        else:
            progress["started"] = now
            if ctx.deadline is not None:
                progress["give_up_at"] = now + ctx.remaining()
            ctx.save_progress()
        last_picture = ""
        waited = False  # an Outcome that merely confirmed the servers agree is "already"
        while True:
            answers = self._ask(servers, ctx)
            now = self.clock()
            picture = self._picture(answers)
            if picture != last_picture:
                ctx.log(picture)
                last_picture = picture
            agreed = all(isinstance(a, Answer) and a.values == self.expect
                         for a in answers.values())
            if agreed:
                if progress.get("agreed_since") is None:
                    progress["agreed_since"] = now
                    progress["settle"] = self._settle(answers)
                    ctx.save_progress()
                    ctx.log(f"all {len(servers)} servers agree; settling for "
                            f"{format_duration(progress['settle'])} (caches)")
                settled_at = progress["agreed_since"] + progress["settle"]
                if now >= settled_at:
                    return Outcome(
                        f"all {len(servers)} servers answer {self.name} {self.rdtype} "
                        f"{show(self.expect)} since {_iso(progress['agreed_since'])} "
                        f"(settled {format_duration(progress['settle'])})",
                        before=None, after={str(s): show(self.expect) for s in servers},
                        changed=waited)
                wait = min(self.interval, settled_at - now)
            else:
                if progress.get("agreed_since") is not None:
                    ctx.log("a server no longer agrees; the settle time starts again")
                    progress["agreed_since"] = None
                    ctx.save_progress()
                wait = self.interval
            left = self._left(ctx, now)
            if left is not None and left <= 0:
                message = self._timed_out(answers, progress, now)
                # A later restore (after `reset`) must wait afresh, not inherit this deadline.
                for key in ("started", "give_up_at", "agreed_since", "settle"):
                    progress.pop(key, None)
                ctx.save_progress()
                raise StepError(message)
            if ctx.should_stop():
                raise StepError(f"stopped while waiting for {self.name} to settle; the wait "
                                "resumes where it left off", retryable=True)
            ctx.sleep(max(0.0, min(wait, left) if left is not None else wait))
            waited = True

    def servers(self) -> list[Server]:
        """The servers this step waits on: `servers` as written, else the zone's NS records
        (`zone`, or the zone found for `name`) on `port`. `dns show` asks this too, so it
        shows exactly these servers."""
        if self.listed:
            return list(self.listed)
        return name_servers(self.zone or find_zone(self.name), self.port)

    # -- internals ----------------------------------------------------------------------

    def _ask(self, servers: list[Server], ctx: Context) -> dict[Server, Answer | str]:
        answers: dict[Server, Answer | str] = {}
        for server in servers:
            # per server: a few dead servers in a row must not carry us past the deadline
            timeout = min(IO_TIMEOUT, max(1.0, self.interval), ctx.remaining(IO_TIMEOUT))
            try:
                answers[server] = read_record(server, self.name, self.rdtype, timeout)
            except StepError as exc:
                answers[server] = f"no answer ({exc})"
        return answers

    def _picture(self, answers: Mapping[Server, Answer | str]) -> str:
        want = show(self.expect)
        agree = [s for s, a in answers.items() if isinstance(a, Answer) and a.values == self.expect]
        line = f"{len(agree)}/{len(answers)} servers answer {want}"
        lagging = [f"{s} still answers {a}" if isinstance(a, Answer) else f"{s}: {a}"
                   for s, a in answers.items() if s not in agree]
        return "; ".join([line, *lagging])

    def _settle(self, answers: Mapping[Server, Answer | str]) -> float:
        if self.settle is not None:
            return self.settle
        ttls = [a.ttl for a in answers.values() if isinstance(a, Answer) and a.ttl is not None]
        return float(max(ttls, default=0))

    def _left(self, ctx: Context, now: float) -> float | None:
        # The tighter of this attempt's deadline and the one recorded at the first start,
        # so a restart does not extend the wait past the original timeout.
        limits = []
        if ctx.deadline is not None:
            limits.append(ctx.deadline - time.monotonic())
        if progress_deadline := ctx.progress.get("give_up_at"):
            limits.append(progress_deadline - now)
        return min(limits) if limits else None

    def _timed_out(self, answers: Mapping[Server, Answer | str], progress: Mapping[str, Any],
                   now: float) -> str:
        waited = format_duration(now - progress["started"])
        if progress.get("agreed_since") is not None:
            return (f"timeout after {waited}: all servers answer {self.name} {show(self.expect)}"
                    f" but the settle time ({format_duration(progress['settle'])}) had not passed")
        return f"timeout after {waited} waiting for {self.name} {self.rdtype}: " + \
            self._picture(answers)
