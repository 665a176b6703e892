"""nsupdate — repoint a DNS record with one TSIG-signed dynamic update (RFC 2136).

    engage:
      - nsupdate:
          server: ns.muni.cz            # the zone's primary: a name or address, optional :port
          zone: egi.eu
          name: goc.egi.eu.
          type: CNAME                   # CNAME (default), A or AAAA
          ttl: 60
          expect: goc.stfc.ac.uk.       # optional: only change it if it still has this value
          set: gocdb.hartree.stfc.ac.uk.
          key: tsig                     # a name in the policy's `secrets`: a tsig-keygen file
          retries: 3                    # timeouts and SERVFAIL are retried, with backoff

What it does, in order:
1. Reads the record from `server` directly (TCP, no recursion). If it already answers
   `set`, nothing is sent: "already points at …".
2. Sends ONE update message over TCP that replaces the whole RRset. With `expect` it
   carries a prerequisite that the RRset is exactly `expect`, so a change someone made by
   hand is never overwritten: the server refuses the update and the step says what the
   record holds now.
3. Reads the record back from `server`; the step succeeds only if it answers `set`. An
   update that timed out or got SERVFAIL is read back too: its outcome is unknown until
   checked, and a retry must not be sent blind.

Each failure is one line naming the server, zone and name: BADKEY/BADSIG (wrong key,
secret or algorithm), BADTIME (with the clock skew), NOTAUTH, REFUSED (key not allowed to
update the name, or the zone is frozen), NOTZONE, prerequisite failed (with the value
found), SERVFAIL, timeout, connection refused. Only timeouts, SERVFAIL and connection
errors are retryable; a read-back that disagrees after NOERROR is not (the same update
would be ignored again).

The key file must be mode 0600/0400 and use HMAC-SHA256 or stronger; older keys need
`allow_weak_algorithm: true`. The secret is never logged or put on a command line.
Dry-run reads the primary and shows `goc.egi.eu. CNAME goc.stfc.ac.uk. →
gocdb.hartree.stfc.ac.uk. (ttl 60)`, or why the update would fail.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update

from actions import tsig
from actions.base import Context, Outcome, Plan, Readiness
from actions.dnsread import (
    IO_TIMEOUT,
    Answer,
    absolute,
    canonical,
    parse_server,
    read_record,
    show,
    soa_serial,
)
from actions.tsigwire import receive_unverified, request_wire
from engine.errors import FailoverError, StepError

TYPES = ("CNAME", "A", "AAAA")

# RFC 8945 TSIG error codes (dnspython names 16 BADVERS, the same number as BADSIG).
BADSIG, BADKEY, BADTIME = 16, 17, 18


# -- the step -------------------------------------------------------------------------------
# How a TSIG failure's message starts → its readiness reason code.
_TSIG_REASONS = (("BADSIG", "badsig"), ("BADKEY", "badkey"), ("BADTIME", "badtime"))


class _Unsent(StepError):
    """The update never left this host (no connection): there is nothing to read back."""


class NsUpdate:
    """Replace one RRset on the zone's primary with a TSIG-signed update (see module doc)."""

    kind: ClassVar[str] = "nsupdate"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.server = parse_server(params["server"], params.get("port"))
        self.zone = absolute(params["zone"])
        self.name = absolute(params["name"])
        self.rdtype = str(params.get("type", "CNAME")).upper()
        if self.rdtype not in TYPES:
            raise StepError(f"nsupdate {self.name}: type {self.rdtype} is not one of {TYPES}")
        self.ttl = int(params.get("ttl", 60))
        self.want = canonical(self.rdtype, params["set"])
        self.expect = canonical(self.rdtype, params["expect"]) if "expect" in params else None
        self.key_ref = str(params["key"])
        self.allow_weak = bool(params.get("allow_weak_algorithm", False))

    def clock(self) -> float:
        """The time the update is signed with (a test subclass shifts it to produce BADTIME)."""
        return time.time()

    # -- plan ---------------------------------------------------------------------------
    def describe(self, before: Sequence[str] | str) -> str:
        before = before if isinstance(before, str) else show(before)
        return f"{self.name} {self.rdtype} {before} → {show(self.want)} (ttl {self.ttl})"

    def plan(self, ctx: Context) -> Plan:
        problems = []
        try:
            self._key(ctx)
        except StepError as exc:
            problems.append(str(exc))
        if not self.name.is_subdomain(self.zone):
            problems.append(f"{self.name} is not inside zone {self.zone}; fix `name` or `zone`")
        try:
            current = read_record(self.server, self.name, self.rdtype, self._timeout(ctx))
        except StepError as exc:
            return Plan(self.describe("(unknown)"), after=list(self.want),
                        problem="; ".join([*problems, f"cannot read the primary: {exc}"]))
        before = list(current.values)
        if current.values == self.want:
            return Plan(f"{self.name} {self.rdtype} already points at {show(self.want)}",
                        before=before, after=before, done=True,
                        problem="; ".join(problems) or None)
        if self.expect is not None and current.values != self.expect:
            problems.append(self._mismatch(current.values))
        return Plan(self.describe(current.values), before=before, after=list(self.want),
                    problem="; ".join(problems) or None)

    def host_problems(self, ctx: Context) -> list[str]:
        try:
            self._key(ctx)
        except StepError as exc:
            return [str(exc)]
        return []

    # -- apply --------------------------------------------------------------------------
    def apply(self, ctx: Context) -> Outcome:
        key = self._key(ctx)
        current = read_record(self.server, self.name, self.rdtype, self._timeout(ctx))
        if current.values == self.want:
            return Outcome(f"{self.name} {self.rdtype} already points at {show(self.want)}",
                           before=list(current.values), after=list(current.values),
                           changed=False)
        # Remember what it was before acting, so an operator (or an undo) knows what to restore.
        ctx.progress["before"] = list(current.values)
        ctx.save_progress()
        ctx.log(f"sending update to {self.server}: {self.describe(current.values)}"
                + (f", only if it is still {show(self.expect)}" if self.expect else ""))
        try:
            self._send(key, ctx)
        except StepError as exc:
            if not exc.retryable or isinstance(exc, _Unsent):
                raise
            # Timeout or SERVFAIL: the update may have been applied anyway. Check first.
            after = self._read_back(ctx, exc)
            if after.values != self.want:
                raise StepError(f"{exc}; {self.server} still answers {after}", retryable=True
                                ) from None
            ctx.log(f"{exc}; but {self.server} now answers {after}: the update was applied")
        else:
            after = self._read_back(ctx, None)
            if after.values != self.want:
                # Not retried: the server applies updates before answering, so sending the
                # same update again would be ignored again (e.g. an A next to a CNAME).
                raise StepError(f"{self.server} accepted the update of {self.name} {self.rdtype} "
                                f"but answers {after}, not {show(self.want)}")
        return Outcome(self.describe(current.values), before=list(current.values),
                       after=list(after.values), changed=True)

    # -- internals ----------------------------------------------------------------------
    def _timeout(self, ctx: Context) -> float:
        return min(IO_TIMEOUT, ctx.remaining(IO_TIMEOUT))

    def _key(self, ctx: Context) -> dns.tsig.Key:
        try:
            path = ctx.secret(self.key_ref)
        except FailoverError as exc:  # SecretError: missing, wrong owner, too open
            raise StepError(f"TSIG key {self.key_ref!r}: {exc}") from None
        return tsig.load_key(path, allow_weak_algorithm=self.allow_weak)

    def _read_back(self, ctx: Context, failure: StepError | None) -> Answer:
        try:
            return read_record(self.server, self.name, self.rdtype, self._timeout(ctx))
        except StepError as exc:
            if failure is None:
                raise StepError(f"update of {self.name} sent to {self.server}, but reading it "
                                f"back failed: {exc}", retryable=True) from None
            raise StepError(f"{failure}; its outcome is unknown: reading {self.name} back "
                            f"also failed ({exc})", retryable=True) from None

    def _mismatch(self, found: Sequence[str]) -> str:
        return (f"prerequisite failed: {self.name} {self.rdtype} on {self.server} is {show(found)},"
                f" not the expected {show(self.expect or ())}; someone changed it, so nothing was"
                " overwritten: check the record and the policy's `expect`")

    def _message(self, key: dns.tsig.Key, rdtype: str | None = None) -> dns.update.UpdateMessage:
        update = dns.update.UpdateMessage(self.zone)
        if rdtype is None:
            if self.expect is not None:
                update.present(self.name, self.rdtype, *self.expect)
            update.replace(self.name, self.ttl, self.rdtype, *self.want)
        else:  # a probe that changes nothing: "the zone's SOA exists"
            update.present(self.zone, rdtype)
        self._sign(update, key)
        return update

    def _sign(self, update: dns.update.UpdateMessage, key: dns.tsig.Key) -> None:
        # dnspython signs with the wall clock inside to_wire(); sign here with self.clock()
        # instead (same wire: the body is rendered, signed, then the TSIG RR appended).
        update.use_tsig(key)
        assert update.tsig is not None
        unsigned, update.tsig = update.tsig, None
        body = update.to_wire()
        update.tsig = unsigned
        signed, _ = dns.tsig.sign(body, key, unsigned[0], int(self.clock()), b"")
        update.tsig.clear()
        update.tsig.add(signed)
        update.want_tsig_sign = False

    def _exchange(self, update: dns.update.UpdateMessage, ctx: Context) -> dns.message.Message:
        # Keep part of the step's time for reading the record back if the update times out.
        timeout = min(IO_TIMEOUT, 0.6 * ctx.remaining(IO_TIMEOUT / 0.6))
        expiration = time.time() + timeout
        address = self.server.address()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                try:
                    sock.connect((address, self.server.port))
                except OSError as exc:
                    raise _Unsent(self._connect_error(exc, timeout), retryable=True) from None
                sock.setblocking(False)
                dns.query.send_tcp(sock, request_wire(update), expiration)
                assert update.tsig is not None
                response = receive_unverified(sock, expiration, update.tsig.name)
        except dns.exception.Timeout:
            raise StepError(f"timeout: {self.server} did not answer the update of {self.name} "
                            f"within {timeout:.0f}s", retryable=True) from None
        except (OSError, EOFError) as exc:
            raise StepError(f"{self.server} dropped the connection during the update of "
                            f"{self.name}: {exc}", retryable=True) from None
        except dns.exception.DNSException as exc:
            raise StepError(f"bad answer from {self.server} to the update of {self.name}: {exc}",
                            retryable=True) from None
        if not update.is_response(response):
            raise StepError(f"{self.server} answered the update of {self.name} with an unrelated "
                            "message", retryable=True)
        return response

    def _connect_error(self, exc: OSError, timeout: float) -> str:
        if isinstance(exc, ConnectionRefusedError):
            return (f"connection refused by {self.server} (TCP): is named "
                    "running there?")
        if isinstance(exc, TimeoutError):
            return f"timeout: could not connect to {self.server} within {timeout:.0f}s"
        return f"cannot connect to {self.server}: {exc.strerror or exc}"

    def _send(self, key: dns.tsig.Key, ctx: Context) -> None:
        update = self._message(key)
        response = self._exchange(update, ctx)
        self._check_tsig(response, update, key)
        rcode = response.rcode()
        where = f"{self.server}, zone {self.zone}, {self.name} {self.rdtype}"
        if rcode == dns.rcode.NOERROR:
            return
        if rcode == dns.rcode.SERVFAIL:
            raise StepError(f"SERVFAIL: {where}: the server failed to apply the update",
                            retryable=True)
        if rcode in (dns.rcode.NXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXRRSET,
                     dns.rcode.YXDOMAIN):
            try:
                found = show(read_record(self.server, self.name, self.rdtype,
                                         self._timeout(ctx)).values)
            except StepError as exc:
                found = f"unreadable ({exc})"
            raise StepError(self._mismatch([found]))
        if rcode == dns.rcode.NOTAUTH:
            raise StepError(f"NOTAUTH: {self.server} is not authoritative for zone {self.zone}: "
                            "point `server` at the zone's primary and check `zone`")
        if rcode == dns.rcode.NOTZONE:
            raise StepError(f"NOTZONE: {self.name} is not inside zone {self.zone} on "
                            f"{self.server}; fix `name` or `zone`")
        if rcode == dns.rcode.REFUSED:
            raise StepError(self._refused(key, ctx))
        raise StepError(f"{dns.rcode.to_text(rcode)}: {where}: the server rejected the update")

    def _check_tsig(self, response: dns.message.Message, update: dns.update.UpdateMessage,
                    key: dns.tsig.Key) -> None:
        keyname = f"{key.name.to_text(omit_final_dot=True)} ({tsig.algorithm_label(key)})"
        error = response.tsig_error
        if error == BADSIG:
            raise StepError(f"BADSIG: {self.server} rejected the signature of key {keyname} for "
                            f"zone {self.zone}: the secret in the key file is wrong")
        if error == BADKEY:
            raise StepError(f"BADKEY: {self.server} does not know key {keyname} for zone "
                            f"{self.zone}: wrong key name or algorithm in the key file")
        if error == BADTIME:
            raise StepError(self._badtime(response))
        if error:
            raise StepError(f"TSIG error {error} from {self.server} for zone {self.zone}")
        if response.tsig is None:
            if response.rcode() == dns.rcode.NOERROR:
                raise StepError(f"{self.server} answered the update of {self.name} without a "
                                "TSIG signature: not trusting it")
            return  # an unsigned error (FORMERR…) is reported by its rcode
        try:  # now check the signature for real
            dns.message.from_wire(response.wire or b"", keyring=key, request_mac=update.mac)
        except dns.exception.DNSException as exc:
            raise StepError(f"the answer of {self.server} to the update of {self.name} failed "
                            f"TSIG verification ({exc.__class__.__name__})") from None

    def _badtime(self, response: dns.message.Message) -> str:
        assert response.tsig is not None
        rdata = response.tsig[0]
        other = bytes(rdata.other)
        server_time = int.from_bytes(other, "big") if len(other) == 6 else int(rdata.time_signed)
        skew = server_time - int(self.clock())
        direction = "behind" if skew > 0 else "ahead of"
        return (f"BADTIME: this host's clock is {abs(skew)}s {direction} {self.server}'s, more "
                f"than the {rdata.fudge}s TSIG allows; fix the time sync (NTP) on this host")

    def _refused(self, key: dns.tsig.Key, ctx: Context) -> str:
        return self._refusal(key, ctx)[1]

    def _refusal(self, key: dns.tsig.Key, ctx: Context) -> tuple[str, str]:
        """(reason code, message) for a REFUSED update: no grant, or a frozen zone."""
        # REFUSED means either "this key may not change this name" or "updates are off" (a
        # frozen zone). An update that changes nothing tells them apart: it is refused only
        # when the zone takes no updates at all.
        keyname = key.name.to_text(omit_final_dot=True)
        try:
            probe = self._exchange(self._message(key, "SOA"), ctx)
            zone_refuses = probe.rcode() == dns.rcode.REFUSED
        except StepError:
            zone_refuses = None
        if zone_refuses:
            return "frozen", (f"REFUSED: {self.server} takes no updates for zone {self.zone} now "
                              f"(frozen? run `rndc thaw {self.zone.to_text(omit_final_dot=True)}`"
                              " there)")
        if zone_refuses is None:
            return "refused", (f"REFUSED: {self.server} refused the update of {self.name} "
                               f"{self.rdtype} with key {keyname} (not allowed, or updates are "
                               f"disabled for {self.zone})")
        return "refused_grant", (f"REFUSED: key {keyname} is not allowed to update {self.name} "
                                 f"{self.rdtype} on {self.server}; ask the zone's admins to "
                                 "grant it in update-policy")

    # -- readiness ----------------------------------------------------------------------
    def readiness(self, ctx: Context) -> Readiness:
        """Prove on the primary, changing nothing, that the key is accepted AND granted
        for the name (engine/readiness.py).

        The proof is one signed UPDATE whose prerequisite is the record exactly as it is
        now and whose update section adds that identical record with its current TTL: a
        server that accepts it has checked the signature (BADSIG, BADKEY, BADTIME
        otherwise) and the update-policy grant for this name and type (REFUSED otherwise;
        a frozen zone is told apart as in apply), and adding what is already there changes
        nothing, so BIND answers NOERROR and keeps the SOA serial. The serial and the
        record are read before and after, and a proof that changed either says so.
        """
        where = f"{self.name} {self.rdtype} on {self.server}"
        try:
            key = self._key(ctx)
        except StepError as exc:
            return Readiness(False, str(exc), "key_file")
        timeout = self._timeout(ctx)
        try:
            before = read_record(self.server, self.name, self.rdtype, timeout)
            serial = soa_serial(self.server, self.zone, timeout)
        except StepError as exc:
            return Readiness(False, f"cannot read the primary: {exc}", "unreachable")
        if not before.values:
            return Readiness(False, f"{where} has no record: the grant cannot be proved "
                             "without changing the zone", "no_record")
        update = dns.update.UpdateMessage(self.zone)
        update.present(self.name, self.rdtype, *before.values)
        update.add(self.name, before.ttl or self.ttl, self.rdtype, *before.values)
        self._sign(update, key)
        try:
            response = self._exchange(update, ctx)
            self._check_tsig(response, update, key)
        except StepError as exc:
            text = str(exc)
            reason = next((code for prefix, code in _TSIG_REASONS if text.startswith(prefix)),
                          "unreachable" if exc.retryable else "error")
            return Readiness(False, text, reason)
        rcode = response.rcode()
        keyname = key.name.to_text(omit_final_dot=True)
        if rcode == dns.rcode.REFUSED:
            reason, message = self._refusal(key, ctx)
            return Readiness(False, message, reason)
        if rcode in (dns.rcode.NXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXRRSET):
            return Readiness(False, f"{where} changed while it was being checked; the next "
                             "check proves the grant again", "changed_meanwhile")
        if rcode != dns.rcode.NOERROR:
            name = dns.rcode.to_text(rcode)
            return Readiness(False, f"{name}: {self.server} answered the no-op update of "
                             f"{self.name} {self.rdtype} with {name}", name.lower()
                             if name in ("NOTAUTH", "NOTZONE", "SERVFAIL") else "error")
        try:
            after = read_record(self.server, self.name, self.rdtype, timeout)
            serial_after = soa_serial(self.server, self.zone, timeout)
        except StepError as exc:
            return Readiness(False, f"the no-op update was accepted, but reading the primary "
                             f"back failed: {exc}", "unreachable")
        if serial_after != serial or after.values != before.values:
            return Readiness(False, f"the no-op update changed zone {self.zone} on "
                             f"{self.server} (serial {serial} → {serial_after}, {self.name} "
                             f"{show(before.values)} → {show(after.values)})", "zone_changed")
        return Readiness(True, f"key {keyname} is accepted and granted for {where} (no-op "
                         f"update answered NOERROR; serial {serial} unchanged)")
