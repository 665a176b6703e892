"""Where readiness shows: `status` (each check, since when, when it last passed, why it
fails), `status --json`, and the metrics (`readiness{check,reason}` 1/0, reasons bounded)."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.cli import main
from engine.metrics import render_metrics
from engine.paths import StatePaths
from engine.policy import load_policy
from engine.readiness import Check, ReadinessRecord, merge, status_data
from engine.state import EngineState
from tests.unit.engine.test_check_readiness import _policy


def _write(tmp_path: Path, record: ReadinessRecord) -> None:
    StatePaths(tmp_path / "state").readiness.write_text(record.to_json())


def _lost(tmp_path: Path) -> ReadinessRecord:
    first = merge(None, [Check("engage.1.nsupdate", True, "ok", "granted"),
                         Check("cron.1", True, "ok", "there")], 3600.0,
                  "2026-11-30T05:00:00+00:00")
    second = merge(first, [Check("engage.1.nsupdate", False, "refused_grant",
                                 "REFUSED: key k is not allowed to update goc"),
                           Check("cron.1", True, "ok", "there")], 3600.0,
                   datetime.now(UTC).isoformat(timespec="seconds"))
    _write(tmp_path, second)
    return second


def test_status_names_each_check_when_it_last_passed_and_why_it_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path)
    record = _lost(tmp_path)
    assert main(["--policy", str(policy), "status"]) == 0
    out = capsys.readouterr().out
    assert f"readiness: 1 of 2 checks FAIL (checked {record.checked_at})" in out
    assert ("  engage.1.nsupdate: FAILED (refused_grant) since "
            f"{record.checked_at}, last passed 2026-11-30T05:00:00+00:00: REFUSED: key k is "
            "not allowed to update goc") in out
    assert "  cron.1: ok" in out
    assert main(["--policy", str(policy), "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["readiness"]
    assert data["failing"] == ["engage.1.nsupdate"] and data["overdue"] is False
    assert data["checks"]["engage.1.nsupdate"]["last_ok"] == "2026-11-30T05:00:00+00:00"


def test_status_without_a_block_or_a_run_says_so(tmp_path: Path) -> None:
    assert status_data(load_policy(_policy(tmp_path, readiness=False))) == {"configured": False}
    data = status_data(load_policy(_policy(tmp_path)))
    assert data["configured"] and data["checked_at"] is None


def test_metrics_have_one_sample_per_check_with_a_bounded_reason(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path))
    record = _lost(tmp_path)
    text = render_metrics(policy, EngineState(), {}, datetime.now(UTC))
    assert ('failover_engine_readiness{policy="t",check="engage.1.nsupdate",'
            'reason="refused_grant"} 0') in text
    assert 'failover_engine_readiness{policy="t",check="cron.1",reason="ok"} 1' in text
    assert "failover_engine_readiness_checked_timestamp_seconds" in text
    # A reason outside the known set (a damaged or future record) is labelled `other`.
    raw = json.loads(record.to_json())
    raw["checks"]["cron.1"]["reason"] = "x" * 300
    StatePaths(tmp_path / "state").readiness.write_text(json.dumps(raw))
    text = render_metrics(policy, EngineState(), {}, datetime.now(UTC))
    assert 'check="cron.1",reason="other"} 1' in text


def test_no_readiness_samples_without_a_run(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path))
    assert "failover_engine_readiness{" not in render_metrics(policy, EngineState(), {},
                                                               datetime.now(UTC))
