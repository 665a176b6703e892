"""nsupdate against a real BIND 9: switch, no-op re-run, switch back, and every failure for real.

The record is always checked with a plain dnspython query to the server, never through the
engine. Each failure test also checks that the record is unchanged afterwards.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from actions.base import Context
from actions.nsupdate import NsUpdate
from engine.drillkit.named import DnsLab, Named, TsigSecret
from engine.errors import StepError
from tests.fixtures.bind import PROD, STANDBY
from tests.support import LOOPBACK, step_context, wait_until

NAME = "goc.example.test."


def make_ctx(tmp_path: Path, keyfile: Path, **kw: Any) -> tuple[Context, list[str]]:
    ctx = step_context(tmp_path, secret=keyfile, step_id="engage/1", **kw)
    return ctx, ctx.lines


def step(lab: DnsLab, **params: Any) -> NsUpdate:
    assert lab.primary is not None
    base = {"server": lab.primary.address, "zone": "example.test", "name": NAME,
            "type": "CNAME", "ttl": 60, "expect": PROD, "set": STANDBY, "key": "tsig"}
    base.update(params)
    return NsUpdate({k: v for k, v in base.items() if v is not None})


def answer(server: Named, name: str = NAME, rdtype: str = "CNAME") -> list[str]:
    """What `server` answers right now, by a plain non-recursive UDP query."""
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, LOOPBACK, port=server.port, timeout=3)
    return sorted(rd.to_text() for rrset in response.answer if rrset.name.to_text() == name
                  for rd in rrset)


def change_behind_the_back(lab: DnsLab, value: str) -> None:
    """A person changes the record with the same key, outside the engine."""
    assert lab.primary is not None
    update = dns.update.UpdateMessage("example.test")
    update.replace(NAME, 60, "CNAME", value)
    update.use_tsig(dns.tsig.Key("update-key", lab.update_key.secret))
    assert dns.query.tcp(update, LOOPBACK, port=lab.primary.port, timeout=5).rcode() == 0


# -- the happy path -------------------------------------------------------------------------
def test_switch_is_seen_by_a_plain_query_and_reaches_the_secondary(dns_lab: DnsLab,
                                                                    tmp_path: Path) -> None:
    ctx, lines = make_ctx(tmp_path, dns_lab.update_key_file)
    outcome = step(dns_lab).apply(ctx)
    assert outcome.changed
    assert outcome.before == [PROD] and outcome.after == [STANDBY]
    assert outcome.summary == f"{NAME} CNAME {PROD} → {STANDBY} (ttl 60)"
    assert answer(dns_lab.primary) == [STANDBY]
    wait_until(lambda: answer(dns_lab.secondary) == [STANDBY], what="secondary gets the update")
    assert ctx.progress["before"] == [PROD]
    assert any("sending update" in line for line in lines)
    assert dns_lab.update_key.secret not in "\n".join(lines)


def test_rerun_is_a_no_op_that_sends_nothing(dns_lab: DnsLab, tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    step(dns_lab).apply(ctx)
    serial = dns_lab.serial(dns_lab.primary)
    plan = step(dns_lab).plan(ctx)
    assert plan.done and plan.problem is None
    assert plan.summary == f"{NAME} CNAME already points at {STANDBY}"
    again = step(dns_lab).apply(ctx)
    assert not again.changed
    assert again.summary == f"{NAME} CNAME already points at {STANDBY}"
    assert dns_lab.serial(dns_lab.primary) == serial  # no update reached the zone


def test_switch_back(dns_lab: DnsLab, tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    step(dns_lab).apply(ctx)
    back = step(dns_lab, expect=STANDBY, set=PROD).apply(ctx)
    assert back.changed and back.after == [PROD]
    assert answer(dns_lab.primary) == [PROD]
    wait_until(lambda: answer(dns_lab.secondary) == [PROD], what="secondary switched back")


def test_dry_run_shows_the_change_from_a_live_read_and_changes_nothing(dns_lab: DnsLab,
                                                                       tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    plan = step(dns_lab).plan(ctx)
    assert plan.summary == f"{NAME} CNAME {PROD} → {STANDBY} (ttl 60)"
    assert (plan.before, plan.after, plan.done, plan.problem) == ([PROD], [STANDBY], False, None)
    assert answer(dns_lab.primary) == [PROD]


def test_a_records_and_no_expect(dns_lab: DnsLab, tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    www = "www.example.test."
    # without `expect` the RRset is replaced whatever it holds; `set` may list several values
    outcome = step(dns_lab, name=www, type="A", expect=None,
                   set=["192.0.2.2", "192.0.2.1"]).apply(ctx)
    assert outcome.before == ["192.0.2.10"] and outcome.after == ["192.0.2.1", "192.0.2.2"]
    assert answer(dns_lab.primary, www, "A") == ["192.0.2.1", "192.0.2.2"]


def test_read_back_catches_an_update_the_server_ignored(dns_lab: DnsLab, tmp_path: Path) -> None:
    # BIND answers NOERROR but silently ignores an A record next to a CNAME: only reading
    # the record back shows the switch did not happen.
    error = fails(dns_lab, tmp_path, step(dns_lab, type="A", expect=None, set="192.0.2.1"))
    assert str(error) == (f"{dns_lab.primary.address} accepted the update of {NAME} A but "
                          "answers (nothing), not 192.0.2.1")
    assert not error.retryable
    assert answer(dns_lab.primary) == [PROD]


def test_queries_during_switches_never_see_nxdomain_or_an_empty_answer(dns_lab: DnsLab,
                                                                       tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    seen: list[tuple[str, list[str]]] = []
    stop = threading.Event()

    def query_loop() -> None:
        query = dns.message.make_query(NAME, "CNAME")
        query.flags &= ~dns.flags.RD
        while not stop.is_set():
            response = dns.query.udp(query, LOOPBACK, port=dns_lab.primary.port, timeout=3)
            seen.append((dns.rcode.to_text(response.rcode()),
                         [rd.to_text() for rrset in response.answer for rd in rrset]))

    thread = threading.Thread(target=query_loop)
    thread.start()
    try:
        for _ in range(5):
            step(dns_lab).apply(ctx)
            step(dns_lab, expect=STANDBY, set=PROD).apply(ctx)
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 10
    assert all(rcode == "NOERROR" and len(values) == 1 for rcode, values in seen), \
        [s for s in seen if s[0] != "NOERROR" or len(s[1]) != 1][:3]
    assert {values[0] for _, values in seen} <= {PROD, STANDBY}


# -- failures, each for real, each leaving the record unchanged ------------------------------
def fails(dns_lab: DnsLab, tmp_path: Path, action: NsUpdate, keyfile: Path | None = None,
          **ctx_kw: Any) -> StepError:
    ctx, _ = make_ctx(tmp_path, keyfile or dns_lab.update_key_file, **ctx_kw)
    with pytest.raises(StepError) as err:
        action.apply(ctx)
    assert "\n" not in str(err.value)
    return err.value


def test_wrong_secret_is_badsig(dns_lab: DnsLab, tmp_path: Path) -> None:
    keyfile = TsigSecret("update-key").write(tmp_path / "wrong.key")
    error = fails(dns_lab, tmp_path, step(dns_lab), keyfile)
    assert str(error).startswith("BADSIG: ")
    assert "update-key (hmac-sha256)" in str(error) and "secret" in str(error)
    assert not error.retryable
    assert answer(dns_lab.primary) == [PROD]


def test_wrong_algorithm_is_badkey(dns_lab: DnsLab, tmp_path: Path) -> None:
    keyfile = TsigSecret("update-key", "hmac-sha512", dns_lab.update_key.secret).write(
        tmp_path / "alg.key")
    error = fails(dns_lab, tmp_path, step(dns_lab), keyfile)
    assert str(error).startswith("BADKEY: ")
    assert "update-key (hmac-sha512)" in str(error) and "algorithm" in str(error)
    assert not error.retryable
    assert answer(dns_lab.primary) == [PROD]


def test_key_not_allowed_for_the_name_is_refused(dns_lab: DnsLab, tmp_path: Path) -> None:
    error = fails(dns_lab, tmp_path, step(dns_lab), dns_lab.other_key_file)
    assert str(error).startswith("REFUSED: key other-key is not allowed to update "
                                 f"{NAME} CNAME")
    assert not error.retryable
    assert answer(dns_lab.primary) == [PROD]


def test_frozen_zone_is_refused_with_its_own_message(dns_lab: DnsLab, tmp_path: Path) -> None:
    dns_lab.primary.rndc("freeze", "example.test")
    try:
        error = fails(dns_lab, tmp_path, step(dns_lab))
    finally:
        dns_lab.primary.rndc("thaw", "example.test")
    assert str(error).startswith("REFUSED: ")
    assert "rndc thaw example.test" in str(error)
    assert not error.retryable
    assert answer(dns_lab.primary) == [PROD]


def test_zone_not_served_is_notauth(dns_lab: DnsLab, tmp_path: Path) -> None:
    action = step(dns_lab, zone="nothere.test", name="goc.nothere.test.", expect=None)
    error = fails(dns_lab, tmp_path, action)
    assert str(error).startswith(f"NOTAUTH: {dns_lab.primary.address} is not authoritative")
    assert not error.retryable
    assert answer(dns_lab.primary) == [PROD]


def test_name_outside_the_zone_is_notzone(dns_lab: DnsLab, tmp_path: Path) -> None:
    # other.test is served (so the name can be read) but the update names zone example.test
    action = step(dns_lab, name="goc.other.test.", expect=None)
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    assert "not inside zone example.test." in (action.plan(ctx).problem or "")
    error = fails(dns_lab, tmp_path, action)
    assert str(error).startswith("NOTZONE: goc.other.test. is not inside zone example.test.")
    assert not error.retryable
    assert answer(dns_lab.primary, "goc.other.test.") == []


def test_prerequisite_mismatch_after_a_change_behind_our_back(dns_lab: DnsLab,
                                                               tmp_path: Path) -> None:
    change_behind_the_back(dns_lab, "someone.example.org.")
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    plan = step(dns_lab).plan(ctx)
    assert plan.problem and "is someone.example.org., not the expected prod" in plan.problem
    error = fails(dns_lab, tmp_path, step(dns_lab))
    assert str(error).startswith(f"prerequisite failed: {NAME} CNAME on "
                                 f"{dns_lab.primary.address} is someone.example.org., "
                                 f"not the expected {PROD}")
    assert not error.retryable
    assert answer(dns_lab.primary) == ["someone.example.org."]  # not overwritten


def test_badtime_from_a_signing_clock_an_hour_behind(dns_lab: DnsLab, tmp_path: Path) -> None:
    class SlowClock(NsUpdate):
        def clock(self) -> float:
            return time.time() - 3600

    action = SlowClock({"server": dns_lab.primary.address, "zone": "example.test",
                        "name": NAME, "expect": PROD, "set": STANDBY, "key": "tsig"})
    error = fails(dns_lab, tmp_path, action)
    assert str(error).startswith("BADTIME: this host's clock is ")
    seconds = int(str(error).split("clock is ")[1].split("s ")[0])
    assert 3590 <= seconds <= 3610  # the offset we signed with, as the server measured it
    assert "behind" in str(error) and "NTP" in str(error)
    assert not error.retryable
    assert answer(dns_lab.primary) == [PROD]


def test_named_stopped_is_connection_refused_and_retryable(dns_lab: DnsLab,
                                                           tmp_path: Path) -> None:
    dns_lab.primary.stop()
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    plan = step(dns_lab).plan(ctx)
    assert plan.problem and "cannot read the primary: connection refused by" in plan.problem
    error = fails(dns_lab, tmp_path, step(dns_lab))
    assert str(error).startswith(f"connection refused by {dns_lab.primary.address}")
    assert error.retryable
    dns_lab.primary.start()
    assert answer(dns_lab.primary) == [PROD]


def test_timed_out_update_is_read_back_and_not_resent_blind(dns_lab: DnsLab,
                                                            tmp_path: Path) -> None:
    """The update goes through a relay that stalls: its outcome is unknown until read back."""
    relay = dns_lab.relay
    assert relay is not None

    class StallAfterRead(NsUpdate):
        def _send(self, key: dns.tsig.Key, ctx: Context) -> None:
            relay.pause()  # the read got through; the update and the read-back will stall
            super()._send(key, ctx)

    action = StallAfterRead({"server": f"{LOOPBACK}:{relay.port}", "zone": "example.test",
                             "name": NAME, "expect": PROD, "set": STANDBY, "key": "tsig"})
    try:
        error = fails(dns_lab, tmp_path, action, deadline=time.monotonic() + 1.0)
        assert str(error).startswith("timeout: ")
        assert "its outcome is unknown: reading goc.example.test. back also failed" in str(error)
        assert error.retryable
    finally:
        relay.release()  # the held update now reaches the primary
    wait_until(lambda: answer(dns_lab.primary) == [STANDBY], what="the held update applied")
    # the retry reads first and finds the work done: nothing is sent twice
    ctx, _ = make_ctx(tmp_path, dns_lab.update_key_file)
    retry = step(dns_lab, server=f"{LOOPBACK}:{relay.port}").apply(ctx)
    assert not retry.changed and "already points at" in retry.summary


def test_key_file_too_open_is_a_plan_problem_and_an_error(dns_lab: DnsLab,
                                                          tmp_path: Path) -> None:
    keyfile = tmp_path / "open.key"
    keyfile.write_text(dns_lab.update_key.text())
    keyfile.chmod(0o644)
    ctx, _ = make_ctx(tmp_path, keyfile)
    plan = step(dns_lab).plan(ctx)
    assert plan.problem and "mode 0644" in plan.problem
    assert plan.summary == f"{NAME} CNAME {PROD} → {STANDBY} (ttl 60)"
    error = fails(dns_lab, tmp_path, step(dns_lab), keyfile)
    assert "chmod 600" in str(error) and not error.retryable
    assert answer(dns_lab.primary) == [PROD]


def test_servfail_is_retryable_and_read_back(dns_lab: DnsLab, tmp_path: Path) -> None:
    # A directory where named wants its journal: the update fails inside named (SERVFAIL).
    (dns_lab.primary.directory / "example.test.db.jnl").mkdir()
    error = fails(dns_lab, tmp_path, step(dns_lab))
    assert str(error) == (f"SERVFAIL: {dns_lab.primary.address}, zone example.test., {NAME} "
                          "CNAME: the server failed to apply the update; "
                          f"{dns_lab.primary.address} still answers {PROD}")
    assert error.retryable
    assert answer(dns_lab.primary) == [PROD]
