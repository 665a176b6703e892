"""TSIG-signed messages sent and read the same way whichever dnspython runs (actions/tsigwire.py):
both code paths run here, the one for dnspython ≥ 2.4 and the one for Debian 12's 2.3."""
from __future__ import annotations

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.tsig
import dns.update
import pytest

from actions import tsigwire

KEY = dns.tsig.Key("update-key.", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "hmac-sha256")
OTHER = dns.tsig.Key("update-key.", "b3RoZXJvdGhlcm90aGVyb3RoZXJvdGhlcg==", "hmac-sha256")


@pytest.fixture(params=["native", "split"])
def mode(request, monkeypatch):
    """native: dnspython's own way (≥ 2.4); split: the by-hand way used on 2.3."""
    if request.param == "native" and not tsigwire.SKIPS_FALSE_KEY:
        pytest.skip("this dnspython is older than 2.4")
    monkeypatch.setattr(tsigwire, "SKIPS_FALSE_KEY", request.param == "native")
    return request.param


def signed_update(key: dns.tsig.Key = KEY) -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage("example.test.")
    update.replace("www", 60, "CNAME", "standby.example.test.")
    update.use_tsig(key)
    return update


def test_a_request_wire_verifies_with_the_key(mode):
    update = signed_update()
    update.to_wire()  # signs it (as nsupdate's _sign does before sending)
    wire = tsigwire.request_wire(update)
    parsed = dns.message.from_wire(wire, keyring=KEY)  # raises if the signature is wrong
    assert parsed.tsig is not None and parsed.tsig.name == dns.name.from_text("update-key.")


def test_an_answer_signed_with_another_key_is_read_not_verified(mode):
    update = signed_update()
    update.to_wire()
    answer = dns.message.make_response(update)
    answer.use_tsig(OTHER, tsig_error=dns.rcode.BADSIG)
    wire = answer.to_wire()
    parsed = tsigwire.parse_unverified(wire, dns.name.from_text("update-key."))
    assert parsed.tsig_error == dns.rcode.BADSIG
    assert parsed.rcode() == answer.rcode() and parsed.wire == wire
    with pytest.raises(dns.exception.DNSException):  # checked for real, it fails
        dns.message.from_wire(parsed.wire, keyring=KEY, request_mac=update.mac)


def test_an_unsigned_answer_has_no_tsig(mode):
    answer = dns.message.make_response(signed_update())
    answer.tsig = None
    parsed = tsigwire.parse_unverified(answer.to_wire(), dns.name.from_text("update-key."))
    assert parsed.tsig is None and parsed.rcode() == dns.rcode.NOERROR
