"""wait_dns against a real primary and a secondary whose transfers the test holds back."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from actions.base import Context
from actions.nsupdate import NsUpdate
from actions.wait_dns import WaitDns, guess_type
from engine.drillkit.named import DnsLab
from engine.errors import StepError
from tests.fixtures.bind import PROD, STANDBY
from tests.support import step_context

NAME = "goc.example.test."
T0 = 1_800_000_000.0


class FakeClock:
    """Wall time that moves only when the action sleeps (so no test depends on real time)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def waiter(lab: DnsLab, clock: FakeClock | None = None, **params: Any) -> WaitDns:
    base = {"name": NAME, "expect": STANDBY, "servers": lab.servers, "interval": "1s"}
    base.update(params)
    if clock is None:
        return WaitDns(base)

    class Faked(WaitDns):
        def clock(self) -> float:
            return clock.now

    return Faked(base)


def make_ctx(tmp_path: Path, lab: DnsLab, **kw: Any) -> tuple[Context, list[str], list[dict]]:
    ctx = step_context(tmp_path, secret=lab.update_key_file, step_id="restore/2", **kw)
    return ctx, ctx.lines, ctx.saved


def switch(lab: DnsLab, tmp_path: Path) -> None:
    ctx, _, _ = make_ctx(tmp_path, lab)
    NsUpdate({"server": lab.primary.address, "zone": "example.test", "name": NAME,
              "expect": PROD, "set": STANDBY, "key": "tsig"}).apply(ctx)


def test_type_is_guessed_from_expect() -> None:
    assert (guess_type("a.example."), guess_type("192.0.2.1"), guess_type(["2001:db8::1"])) == \
        ("CNAME", "A", "AAAA")


def test_completes_when_both_servers_answer_and_settle_passed(dns_lab: DnsLab,
                                                               tmp_path: Path) -> None:
    switch(dns_lab, tmp_path)
    dns_lab.wait_serials_match()
    clock = FakeClock()
    ctx, lines, saved = make_ctx(tmp_path, dns_lab, sleep=clock.sleep)
    outcome = waiter(dns_lab, clock, settle="30s").apply(ctx)
    assert outcome.summary == (f"all 2 servers answer {NAME} CNAME {STANDBY} since "
                               "2027-01-15T08:00:00Z (settled 30s)")
    assert f"2/2 servers answer {STANDBY}" in lines
    assert sum(clock.slept) == 30
    assert outcome.changed  # it waited: the runner journals it as done, not "already"
    assert saved[-1]["agreed_since"] == T0 and saved[-1]["started"] == T0


def test_settle_defaults_to_the_records_ttl(dns_lab: DnsLab, tmp_path: Path) -> None:
    clock = FakeClock()
    ctx, lines, _ = make_ctx(tmp_path, dns_lab, sleep=clock.sleep)
    waiter(dns_lab, clock, expect=PROD, interval="10s").apply(ctx)
    assert ctx.progress["settle"] == 60  # the zone's TTL
    assert sum(clock.slept) == 60 and max(clock.slept) == 10
    assert "all 2 servers agree; settling for 1m (caches)" in lines


def test_lagging_secondary_is_reported_and_the_wait_completes_when_released(
        dns_lab: DnsLab, tmp_path: Path) -> None:
    dns_lab.hold_transfers()
    try:
        switch(dns_lab, tmp_path)
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) == 3:  # the lag has been seen a few times: let the secondary catch up
                dns_lab.release_transfers()
            time.sleep(0.05)

        ctx, lines, _ = make_ctx(tmp_path, dns_lab, sleep=sleep)
        outcome = waiter(dns_lab, settle=0, interval="100ms").apply(ctx)
    finally:
        dns_lab.release_transfers()
    lag = f"1/2 servers answer {STANDBY}; {dns_lab.secondary.address} still answers {PROD}"
    assert lines[0] == lag
    assert f"2/2 servers answer {STANDBY}" in lines
    assert outcome.summary.startswith(f"all 2 servers answer {NAME} CNAME {STANDBY}")
    assert len(sleeps) >= 3


def test_times_out_naming_the_server_that_disagrees(dns_lab: DnsLab, tmp_path: Path) -> None:
    dns_lab.hold_transfers()
    try:
        switch(dns_lab, tmp_path)
        ctx, _, _ = make_ctx(tmp_path, dns_lab, deadline=time.monotonic() + 1.0)
        with pytest.raises(StepError) as err:
            waiter(dns_lab, settle=0, interval="200ms").apply(ctx)
    finally:
        dns_lab.release_transfers()
    message = str(err.value)
    assert message.startswith("timeout after ")
    assert message.endswith(f"waiting for {NAME} CNAME: 1/2 servers answer {STANDBY}; "
                            f"{dns_lab.secondary.address} still answers {PROD}")
    assert not err.value.retryable


