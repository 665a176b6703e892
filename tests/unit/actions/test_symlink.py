"""symlink: atomic switch, old target remembered, idempotent, never replaces a real file."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from actions.base import Context
from actions.registry import build_step
from actions.symlink import Symlink
from engine.errors import StepError
from tests.support import step_context


def _ctx(state_dir: Path) -> Context:
    return step_context(state_dir, policy_name="drill", step_id="engage/1")


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p): (p.lstat().st_mtime_ns, p.lstat().st_mode, p.lstat().st_size)
            for p in [root, *root.rglob("*")]}


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    (tmp_path / "production.pem").write_text("prod")
    (tmp_path / "failover.pem").write_text("failover")
    # Absolute targets: the test write guard treats os.symlink's first argument as the path
    # written, so a relative target would look like a write outside the temp dir.
    os.symlink(tmp_path / "production.pem", tmp_path / "hostcert.pem")
    return tmp_path


def test_switch_remembers_old_target_and_is_idempotent(certs: Path) -> None:
    ctx = _ctx(certs)
    saved: list[dict] = []
    ctx.save_progress = lambda: saved.append(dict(ctx.progress))
    prod, failover = str(certs / "production.pem"), str(certs / "failover.pem")
    step = Symlink({"link": str(certs / "hostcert.pem"), "target": failover})
    plan = step.plan(ctx)
    assert (plan.before, plan.after, plan.done, plan.problem) == (prod, failover, False, None)
    outcome = step.apply(ctx)
    assert outcome.changed and outcome.before == prod
    assert saved == [{"old_target": prod}]
    assert (certs / "hostcert.pem").read_text() == "failover"
    assert not [p for p in certs.iterdir() if p.name.startswith(".")]
    assert step.plan(ctx).done
    assert not step.apply(ctx).changed


def test_creates_a_missing_link(certs: Path) -> None:
    step = build_step("symlink", {"link": str(certs / "new.pem"),
                                  "target": str(certs / "failover.pem")})
    assert isinstance(step, Symlink)
    outcome = step.apply(_ctx(certs))
    assert outcome.before is None and outcome.changed
    assert os.readlink(certs / "new.pem") == str(certs / "failover.pem")


def test_plan_changes_nothing(certs: Path) -> None:
    before = _snapshot(certs)
    step = Symlink({"link": str(certs / "hostcert.pem"), "target": str(certs / "failover.pem")})
    assert not step.plan(_ctx(certs)).done
    assert _snapshot(certs) == before


def test_refuses_to_replace_a_regular_file(certs: Path) -> None:
    (certs / "real.pem").write_text("keep me")
    step = Symlink({"link": str(certs / "real.pem"), "target": str(certs / "failover.pem")})
    assert "is not a symbolic link" in (step.plan(_ctx(certs)).problem or "")
    with pytest.raises(StepError, match="real.pem: exists and is not a symbolic link"):
        step.apply(_ctx(certs))
    assert (certs / "real.pem").read_text() == "keep me"


def test_missing_target(certs: Path) -> None:
    step = Symlink({"link": str(certs / "hostcert.pem"), "target": "nope.pem"})
    assert "target nope.pem does not exist" in (step.plan(_ctx(certs)).problem or "")
    with pytest.raises(StepError, match="target nope.pem does not exist"):
        step.apply(_ctx(certs))
    assert os.readlink(certs / "hostcert.pem") == str(certs / "production.pem")
