"""actions.dnsread without a server: server forms, names, values.

Reading from real servers (records, SOA serials, the NS lookup) is tested against BIND in
tests/integration/test_dns_wait.py and test_dns_show.py.
"""
from __future__ import annotations

import pytest

from actions.dnsread import Server, absolute, canonical, parse_server, show
from engine.errors import StepError


@pytest.mark.parametrize(("text", "port", "host", "expected_port", "shown"), [
    ("ns.muni.cz", None, "ns.muni.cz", 53, "ns.muni.cz"),
    ("127.0.0.1:5353", None, "127.0.0.1", 5353, "127.0.0.1:5353"),
    ("127.0.0.1", 5300, "127.0.0.1", 5300, "127.0.0.1:5300"),
    ("127.0.0.1:5353", 5300, "127.0.0.1", 5353, "127.0.0.1:5353"),  # written port wins
    ("2001:db8::53", None, "2001:db8::53", 53, "[2001:db8::53]"),
    ("[2001:db8::53]:5353", None, "2001:db8::53", 5353, "[2001:db8::53]:5353"),
])
def test_server_forms(text: str, port: int | None, host: str, expected_port: int,
                      shown: str) -> None:
    server = parse_server(text, port)
    assert (server.host, server.port, str(server)) == (host, expected_port, shown)


@pytest.mark.parametrize("text", ["127.0.0.1:99999", "ns.example:dns", ":53"])
def test_bad_server_forms_are_one_line(text: str) -> None:
    with pytest.raises(StepError, match=rf"^server {text!r}: "):
        parse_server(text)


def test_same_server_written_twice() -> None:
    assert Server("2001:db8::53").same(Server("2001:db8:0::53"))
    assert Server("NS.Example.org.").same(Server("ns.example.org"))
    assert not Server("127.0.0.1", 53).same(Server("127.0.0.1", 5353))
    assert not Server("localhost").same(Server("127.0.0.1"))  # a name is not its address
    # the NS name an address came from is a label, not part of the identity
    assert Server("192.0.2.1", 53, label="ns1.example.") == Server("192.0.2.1", 53)
    assert str(Server("192.0.2.1", 5353, label="ns1.example.")) == "ns1.example. (192.0.2.1:5353)"


def test_names_and_values_as_the_server_writes_them() -> None:
    assert absolute("goc.egi.eu") == absolute("goc.egi.eu.")
    assert canonical("CNAME", "goc.stfc.ac.uk") == ("goc.stfc.ac.uk.",)
    assert canonical("AAAA", ["2001:db8:0::1", "2001:db8::0"]) == ("2001:db8::", "2001:db8::1")
    assert show(()) == "(nothing)" and show(("a.", "b.")) == "a., b."
    with pytest.raises(StepError, match="'300.1.1.1' is not a valid A value"):
        canonical("A", "300.1.1.1")
    with pytest.raises(StepError, match="is not a valid DNS name"):
        absolute("a..b")
