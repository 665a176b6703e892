"""`failover-engine dns show` against a real BIND 9 primary and a secondary that can lag.

`dns show` builds the policy's nsupdate and wait_dns steps and asks them which servers
they read, so it shows exactly the servers wait_dns waits on (plus the primary, marked
when nothing waits on it); these tests check that against the wait_dns step itself.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from actions.nsupdate import NsUpdate
from actions.registry import build_step
from actions.wait_dns import WaitDns
from engine.commands import dns as dns_command
from engine.drillkit.named import DnsLab
from engine.policy import load_policy
from tests.fixtures.bind import PROD, STANDBY
from tests.support import REPO, step_context

NAME = "goc.example.test."


def write_policy(tmp_path: Path, lab: DnsLab, wait: str | None = "servers") -> Path:
    """A policy repointing NAME on the lab's primary; `wait` is the restore's wait_dns
    options after name and expect (`servers` lists both lab servers; None: no wait_dns)."""
    assert lab.primary is not None
    base = (REPO / "tests" / "fixtures" / "policies" / "valid.yaml").read_text()
    base = base.split("\nengage:")[0] + "\n"
    keyfile = tmp_path / "tsig.key"
    keyfile.write_text(lab.update_key.text())
    keyfile.chmod(0o600)
    common = (f"server: {lab.primary.address}, zone: example.test., name: {NAME}, "
              "type: CNAME, ttl: 60, key: tsig")
    if wait == "servers":
        wait = f"servers: {json_list(lab.servers)}"
    text = (base.replace("state_dir: state", f"state_dir: {tmp_path / 'state'}")
            + f"secrets:\n  tsig: {keyfile}\n"
            + f"engage:\n  - nsupdate: {{{common}, expect: {PROD}, set: {STANDBY}}}\n"
            + f"restore:\n  - nsupdate: {{{common}, expect: {STANDBY}, set: {PROD}}}\n")
    if wait is not None:
        text += f"  - wait_dns: {{name: {NAME}, expect: {PROD}, {wait}}}\n"
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def json_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def dns_show(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = dns_command.main(argparse.Namespace(policy=str(path), state_dir=None))
    return code, capsys.readouterr().out.splitlines()


def switch_to_standby(lab: DnsLab, tmp_path: Path) -> None:
    assert lab.primary is not None
    ctx = step_context(tmp_path, secret=lab.update_key_file, step_id="engage/1")
    NsUpdate({"server": lab.primary.address, "zone": "example.test", "name": NAME,
              "expect": PROD, "set": STANDBY, "key": "tsig"}).apply(ctx)


def waited_on(policy_path: Path, tmp_path: Path) -> list[str]:
    """The servers the policy's wait_dns step asks, as its own plan reports them."""
    policy = load_policy(policy_path)
    [spec] = [s for s in policy.restore if s.kind == "wait_dns"]
    step = build_step(spec.kind, spec.params)
    assert isinstance(step, WaitDns)
    ctx = step_context(tmp_path, step_id="restore/2")
    plan = step.plan(ctx)
    assert plan.problem is None, plan.problem
    return list(plan.before)


def shown_servers(lines: list[str]) -> list[str]:
    """The server names of dns show's per-server lines (before the two-space column gap)."""
    return [line[2:].split("  ")[0].strip() for line in lines[1:-1]]


