"""nsupdate's readiness proof against a real BIND 9: the key is accepted AND granted for the
name, proved by a no-op update, and every way it fails is told apart with its own reason and
message. Every test compares the zone before and after (SOA serial on both servers and the
records), read with plain dnspython queries, never through the engine: the proof changes
nothing."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from actions.base import Context, Readiness
from actions.nsupdate import NsUpdate
from engine.drillkit.named import DnsLab, TsigSecret
from tests.fixtures.bind import PROD, STANDBY
from tests.integration.test_dns_nsupdate import answer, make_ctx, step

NAME = "goc.example.test."


def zone_now(lab: DnsLab) -> dict[str, Any]:
    """What the zone holds now: both servers' serials and the records of every name."""
    assert lab.primary is not None and lab.secondary is not None
    return {
        "serial": lab.serial(lab.primary),
        "secondary serial": lab.serial(lab.secondary),
        "goc": answer(lab.primary, NAME),
        "www": answer(lab.primary, "www.example.test.", "A"),
        "other": answer(lab.primary, "other.example.test."),
        "journal": sorted(p.name for p in (lab.directory / "primary").glob("*.jnl")),
    }


def prove(lab: DnsLab, tmp_path: Path, action: NsUpdate | None = None,
          keyfile: Path | None = None) -> Readiness:
    """Run the readiness proof and assert the zone is as it was."""
    ctx, lines = make_ctx(tmp_path, keyfile or lab.update_key_file)
    before = zone_now(lab)
    result = (action or step(lab)).readiness(ctx)
    assert zone_now(lab) == before, "the readiness proof changed the zone"
    assert lab.update_key.secret not in result.detail + "\n".join(lines)
    return result


def test_granted_key_is_proved_without_changing_the_zone(dns_lab: DnsLab,
                                                         tmp_path: Path) -> None:
    result = prove(dns_lab, tmp_path)
    assert result.ok, result.detail
    assert result.reason == "ok"
    assert result.detail.startswith(f"key update-key is accepted and granted for {NAME} CNAME")
    assert "serial 1 unchanged" in result.detail
    # An A record (the other type the key may change), and proving twice changes nothing.
    www = step(dns_lab, name="www.example.test.", type="A", expect=None, set="192.0.2.99")
    assert prove(dns_lab, tmp_path, www).ok
    assert prove(dns_lab, tmp_path).ok


def test_after_an_engage_the_proof_uses_the_record_as_it_is(dns_lab: DnsLab,
                                                            tmp_path: Path) -> None:
    ctx: Context = make_ctx(tmp_path, dns_lab.update_key_file)[0]
    step(dns_lab).apply(ctx)  # the record now points at the standby
    result = prove(dns_lab, tmp_path, step(dns_lab, expect=STANDBY, set=PROD))
    assert result.ok, result.detail
    assert answer(dns_lab.primary) == [STANDBY]


def test_wrong_secret_is_badsig(dns_lab: DnsLab, tmp_path: Path) -> None:
    keyfile = TsigSecret("update-key").write(tmp_path / "wrong.key")
    result = prove(dns_lab, tmp_path, keyfile=keyfile)
    assert (result.ok, result.reason) == (False, "badsig")
    assert result.detail.startswith("BADSIG: ") and "the secret in the key file is wrong" in \
        result.detail


def test_wrong_algorithm_is_badkey_naming_the_algorithm(dns_lab: DnsLab,
                                                        tmp_path: Path) -> None:
    keyfile = TsigSecret("update-key", "hmac-sha512", dns_lab.update_key.secret).write(
        tmp_path / "alg.key")
    result = prove(dns_lab, tmp_path, keyfile=keyfile)
    assert (result.ok, result.reason) == (False, "badkey")
    assert result.detail.startswith("BADKEY: ")
    assert "update-key (hmac-sha512)" in result.detail


def test_unknown_key_name_is_badkey_naming_the_key(dns_lab: DnsLab, tmp_path: Path) -> None:
    keyfile = TsigSecret("nobody-key", "hmac-sha256", dns_lab.update_key.secret).write(
        tmp_path / "nobody.key")
    result = prove(dns_lab, tmp_path, keyfile=keyfile)
    assert (result.ok, result.reason) == (False, "badkey")
    assert result.detail.startswith("BADKEY: ") and "nobody-key (hmac-sha256)" in result.detail


def test_key_without_the_grant_is_refused_grant(dns_lab: DnsLab, tmp_path: Path) -> None:
    result = prove(dns_lab, tmp_path, keyfile=dns_lab.other_key_file)
    assert (result.ok, result.reason) == (False, "refused_grant")
    assert result.detail.startswith(f"REFUSED: key other-key is not allowed to update {NAME} "
                                    "CNAME")
    assert "update-policy" in result.detail


def test_a_name_outside_the_grant_is_refused_grant(dns_lab: DnsLab, tmp_path: Path) -> None:
    # update-key may change goc and www, not `other`
    other = step(dns_lab, name="other.example.test.", expect=None, set=STANDBY)
    result = prove(dns_lab, tmp_path, other)
    assert (result.ok, result.reason) == (False, "refused_grant")


def test_frozen_zone_is_its_own_reason(dns_lab: DnsLab, tmp_path: Path) -> None:
    assert dns_lab.primary is not None
    dns_lab.primary.rndc("freeze", "example.test")
    try:
        result = prove(dns_lab, tmp_path)
    finally:
        dns_lab.primary.rndc("thaw", "example.test")
    assert (result.ok, result.reason) == (False, "frozen")
    assert "rndc thaw example.test" in result.detail


def test_clock_skew_is_badtime(dns_lab: DnsLab, tmp_path: Path) -> None:
    class SlowClock(NsUpdate):
        def clock(self) -> float:
            return time.time() - 3600  # signed an hour ago; the system clock is untouched

    assert dns_lab.primary is not None
    action = SlowClock({"server": dns_lab.primary.address, "zone": "example.test",
                        "name": NAME, "expect": PROD, "set": STANDBY, "key": "tsig"})
    result = prove(dns_lab, tmp_path, action)
    assert (result.ok, result.reason) == (False, "badtime")
    assert result.detail.startswith("BADTIME: this host's clock is ") and "NTP" in result.detail


def test_no_record_cannot_be_proved(dns_lab: DnsLab, tmp_path: Path) -> None:
    missing = step(dns_lab, name="new.example.test.", expect=None)
    result = prove(dns_lab, tmp_path, missing)
    assert (result.ok, result.reason) == (False, "no_record")


def test_stopped_primary_is_unreachable(dns_lab: DnsLab, tmp_path: Path) -> None:
    assert dns_lab.primary is not None
    action = step(dns_lab)
    dns_lab.primary.stop()
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file, deadline=time.monotonic() + 3)
    result = action.readiness(ctx)
    assert (result.ok, result.reason) == (False, "unreachable")
    assert result.detail.startswith("cannot read the primary: ")


@pytest.mark.parametrize("mode", [0o644])
def test_key_file_too_open(dns_lab: DnsLab, tmp_path: Path, mode: int) -> None:
    keyfile = tmp_path / "open.key"
    keyfile.write_text(dns_lab.update_key_file.read_text())
    keyfile.chmod(mode)
    result = prove(dns_lab, tmp_path, keyfile=keyfile)
    assert (result.ok, result.reason) == (False, "key_file")
