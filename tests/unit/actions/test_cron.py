"""disable_cron / enable_cron: parking keeps mode and owner; idempotent; plan is read-only."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from actions.base import Context
from actions.cron import DisableCron, EnableCron, move_file
from actions.registry import build_step
from engine.errors import StepError
from tests.support import step_context


def _ctx(state_dir: Path) -> Context:
    return step_context(state_dir, policy_name="drill", step_id="engage/2")


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p): (p.lstat().st_mtime_ns, p.lstat().st_mode, p.lstat().st_size)
            for p in [root, *root.rglob("*")]}


@pytest.fixture
def cron_file(tmp_path: Path) -> Path:
    cron_d = tmp_path / "etc" / "cron.d"
    cron_d.mkdir(parents=True)
    cron = cron_d / "failover-engine-import"
    cron.write_text("17 * * * * root failover-engine job import\n")
    cron.chmod(0o640)
    os.utime(cron, (1_700_000_000, 1_700_000_000))
    return cron


def test_park_and_unpark_keep_mode_owner_and_content(tmp_path: Path, cron_file: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    ctx = _ctx(state)
    original = cron_file.stat()
    disable = build_step("disable_cron", {"file": str(cron_file)})
    assert isinstance(disable, DisableCron)
    outcome = disable.apply(ctx)
    parked = state / "parked" / cron_file.name
    assert outcome.changed and outcome.after == str(parked)
    assert not cron_file.exists()
    assert parked.stat().st_mode == original.st_mode
    assert (state / "parked").stat().st_mode & 0o777 == 0o700

    enable = EnableCron({"file": str(cron_file)})
    assert enable.apply(ctx).changed
    back = cron_file.stat()
    assert (back.st_mode, back.st_uid, back.st_gid, back.st_mtime) == (
        original.st_mode, original.st_uid, original.st_gid, original.st_mtime)
    assert cron_file.read_text().startswith("17 * * * *")
    assert not parked.exists()


def test_idempotent(tmp_path: Path, cron_file: Path) -> None:
    ctx = _ctx(tmp_path)
    disable = DisableCron({"file": str(cron_file)})
    disable.apply(ctx)
    assert disable.plan(ctx).done
    second = disable.apply(ctx)
    assert not second.changed and "already parked" in second.summary
    enable = EnableCron({"file": str(cron_file)})
    enable.apply(ctx)
    assert enable.plan(ctx).done
    again = enable.apply(ctx)
    assert not again.changed and "already back in place" in again.summary


def test_plan_changes_nothing(tmp_path: Path, cron_file: Path) -> None:
    ctx = _ctx(tmp_path)
    before = _snapshot(tmp_path)
    plan = DisableCron({"file": str(cron_file)}).plan(ctx)
    assert not plan.done and plan.problem is None
    assert "would park" in plan.summary and "mode 0640" in plan.summary
    assert _snapshot(tmp_path) == before  # not even the parked/ directory is created


def test_custom_park_dir(tmp_path: Path, cron_file: Path) -> None:
    park = tmp_path / "elsewhere"
    ctx = _ctx(tmp_path)
    DisableCron({"file": str(cron_file), "park_dir": str(park)}).apply(ctx)
    assert (park / cron_file.name).exists()
    EnableCron({"file": str(cron_file), "park_dir": str(park)}).apply(ctx)
    assert cron_file.exists()


def test_neither_in_place_nor_parked(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    step = DisableCron({"file": str(tmp_path / "cron.d" / "gone")})
    assert "is neither in place nor parked" in (step.plan(ctx).problem or "")
    with pytest.raises(StepError, match=r"gone is neither in place nor parked as .*parked/gone"):
        step.apply(ctx)
    with pytest.raises(StepError, match="neither in place nor parked"):
        EnableCron({"file": str(tmp_path / "cron.d" / "gone")}).apply(ctx)


def test_in_both_places(tmp_path: Path, cron_file: Path) -> None:
    ctx = _ctx(tmp_path)
    DisableCron({"file": str(cron_file)}).apply(ctx)
    cron_file.write_text("reinstalled by a package\n")
    with pytest.raises(StepError, match="exists both in place and parked"):
        EnableCron({"file": str(cron_file)}).apply(ctx)
    assert cron_file.read_text() == "reinstalled by a package\n"


def test_cross_filesystem_move_copies_fsyncs_and_unlinks(tmp_path: Path, cron_file: Path) -> None:
    def no_rename(src: Path, dst: Path) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    original = cron_file.stat()
    target = tmp_path / "parked-copy"
    move_file(cron_file, target, rename=no_rename)
    assert not cron_file.exists()
    copied = target.stat()
    assert (copied.st_mode, copied.st_uid, copied.st_mtime) == (
        original.st_mode, original.st_uid, original.st_mtime)
    assert target.read_text().startswith("17 * * * *")
    assert not list(tmp_path.glob(".*partial"))


def test_relative_paths_are_taken_from_the_policy_directory(tmp_path: Path,
                                                            cron_file: Path) -> None:
    ctx = _ctx(tmp_path / "state")
    ctx.policy = SimpleNamespace(path=tmp_path / "policy.yaml")
    DisableCron({"file": "etc/cron.d/failover-engine-import", "park_dir": "parked-here"}).apply(ctx)
    assert (tmp_path / "parked-here" / cron_file.name).exists()
    EnableCron({"file": "etc/cron.d/failover-engine-import", "park_dir": "parked-here"}).apply(ctx)
    assert cron_file.exists()
