"""check_dump_age: the engage precondition reads the status log with engine.statuslog."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from actions.base import Context
from actions.check_dump_age import CheckDumpAge
from actions.registry import step_class
from engine.errors import StepError
from tests.support import REPO, step_context

NOW = datetime(2023, 1, 1, 12, 0, tzinfo=UTC)


def _ctx(tmp_path: Path, logs: list[str]) -> Context:
    return step_context(tmp_path, step_id="engage.1", log=logs.append)


def _step(log: Path, max_age: str = "7h", **extra: object) -> CheckDumpAge:
    return CheckDumpAge({"status_log": str(log), "max_age": max_age, **extra}, now=lambda: NOW)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "import.log"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_registered() -> None:
    assert step_class("check_dump_age") is CheckDumpAge


def test_recent_success_passes_and_reports_age(tmp_path: Path) -> None:
    log = _write(tmp_path, ["2023-01-01T10:00:00+0000",
                            "2023-01-01T10:01:00+0000 INFO: completed ok"])
    step = _step(log)
    plan = step.plan(_ctx(tmp_path, []))
    assert plan.problem is None and not plan.done
    assert plan.summary == "last import completed ok 1h59m ago (max 7h)"
    messages: list[str] = []
    outcome = step.apply(_ctx(tmp_path, messages))
    assert not outcome.changed
    assert outcome.after == "2023-01-01T10:01:00+00:00"
    assert messages == ["check_dump_age: last import completed ok 1h59m ago (max 7h)"]


def test_old_success_fails_naming_the_log(tmp_path: Path) -> None:
    log = _write(tmp_path, ["2023-01-01T04:00:00+0000 INFO: completed ok"])
    step = _step(log)
    plan = step.plan(_ctx(tmp_path, []))
    assert plan.problem is not None and "8h ago, older than max_age 7h" in plan.problem
    with pytest.raises(StepError, match=r"import\.log: last successful import was 8h ago") as err:
        step.apply(_ctx(tmp_path, []))
    assert not err.value.retryable


def test_never_succeeded_fails(tmp_path: Path) -> None:
    log = _write(tmp_path, ["2023-01-01T11:00:00+0000", "An Error"])
    with pytest.raises(StepError, match="has no successful import"):
        _step(log).apply(_ctx(tmp_path, []))


def test_missing_log_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    step = _step(tmp_path / "absent.log")
    plan = step.plan(_ctx(tmp_path, []))
    assert plan.problem is not None and "absent.log does not exist" in plan.problem
    with pytest.raises(StepError, match="absent.log does not exist"):
        step.apply(_ctx(tmp_path, []))


def test_failure_after_recent_success(tmp_path: Path) -> None:
    log = _write(tmp_path, [
        "2023-01-01T11:00:00+0000", "2023-01-01T11:01:00+0000 INFO: completed ok",
        "2023-01-01T11:50:00+0000", "ORA-39002: invalid operation",
    ])
    # Like the original check: a later failure does not make a recent success stale ...
    plan = _step(log).plan(_ctx(tmp_path, []))
    assert plan.problem is None and "a later run failed (line 4)" in plan.summary
    # ... but require_last_ok reproduces the engage script's "last line must be completed ok".
    strict = _step(log, require_last_ok=True)
    with pytest.raises(StepError, match=r"line 4: the last run failed \(ORA-39002"):
        strict.apply(_ctx(tmp_path, []))


def test_require_last_ok_passes_when_last_run_succeeded(tmp_path: Path) -> None:
    log = _write(tmp_path, ["2023-01-01T10:00:00+0000 ERROR: scp failed",
                            "2023-01-01T11:00:00+0000 INFO: completed ok"])
    assert _step(log, require_last_ok=True).plan(_ctx(tmp_path, [])).problem is None


def test_timezone_offsets_are_honoured(tmp_path: Path) -> None:
    # 05:30+0100 is 04:30 UTC, 7h30m before NOW: stale, although its digits look 6h30m old.
    log = _write(tmp_path, ["2023-01-01T05:30:00+0100 INFO: completed ok"])
    assert _step(log).plan(_ctx(tmp_path, [])).problem is not None
    log = _write(tmp_path, ["2023-01-01T05:30:00Z INFO: completed ok"])
    assert _step(log).plan(_ctx(tmp_path, [])).problem is None


def test_schema_fragment_accepts_and_rejects() -> None:
    from engine.schemacheck import SCHEMA_BASE, make_validator
    from engine.schemakeywords import extend_validator

    by_id = {}
    for name in ("check_dump_age", "common"):
        document = json.loads((REPO / f"schemas/steps/{name}.json").read_text())
        document["$id"] = SCHEMA_BASE + f"steps/{name}.json"
        by_id[document["$id"]] = document
    # The project's validator: durations are checked by its x-duration keyword.
    validator = make_validator(extend_validator(jsonschema.Draft202012Validator),
                               SCHEMA_BASE + "steps/check_dump_age.json", by_id)
    good = {"status_log": "/var/log/x.log", "max_age": "7h", "require_last_ok": True,
            "timeout": "10s"}
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({"status_log": "/x", "max_age": "7 hours"}))
    assert list(validator.iter_errors({"status_log": "/x", "max_age": "7h", "maxage": 1}))
    assert list(validator.iter_errors({"max_age": "7h"}))


def test_a_success_stamped_in_the_future_never_passes_the_gate(tmp_path: Path) -> None:
    """Clock skew: a `completed ok` ahead of our clock says nothing about the data's age."""
    log = _write(tmp_path, ["2023-01-01T13:00:00+0000 INFO: completed ok"])
    plan = _step(log).plan(_ctx(tmp_path, []))
    assert plan.problem is not None
    assert "1h in the future (clock skew)" in plan.problem and "line 1" in plan.problem
    with pytest.raises(StepError, match="clock skew"):
        _step(log).apply(_ctx(tmp_path, []))


def test_a_success_a_few_seconds_ahead_is_within_tolerance(tmp_path: Path) -> None:
    log = _write(tmp_path, ["2023-01-01T12:00:03+0000 INFO: completed ok"])
    assert _step(log).plan(_ctx(tmp_path, [])).problem is None