def test_every_server_with_its_answer_and_serial(dns_lab: DnsLab, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = dns_show(write_policy(tmp_path, dns_lab), capsys)
    assert dns_lab.primary is not None and dns_lab.secondary is not None
    primary, secondary = dns_lab.primary.address, dns_lab.secondary.address
    serial = dns_lab.serial(dns_lab.primary)
    assert lines == [
        f"{NAME} CNAME (zone example.test., primary {primary})",
        f"  {primary} (primary)  serial {serial}  {PROD}  (production)",
        f"  {secondary:<{len(primary) + 10}}  serial {serial}  {PROD}  (production)",
        "all 2 servers agree",
    ]
    assert code == 0


def test_a_lagging_secondary_exits_1_with_its_older_serial(
        dns_lab: DnsLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write_policy(tmp_path, dns_lab)
    assert dns_lab.primary is not None and dns_lab.secondary is not None
    old = dns_lab.serial(dns_lab.secondary)
    dns_lab.hold_transfers()
    try:
        switch_to_standby(dns_lab, tmp_path)
        new = dns_lab.serial(dns_lab.primary)
        code, lines = dns_show(policy, capsys)
    finally:
        dns_lab.release_transfers()
    assert code == 1
    assert new is not None and old is not None and new > old
    assert lines[1].endswith(f"serial {new}  {STANDBY}  (standby)")
    assert lines[2].endswith(f"serial {old}  {PROD}  (production)")
    assert lines[-1] == "servers disagree: 2 different answers from 2 servers"


@pytest.mark.parametrize("how", ["listed", "ns records"])
def test_dns_show_lists_the_servers_wait_dns_waits_on(
        how: str, dns_lab: DnsLab, tmp_path: Path, lab_resolver: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    # wait_dns waits on the secondary only: listed, or found as the zone's NS records (ns1
    # and ns2 are 127.0.0.1) asked on the secondary's port. An older dns show looked up NS
    # records itself, on the primary's port, and so showed only the primary here.
    assert dns_lab.primary is not None and dns_lab.secondary is not None
    secondary = dns_lab.secondary
    wait = (f'servers: ["{secondary.address}"]' if how == "listed"
            else f"zone: example.test., port: {secondary.port}")
    policy = write_policy(tmp_path, dns_lab, wait)
    dns_lab.hold_transfers()
    try:
        switch_to_standby(dns_lab, tmp_path)
        code, lines = dns_show(policy, capsys)
        waits_on = waited_on(policy, tmp_path)
    finally:
        dns_lab.release_transfers()
    expected = {"listed": [secondary.address],
                "ns records": [f"ns1.example.test. ({secondary.address})"]}[how]
    assert waits_on == expected
    assert shown_servers(lines) == [f"{dns_lab.primary.address} (primary, not waited on)",
                                    *waits_on]
    assert lines[2].endswith(f"{PROD}  (production)")  # the lag wait_dns would wait out
    assert code == 1


def test_ns_records_when_wait_dns_lists_no_servers(dns_lab: DnsLab, tmp_path: Path,
                                                   lab_resolver: object,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # ns1 and ns2 are both 127.0.0.1: on the primary's port that is the primary itself
    assert dns_lab.primary is not None
    policy = write_policy(tmp_path, dns_lab, f"port: {dns_lab.primary.port}")
    code, lines = dns_show(policy, capsys)
    [ns1] = waited_on(policy, tmp_path)
    assert ns1 == f"ns1.example.test. ({dns_lab.primary.address})"
    assert shown_servers(lines) == [f"{ns1} (primary)"]
    assert lines[-1] == "all 1 servers agree"
    assert code == 0


def test_without_wait_dns_the_zones_ns_records_on_the_primarys_port(
        dns_lab: DnsLab, tmp_path: Path, lab_resolver: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert dns_lab.primary is not None
    code, lines = dns_show(write_policy(tmp_path, dns_lab, wait=None), capsys)
    assert shown_servers(lines) == [f"{dns_lab.primary.address} (primary)"]
    assert lines[-1] == "all 1 servers agree"
    assert code == 0


def test_servers_that_cannot_be_found_exit_1_with_the_reason(
        dns_lab: DnsLab, tmp_path: Path, lab_resolver: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the lab's primary does not serve nothere.test: wait_dns could not find its servers
    policy = write_policy(tmp_path, dns_lab, "zone: nothere.test.")
    code, lines = dns_show(policy, capsys)
    assert lines[1].startswith("  wait_dns (restore[1]): cannot find the name servers of zone "
                               "nothere.test.")
    assert code == 1


def test_a_server_that_does_not_answer_is_named(dns_lab: DnsLab, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    policy = write_policy(tmp_path, dns_lab)
    assert dns_lab.secondary is not None
    dns_lab.secondary.stop()
    code, lines = dns_show(policy, capsys)
    assert code == 1
    assert f"{dns_lab.secondary.address}" in lines[2] and "connection refused" in lines[2]
    assert lines[-1] == "1 of 2 servers did not answer"
