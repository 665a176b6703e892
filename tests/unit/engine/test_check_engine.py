"""`check engine` returns each Nagios code with one line and perfdata."""
from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from engine.commands import check_engine
from engine.errors import PolicyError
from engine.state import EngineState, StateStore, isotime
from tests.unit.engine.test_render import make_policy

NOW = datetime(2026, 11, 26, 7, 0, 0, tzinfo=UTC)


@pytest.fixture
def policy(tmp_path, monkeypatch):
    policy = make_policy(tmp_path)  # interval 10m: stale after 30m
    monkeypatch.setattr(check_engine, "load", lambda args: policy)
    monkeypatch.setattr(check_engine, "utcnow", lambda: NOW)
    return policy


def check(capsys) -> tuple[int, str]:
    code = check_engine.main(argparse.Namespace(policy=None, state_dir=None))
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return code, out.strip()


def save(policy, **fields) -> None:
    StateStore(policy.state_dir).save(EngineState(**fields))


def ago(**delta) -> str:
    return isotime(NOW - timedelta(**delta))


def test_ok_when_watching_and_cycling(policy, capsys):
    save(policy, state="watching", last_cycle=ago(minutes=2))
    code, line = check(capsys)
    assert code == 0
    assert line == ("ENGINE OK - policy gocdb watching, last cycle 2m ago, failures 0/30 | "
                    "cycle_age=120s;;1800;0 failures=0;;30;0 outbox_depth=0;;;0 "
                    "outbox_oldest_age=0s;600;;0")


def test_suspect_is_still_ok(policy, capsys):
    save(policy, state="suspect", failures=7, last_cycle=ago(minutes=9))
    code, line = check(capsys)
    assert code == 0 and "failures 7/30" in line


@pytest.mark.parametrize(("fields", "paused", "words"), [
    ({"state": "engaged"}, False, "failover engaged since"),
    ({"state": "paused"}, False, "maintenance mode"),
    ({"state": "watching"}, True, "maintenance mode"),
])
def test_warning_when_engaged_or_paused(policy, capsys, fields, paused, words):
    save(policy, last_cycle=ago(minutes=1), **fields)
    if paused:
        (policy.state_dir / "paused").write_text("alice\n")
    code, line = check(capsys)
    assert code == 1 and line.startswith("ENGINE WARNING - ") and words in line


@pytest.mark.parametrize(("fields", "words"), [
    ({"last_cycle": None}, "never completed a probe cycle"),
    ({"last_cycle": ago(minutes=31)}, "no probe cycle for 31m (more than 3 intervals of 10m)"),
    ({"state": "engaged", "last_cycle": ago(hours=2)}, "no probe cycle for 2h"),
    ({"state": "aborted", "aborted_reason": "engage step 4 (nsupdate) failed: REFUSED",
      "last_cycle": ago(minutes=1)}, "aborted: engage step 4 (nsupdate) failed: REFUSED"),
    ({"state": "aborted", "aborted_reason": "a | b\nc"}, "aborted: a / b c;"),
])
def test_critical_when_stale_never_or_aborted(policy, capsys, fields, words):
    save(policy, **{"state": "watching", **fields})
    code, line = check(capsys)
    assert code == 2 and line.startswith("ENGINE CRITICAL - ") and words in line


def test_a_long_restore_holding_the_lock_is_a_warning(policy, capsys):
    run = {"phase": "restore", "started": ago(hours=2), "steps": {"0": {}, "1": {}},
           "progress": {}}
    save(policy, state="restoring", last_cycle=ago(hours=2), run=run)
    store = StateStore(policy.state_dir)
    with store.hold("run"):
        code, line = check(capsys)
    assert code == 1
    assert f"restore in progress since {ago(hours=2)} (2 steps done; pid " in line
    code, line = check(capsys)  # nobody holds the lock: the restore died half-way
    assert code == 2 and "no probe cycle for 2h" in line


def test_exactly_three_intervals_is_not_yet_stale(policy, capsys):
    save(policy, last_cycle=ago(minutes=30))
    assert check(capsys)[0] == 0


def test_unknown_on_a_damaged_state_file(policy, capsys):
    policy.state_dir.mkdir()
    (policy.state_dir / "state.json").write_text("{not json")
    code, line = check(capsys)
    assert code == 3 and line.startswith("ENGINE UNKNOWN - ") and "state.json" in line


def test_unknown_on_a_bad_policy_or_a_bug(policy, capsys, monkeypatch):
    def bad(args):
        raise PolicyError(["p.yaml:3:1: monitor: 'interval' is a required property", "more"])

    monkeypatch.setattr(check_engine, "load", bad)
    code, line = check(capsys)
    assert (code, line) == (3, "ENGINE UNKNOWN - p.yaml:3:1: monitor: 'interval' is a required "
                               "property")
    monkeypatch.setattr(check_engine, "load", lambda args: 1 / 0)
    code, line = check(capsys)
    assert code == 3 and "internal error (ZeroDivisionError" in line


def test_codes_through_the_command_line(tmp_path):
    from tests.unit.engine.test_install import POLICY_YAML, cli

    policy_file = tmp_path / "demo.yaml"
    policy_file.write_text(POLICY_YAML.format(state=tmp_path / "state"))
    never = cli("--policy", str(policy_file), "check", "engine")
    assert never.returncode == 2 and never.stdout.startswith("ENGINE CRITICAL - policy demo")
    StateStore(tmp_path / "state").save(EngineState(state="engaged", last_cycle=isotime()))
    engaged = cli("--policy", str(policy_file), "check", "engine")
    assert engaged.returncode == 1 and engaged.stdout.startswith("ENGINE WARNING")
    missing = cli("--policy", str(tmp_path / "nope.yaml"), "check", "engine")
    assert missing.returncode == 3 and "UNKNOWN" in missing.stdout + missing.stderr


def test_disarmed_is_warning_with_the_reason(policy, capsys):
    save(policy, state="watching", last_cycle=ago(minutes=2), disarmed="the target probe "
         "production cannot run: the client certificate /c.pem expired on 2026-11-20",
         disarmed_since=ago(hours=1))
    code, line = check(capsys)
    assert code == 1
    assert "ENGINE WARNING" in line and "the failover is disarmed: the target probe" in line


def test_a_certificate_expiring_soon_is_warning_and_perfdata(policy, capsys):
    probes = {"production": {"ok": True, "cert_not_after": isotime(NOW + timedelta(days=5))}}
    save(policy, state="watching", last_cycle=ago(minutes=2), last_probes=probes)
    code, line = check(capsys)
    assert code == 1 and "client certificate of probe production expires in 5d" in line
    assert "cert_days_left=5.0;14;0" in line
    code = check_engine.main(argparse.Namespace(policy=None, state_dir=None,
                                                cert_warning="2d"))
    assert code == 0 and capsys.readouterr().out.startswith("ENGINE OK")


def test_engaged_shows_down_for_instead_of_the_count(policy, capsys):
    save(policy, state="engaged", since=ago(hours=1), last_cycle=ago(minutes=2),
         failures=30, down_since=ago(hours=6))
    code, line = check(capsys)
    assert code == 1 and "production down for 6h" in line and "failures 30/" not in line
