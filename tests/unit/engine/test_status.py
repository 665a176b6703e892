"""`status` and `status --json` after a scripted sequence of outcomes match the state."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from engine.commands import status
from engine.state import EngineState, StateStore, isotime
from tests.support import REPO
from tests.unit.engine.test_render import make_policy

NOW = datetime(2026, 11, 26, 7, 0, 0, tzinfo=UTC)
DOCUMENTED = {
    "format", "policy", "policy_file", "state_dir", "now", "state", "since", "paused",
    "paused_reason", "failures", "failures_to_engage", "cycles", "interval_seconds",
    "last_cycle", "last_outcome", "next_probe", "probes", "jobs", "lock", "spooled_mail",
    "hold_down_until", "hold_down_active", "aborted_reason", "run", "last_run", "counts",
    "never_run", "down_since", "disarmed", "disarmed_since", "guards_failed_cycles",
    "live_data_problems", "outbox", "readiness", "quorum",
}


@pytest.fixture
def policy(tmp_path, monkeypatch):
    policy = make_policy(tmp_path)
    monkeypatch.setattr(status, "load", lambda args: policy)
    monkeypatch.setattr(status, "utcnow", lambda: NOW)
    return policy


def scripted(store: StateStore) -> EngineState:
    """Three cycles: ok, failed, failed (guard up) → suspect 2/30; an engage/restore before."""
    state = EngineState(state="suspect", since=isotime(NOW - timedelta(minutes=10)))
    for minute, ok in ((20, True), (10, False), (0, False)):
        at = isotime(NOW - timedelta(minutes=minute, seconds=30))
        state.cycles += 1
        state.failures = 0 if ok else state.failures + 1
        state.last_cycle = at
        state.last_probes = {
            "production": {"ok": ok, "latency": 0.2 if ok else 30.0, "at": at,
                           "detail": "200 OK" if ok else "timed out after 30s"},
            "internet": {"ok": True, "latency": 0.05, "at": at, "detail": "200 OK"},
        }
        state.last_outcome = f"probe production {'ok' if ok else 'failed'}"
    state.last_run = {"phase": "restore", "started": isotime(NOW - timedelta(hours=3)),
                      "finished": isotime(NOW - timedelta(hours=1)), "ok": True,
                      "steps": [{"step": "nsupdate", "status": "applied",
                                 "summary": "goc → production"}]}
    state.hold_down_until = isotime(NOW + timedelta(minutes=1))
    state.counts = {"engages": 1, "restores": 1}
    store.save(state)
    return state


def run_status(as_json: bool) -> int:
    return status.main(argparse.Namespace(policy=None, state_dir=None, json=as_json))


def test_json_status_matches_the_state(policy, capsys):
    store = StateStore(policy.state_dir)
    scripted(store)
    jobs = policy.state_dir / "jobs"
    jobs.mkdir()
    (jobs / "import.json").write_text(json.dumps({
        "ok": False, "last_run": isotime(NOW - timedelta(minutes=43)),
        "last_success": isotime(NOW - timedelta(hours=1, minutes=43)),
        "last_error": "step 1 (fetch) failed: connection refused", "duration": 2.5,
        "data_completed": isotime(NOW - timedelta(hours=2))}))
    (policy.state_dir / "spool").mkdir()
    for n in range(2):
        (policy.state_dir / "spool" / f"{n}.eml").write_text("mail")
    (policy.state_dir / "paused").write_text("paused at x: patching\n")

    assert run_status(True) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == DOCUMENTED
    assert (data["state"], data["failures"], data["failures_to_engage"]) == ("suspect", 2, 30)
    assert data["cycles"] == 3
    assert data["next_probe"] == isotime(NOW - timedelta(seconds=30) + timedelta(minutes=10))
    assert data["probes"]["production"] == {
        "role": "target", "ok": False, "latency_seconds": 30.0,
        "at": isotime(NOW - timedelta(seconds=30)), "detail": "timed out after 30s",
        "cert_not_after": None, "cert_days_left": None}
    assert data["probes"]["internet"]["role"] == "guard"
    assert data["jobs"]["import"]["data_age_seconds"] == 7200
    assert data["jobs"]["import"]["last_error"].startswith("step 1 (fetch)")
    assert data["jobs"]["archive"]["last_success"] is None  # never ran
    assert data["jobs"]["manual"]["schedule"] is None
    assert (data["spooled_mail"], data["paused"], data["paused_reason"]) == (
        2, True, "paused at x: patching")
    assert data["hold_down_active"] is True
    assert data["lock"] is None
    assert data["last_run"]["ok"] is True and data["last_run"]["steps"][0]["step"] == "nsupdate"
    assert data["run"] is None
    assert data["counts"] == {"engages": 1, "restores": 1}


def test_text_status_names_everything(policy, capsys):
    store = StateStore(policy.state_dir)
    scripted(store)
    with store.hold("run"):
        assert run_status(False) == 0
    out = capsys.readouterr().out
    assert "state: suspect since " in out and "(10m ago)" in out
    assert "failures: 2/30" in out
    assert "production [target]: FAILED in 30s (timed out after 30s)" in out
    assert "internet [guard]: ok in 50ms" in out
    assert "lock: pid " in out and ", run, since" in out
    assert "hold-down: until" in out and "(active)" in out
    assert "import: last success never" in out
    assert "last run: restore ok" in out
    assert "spooled mail: 0" in out


def test_fresh_engine_and_an_engage_in_progress(policy, capsys):
    store = StateStore(policy.state_dir)
    assert run_status(False) == 0  # no state file, no jobs dir: still fine
    assert "last cycle: never" in capsys.readouterr().out
    store.save(EngineState(state="aborted", aborted_reason="engage step 4 (nsupdate) failed: x",
                           run={"phase": "engage", "started": isotime(NOW), "progress": {},
                                "steps": {"0": {}, "1": {}, "2": {}},
                                "failed": {"step": 3, "error": "REFUSED", "at": isotime(NOW)}}))
    run_status(True)
    data = json.loads(capsys.readouterr().out)
    assert data["run"] == {"phase": "engage", "started": isotime(NOW), "steps_done": 3,
                           "failed": {"step": 3, "error": "REFUSED", "at": isotime(NOW)}}
    run_status(False)
    out = capsys.readouterr().out
    assert "aborted: engage step 4 (nsupdate) failed: x" in out
    assert "current run: engage started" in out and "3 steps done; stopped: REFUSED" in out


def test_status_does_not_import_the_heavy_clients():
    code = ("import sys, engine.commands.status, engine.commands.check_engine; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'dns', 'paramiko', 'pymysql', 'oracledb', 'transitions', 'actions'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_status_json_through_the_command_line(tmp_path):
    from tests.unit.engine.test_install import POLICY_YAML, cli

    policy_file = tmp_path / "demo.yaml"
    policy_file.write_text(POLICY_YAML.format(state=tmp_path / "state"))
    StateStore(tmp_path / "state").save(EngineState(state="suspect", failures=2))
    result = cli("--policy", str(policy_file), "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == DOCUMENTED
    assert (data["policy"], data["state"], data["failures"], data["failures_to_engage"]) == (
        "demo", "suspect", 2, 3)
    assert list(data["jobs"]) == ["tick"] and list(data["probes"]) == ["production"]


def test_a_damaged_job_record_is_reported_not_fatal(policy, capsys):
    from engine.jobrecords import read_job_records

    assert read_job_records(policy.state_dir) == {}  # no state dir at all
    jobs = policy.state_dir / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "import.json").write_text('{"ok": tru')  # a half-written record
    (jobs / "archive.json").write_text("[1, 2]")
    (jobs / "import.lock").write_text("")  # locks are not records
    records = read_job_records(policy.state_dir)
    assert sorted(records) == ["archive", "import"]
    assert "not a JSON object" in records["archive"]["unreadable"]
    assert run_status(True) == 0
    data = json.loads(capsys.readouterr().out)
    assert str(jobs / "import.json") in data["jobs"]["import"]["last_error"]
    assert data["jobs"]["import"]["ok"] is None