def test_resume_continues_the_settle_instead_of_starting_over(dns_lab: DnsLab,
                                                              tmp_path: Path) -> None:
    clock = FakeClock(T0 + 50)
    ctx, lines, _ = make_ctx(tmp_path, dns_lab, sleep=clock.sleep)
    # what a crashed run left: started at T0, all agreed since T0+10, settle 100s
    ctx.progress.update({"started": T0, "agreed_since": T0 + 10, "settle": 100.0})
    outcome = waiter(dns_lab, clock, expect=PROD, settle="100s", interval="1m").apply(ctx)
    assert lines[0] == ("resuming the wait begun at 2027-01-15T08:00:00Z; all servers agreed "
                        "since 2027-01-15T08:00:10Z")
    assert sum(clock.slept) == 60  # until T0+110, not another 100s
    assert ctx.progress["started"] == T0
    assert "since 2027-01-15T08:00:10Z (settled 1m40s)" in outcome.summary


def test_resume_keeps_the_original_deadline(dns_lab: DnsLab, tmp_path: Path) -> None:
    clock = FakeClock(T0 + 3600)
    ctx, _, _ = make_ctx(tmp_path, dns_lab, sleep=clock.sleep,
                         deadline=time.monotonic() + 3600)  # the restarted attempt's own budget
    ctx.progress.update({"started": T0, "give_up_at": T0 + 3600, "agreed_since": None})
    with pytest.raises(StepError, match=r"^timeout after 1h waiting for goc.example.test. CNAME: "
                                        r"0/2 servers answer standby"):
        waiter(dns_lab, clock).apply(ctx)
    assert clock.slept == []
    assert ctx.progress == {}  # a later restore waits afresh instead of timing out at once


def test_stop_request_leaves_progress_for_the_resume(dns_lab: DnsLab, tmp_path: Path) -> None:
    clock = FakeClock()
    ctx, _, saved = make_ctx(tmp_path, dns_lab, sleep=clock.sleep, should_stop=lambda: True)
    with pytest.raises(StepError, match="resumes where it left off") as err:
        waiter(dns_lab, clock, expect=PROD, settle="1h").apply(ctx)
    assert err.value.retryable
    assert saved[-1]["agreed_since"] == T0


def test_a_server_that_is_down_is_named(dns_lab: DnsLab, tmp_path: Path) -> None:
    dns_lab.secondary.stop()
    ctx, _, _ = make_ctx(tmp_path, dns_lab, deadline=time.monotonic() + 0.5)
    with pytest.raises(StepError) as err:
        waiter(dns_lab, expect=PROD, settle=0, interval="100ms").apply(ctx)
    assert (f"1/2 servers answer {PROD}; {dns_lab.secondary.address}: no answer (connection "
            "refused") in str(err.value)


def test_plan_shows_what_each_server_answers_now(dns_lab: DnsLab, tmp_path: Path) -> None:
    ctx, _, _ = make_ctx(tmp_path, dns_lab)
    plan = waiter(dns_lab, settle="2h").plan(ctx)
    assert plan.summary == (f"wait until 2 servers answer {NAME} CNAME {STANDBY}, then 2h; now "
                            f"0/2 servers answer {STANDBY}; {dns_lab.primary.address} still "
                            f"answers {PROD}; {dns_lab.secondary.address} still answers {PROD}")
    assert not plan.done and plan.problem is None


def test_default_servers_are_the_zones_ns_records(dns_lab: DnsLab, tmp_path: Path,
                                                   lab_resolver: object) -> None:
    # The system resolver asks the lab's primary, which serves the zone's NS and their
    # addresses: ns1 and ns2 are both 127.0.0.1, asked once on the primary's port.
    action = WaitDns({"name": NAME, "expect": PROD, "port": dns_lab.primary.port,
                      "settle": 0, "interval": "100ms"})
    ctx, lines, _ = make_ctx(tmp_path, dns_lab)
    outcome = action.apply(ctx)
    assert outcome.summary.startswith(f"all 1 servers answer {NAME} CNAME {PROD}")
    assert lines[0] == f"1/1 servers answer {PROD}"
    assert not outcome.changed  # agreed at the first look and settle 0: nothing to wait for
    assert outcome.after == {f"ns1.example.test. ({dns_lab.primary.address})": PROD}


def test_no_ns_records_is_a_plan_problem(dns_lab: DnsLab, tmp_path: Path,
                                         lab_resolver: object) -> None:
    action = WaitDns({"name": "goc.nothere.test.", "zone": "nothere.test", "expect": PROD})
    ctx, _, _ = make_ctx(tmp_path, dns_lab)
    plan = action.plan(ctx)
    assert plan.problem and plan.problem.startswith(
        "cannot find the name servers of zone nothere.test.")
    assert plan.problem.endswith("list them in `servers`")
