"""TSIG-signed DNS messages over TCP the same way on every dnspython nsupdate runs on.

- Sending: nsupdate signs its update with its own clock (`NsUpdate.clock`). dnspython
  ≥ 2.4 sends such a message as it is (`want_tsig_sign = False`); Debian 12's 2.3 would
  sign it again with time.time() in to_wire(), so there the signed record is appended to
  the unsigned body by hand (`request_wire`).
- Receiving: nsupdate needs the error code and time of a TSIG record it cannot verify (a
  BADKEY, BADSIG or BADTIME answer is unsigned or signed differently) before it checks a
  good answer's signature for real. dnspython ≥ 2.4 parses without verifying when the
  keyring callable returns a false value; 2.3 always verifies, so there the TSIG record is
  split off the wire and parsed on its own (`receive_unverified`).
"""
from __future__ import annotations

import io
import select
import socket
import time
from typing import Any, cast

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.version

# dnspython < 2.4 calls dns.tsig.validate whatever the keyring callable returns, and
# re-signs every message with a TSIG record in to_wire().
SKIPS_FALSE_KEY = (dns.version.MAJOR, dns.version.MINOR) >= (2, 4)
# TYPE TSIG (250), CLASS ANY (255), TTL 0: the fixed part of a TSIG record after its owner.
_TSIG_FIXED = b"\x00\xfa\x00\xff\x00\x00\x00\x00"


def _unverified(_message: Any, _name: Any) -> bool:
    return False


def request_wire(message: dns.message.Message) -> bytes:
    """The wire form of `message`, whose TSIG record is already signed, as it is."""
    if SKIPS_FALSE_KEY or message.tsig is None:
        return message.to_wire()
    signed = message.tsig
    message.tsig = None
    try:
        body = message.to_wire()
    finally:
        message.tsig = signed
    record = io.BytesIO()
    signed.to_wire(record)
    arcount = int.from_bytes(body[10:12], "big") + 1
    return body[:10] + arcount.to_bytes(2, "big") + body[12:] + record.getvalue()


def read_exactly(sock: socket.socket, count: int, expiration: float) -> bytes:
    """`count` bytes from a non-blocking socket before `expiration` (time.time())."""
    data = b""
    while len(data) < count:
        left = expiration - time.time()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise dns.exception.Timeout
        try:
            chunk = sock.recv(count - len(data))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the server closed the connection")
        data += chunk
    return data


def receive_unverified(sock: socket.socket, expiration: float,
                       keyname: dns.name.Name) -> dns.message.Message:
    """The next length-prefixed message on `sock`, its TSIG record (owned by `keyname`,
    the key the request was signed with) read but not checked; `.wire` is the whole
    message, for checking the signature afterwards."""
    length = int.from_bytes(read_exactly(sock, 2, expiration), "big")
    return parse_unverified(read_exactly(sock, length, expiration), keyname)


def parse_unverified(wire: bytes, keyname: dns.name.Name) -> dns.message.Message:
    """The message in `wire` with its TSIG record read but not checked."""
    if SKIPS_FALSE_KEY:
        # dnspython takes a callable keyring too; its type hints know only the dict.
        return dns.message.from_wire(wire, keyring=cast(Any, _unverified), request_mac=b"")
    split = _split_tsig(wire, keyname)
    if split is None:
        return dns.message.from_wire(wire)  # no TSIG record: nothing to skip
    body, owner, rdata = split
    message = dns.message.from_wire(body)
    message.tsig = dns.rrset.from_rdata(owner, 0, rdata)
    message.wire = wire
    return message


def _split_tsig(wire: bytes, keyname: dns.name.Name
                ) -> tuple[bytes, dns.name.Name, dns.rdata.Rdata] | None:
    """(the message without its TSIG record, the record's owner, its rdata), or None when
    the last additional record is not a TSIG record of `keyname`."""
    arcount = int.from_bytes(wire[10:12], "big")
    if len(wire) < 12 or arcount == 0:
        return None
    # The TSIG record is the last one: owner, fixed part, RDLENGTH, RDATA to the end.
    at = wire.rfind(_TSIG_FIXED)
    while at > 12:
        rdlen = int.from_bytes(wire[at + 8:at + 10], "big")
        if at + 10 + rdlen == len(wire):
            break
        at = wire.rfind(_TSIG_FIXED, 0, at)
    else:
        return None
    # The owner is the key's name, written out or as a compression pointer.
    for start in (at - len(keyname.to_wire() or b""), at - 2):
        if start < 12:
            continue
        try:
            owner, used = dns.name.from_wire(wire, start)
        except dns.exception.DNSException:
            continue
        if used == at - start and owner == keyname:
            rdata = dns.rdata.from_wire(dns.rdataclass.ANY, dns.rdatatype.TSIG, wire,
                                        at + 10, rdlen)
            body = wire[:10] + (arcount - 1).to_bytes(2, "big") + wire[12:start]
            return body, owner, rdata
    return None
