"""lock: present/absent, idempotent, atomic JSON, plan changes nothing."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from actions.base import Context
from actions.lock import Lock
from actions.registry import build_step
from engine.errors import StepError
from tests.support import step_context


def _ctx(state_dir: Path) -> Context:
    return step_context(state_dir, policy_name="drill", step_id="engage/4")


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p): (p.lstat().st_mtime_ns, p.lstat().st_mode, p.lstat().st_size)
            for p in [root, *root.rglob("*")]}


def test_present_creates_then_is_idempotent(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    step = build_step("lock", {"state": "present"})
    assert isinstance(step, Lock)
    plan = step.plan(ctx)
    assert not plan.done and plan.problem is None and plan.before == "absent"
    outcome = step.apply(ctx)
    assert outcome.changed
    info = json.loads((tmp_path / "engage.lock").read_text())
    assert info["policy"] == "drill" and info["time"].endswith("Z") and info["host"]
    assert (tmp_path / "engage.lock").stat().st_mode & 0o777 == 0o644
    assert step.plan(ctx).done
    assert not step.apply(ctx).changed


def test_absent_removes_then_is_idempotent(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    lock = tmp_path / "custom.lock"
    Lock({"state": "present", "file": str(lock)}).apply(ctx)
    step = Lock({"state": "absent", "file": str(lock)})
    assert not step.plan(ctx).done
    outcome = step.apply(ctx)
    assert outcome.changed and outcome.before.startswith("present since ")
    assert not lock.exists()
    assert step.plan(ctx).done
    assert not step.apply(ctx).changed


@pytest.mark.parametrize("state", ["present", "absent"])
def test_plan_changes_nothing(tmp_path: Path, state: str) -> None:
    ctx = _ctx(tmp_path)
    if state == "absent":
        Lock({"state": "present"}).apply(ctx)
    before = _snapshot(tmp_path)
    plan = Lock({"state": state}).plan(ctx)
    assert not plan.done
    assert _snapshot(tmp_path) == before


def test_missing_directory(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    step = Lock({"state": "present", "file": str(tmp_path / "no" / "such" / "x.lock")})
    assert "does not exist" in (step.plan(ctx).problem or "")
    with pytest.raises(StepError, match="cannot create it"):
        step.apply(ctx)


def test_relative_file_is_taken_from_the_policy_directory(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "state")
    ctx.policy = SimpleNamespace(path=tmp_path / "policy.yaml")
    Lock({"state": "present", "file": "engage.lock"}).apply(ctx)
    assert (tmp_path / "engage.lock").exists()


def test_plan_on_a_fresh_host_where_state_dir_is_still_to_be_created(tmp_path):
    ctx = step_context(tmp_path / "not-yet", secret=lambda name: tmp_path / name)
    plan = Lock({"state": "present"}).plan(ctx)
    assert plan.problem is None and not plan.done
    elsewhere = Lock({"state": "present", "file": str(tmp_path / "missing" / "x.lock")})
    assert "does not exist" in elsewhere.plan(ctx).problem
