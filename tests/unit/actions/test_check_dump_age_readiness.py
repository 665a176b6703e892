"""check_dump_age's readiness: it passes only with a margin of one import interval, which
comes from the schedule of the job writing the status log (else one hour)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from actions.base import Context
from actions.check_dump_age import CheckDumpAge
from tests.support import step_context

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _ctx(tmp_path: Path, jobs: dict | None = None) -> Context:
    policy = SimpleNamespace(path=tmp_path / "policy.yaml", jobs=jobs or {})
    return step_context(tmp_path, step_id="engage step 2", policy=policy)


def _log(tmp_path: Path, age: timedelta, *lines: str) -> Path:
    path = tmp_path / "import.log"
    stamp = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(f"{stamp} INFO: completed ok\n" + "".join(f"{x}\n" for x in lines))
    return path


def _step(log: Path) -> CheckDumpAge:
    return CheckDumpAge({"status_log": str(log), "max_age": "7h", "require_last_ok": True},
                        now=lambda: NOW)


def test_fresh_data_has_a_margin(tmp_path: Path) -> None:
    before = _log(tmp_path, timedelta(hours=1)).read_bytes()
    result = _step(tmp_path / "import.log").readiness(_ctx(tmp_path))
    assert result.ok and result.reason == "ok"
    assert result.detail.endswith("margin 5h after the next import interval (1h)")
    assert (tmp_path / "import.log").read_bytes() == before


def test_no_margin_left_is_a_warning(tmp_path: Path) -> None:
    log = _log(tmp_path, timedelta(hours=6, minutes=30))
    step = _step(log)
    assert step.plan(_ctx(tmp_path)).problem is None  # engage would still pass now
    result = step.readiness(_ctx(tmp_path))
    assert (result.ok, result.reason, result.warning) == (False, "margin", True)
    assert "one more import interval (1h) without a success and engage refuses" in result.detail


def test_the_margin_follows_the_jobs_schedule(tmp_path: Path) -> None:
    log = _log(tmp_path, timedelta(hours=2))
    job = SimpleNamespace(status_log=log, schedule="17 */6 * * *")  # every six hours
    result = _step(log).readiness(_ctx(tmp_path, {"import": job}))
    assert (result.ok, result.reason) == (False, "margin")
    assert "(6h)" in result.detail


def test_failures_keep_their_own_reason(tmp_path: Path) -> None:
    assert _step(tmp_path / "never.log").readiness(_ctx(tmp_path)).reason == "unreadable"
    stale = _step(_log(tmp_path, timedelta(hours=8))).readiness(_ctx(tmp_path))
    assert (stale.ok, stale.reason, stale.warning) == (False, "stale", False)
    failed = _log(tmp_path, timedelta(hours=1), "2026-11-30T11:30:00Z ERROR: unzip failed")
    result = _step(failed).readiness(_ctx(tmp_path))
    assert (result.ok, result.reason) == (False, "last_failed")
