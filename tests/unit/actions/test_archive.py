"""`archive`: dated copy or move into the archive dir, then keep/max_age pruning."""
from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actions.archive import Archive
from actions.base import Context
from engine.errors import StepError
from tests.support import step_context

NOW = datetime(2025, 11, 26, 6, 45, 0, tzinfo=UTC)


def _ctx(tmp_path: Path, input_file: Path | None = None, pending: bool = False) -> Context:
    return step_context(tmp_path / "state", secret=lambda name: tmp_path / name,
                        step_id="job:import/3", previous_output=input_file,
                        previous_output_pending=pending)


def _step(params: dict, now: datetime = NOW) -> Archive:
    step = Archive(params)
    step.clock = lambda: now
    return step


def _name(when: datetime, ext: str = ".sql") -> str:
    return when.strftime("_goc5dump_%y-%m-%d_%H_%M_%S") + ext


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    path = work / "gocdb.sql"
    path.write_bytes(b"-- MariaDB dump\n-- Dump completed\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "archive"
    directory.mkdir()
    return directory


def _old(archive_dir: Path, days: float, ext: str = ".sql") -> Path:
    path = archive_dir / _name(NOW - timedelta(days=days), ext)
    path.write_bytes(f"old dump {days}\n".encode())
    return path


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_copy_under_utc_name_then_already_archived(
    tmp_path: Path, dump: Path, archive_dir: Path
) -> None:
    step = _step({"dir": str(archive_dir)})
    ctx = _ctx(tmp_path, input_file=dump)
    expected = archive_dir / "_goc5dump_25-11-26_06_45_00.sql"
    plan = step.plan(ctx)
    assert plan.problem is None and not plan.done and plan.output == expected
    assert _names(archive_dir) == [], "plan is read-only"

    outcome = step.apply(ctx)
    assert outcome.changed and outcome.output == expected
    assert expected.read_bytes() == dump.read_bytes() and dump.exists()
    assert stat.S_IMODE(expected.stat().st_mode) == 0o600
    assert expected.stat().st_mtime_ns == dump.stat().st_mtime_ns

    later = _step({"dir": str(archive_dir)}, NOW + timedelta(minutes=5))
    assert later.plan(ctx).done
    again = later.apply(ctx)
    assert not again.changed and again.summary == f"already archived as {expected}"
    assert _names(archive_dir) == [expected.name]


def test_keep_newest_never_touches_other_files(
    tmp_path: Path, dump: Path, archive_dir: Path
) -> None:
    old = [_old(archive_dir, d) for d in (1, 2, 3)]
    (archive_dir / "README").write_text("not an archive\n")
    (archive_dir / "other.dmp").write_text("not ours\n")
    step = _step({"dir": str(archive_dir), "keep": 2})
    plan = step.plan(_ctx(tmp_path, dump))
    assert "delete 2 old archive(s)" in plan.summary
    outcome = step.apply(_ctx(tmp_path, dump))
    assert _names(archive_dir) == sorted(
        ["README", "other.dmp", old[0].name, _name(NOW)]
    )
    assert "deleted 2 old archive(s)" in outcome.summary


def test_original_behaviour_keep_1_move(tmp_path: Path, dump: Path, archive_dir: Path) -> None:
    # The original deleted the older dumps and moved the imported one into the archive.
    dmp = dump.with_suffix(".dmp")
    dump.rename(dmp)
    _old(archive_dir, 1, ".dmp")
    _old(archive_dir, 9, ".dmp")
    ctx = _ctx(tmp_path, dmp)
    outcome = _step({"dir": str(archive_dir), "keep": 1, "mode": "move"}).apply(ctx)
    assert _names(archive_dir) == [_name(NOW, ".dmp")]
    assert not dmp.exists()
    assert outcome.output == archive_dir / _name(NOW, ".dmp")
    # A re-run after the move (a crash before the journal entry) finds what it recorded.
    rerun = _step({"dir": str(archive_dir), "keep": 1, "mode": "move"}, NOW + timedelta(seconds=3))
    assert rerun.plan(ctx).done
    assert not rerun.apply(ctx).changed


def test_max_age(tmp_path: Path, dump: Path, archive_dir: Path) -> None:
    young, old = _old(archive_dir, 10), _old(archive_dir, 40)
    _step({"dir": str(archive_dir), "max_age": "30d"}).apply(_ctx(tmp_path, dump))
    assert young.exists() and not old.exists()
    assert (archive_dir / _name(NOW)).exists()


def test_never_deletes_the_file_just_archived(
    tmp_path: Path, dump: Path, archive_dir: Path
) -> None:
    # A clock behind the existing archives: the new one sorts oldest, and is still kept.
    newer = [_old(archive_dir, -d) for d in (1, 2)]
    past = NOW - timedelta(days=100)
    _step({"dir": str(archive_dir), "keep": 1, "max_age": "1d"}, past).apply(_ctx(tmp_path, dump))
    assert _names(archive_dir) == [_name(past)]
    assert not any(p.exists() for p in newer)


def test_name_taken_in_the_same_second_gets_a_number(
    tmp_path: Path, dump: Path, archive_dir: Path
) -> None:
    """Two runs within one second never collide: the second archive is `<name>-2`."""
    (archive_dir / _name(NOW)).write_bytes(b"another dump archived this very second\n")
    outcome = _step({"dir": str(archive_dir)}).apply(_ctx(tmp_path, dump))
    numbered = archive_dir / (_name(NOW, "") + "-2.sql")
    assert outcome.output == numbered and numbered.read_bytes() == dump.read_bytes()
    assert (archive_dir / _name(NOW)).read_bytes().startswith(b"another dump")
    # A third, different dump in that second is -3; the numbered ones count for keep.
    other = dump.with_name("other.sql")
    other.write_bytes(b"-- a third dump\n-- Dump completed\n")
    _step({"dir": str(archive_dir), "keep": 2}).apply(_ctx(tmp_path, other))
    assert _names(archive_dir) == [_name(NOW, "") + "-2.sql", _name(NOW, "") + "-3.sql"]


def test_numbered_archives_are_pruned_by_age(
    tmp_path: Path, dump: Path, archive_dir: Path
) -> None:
    old = archive_dir / (_name(NOW - timedelta(days=40), "") + "-2.sql")
    old.write_bytes(b"old numbered\n")
    unrelated = archive_dir / (_name(NOW - timedelta(days=40), "") + "-x.sql")
    unrelated.write_bytes(b"not ours\n")
    _step({"dir": str(archive_dir), "max_age": "30d"}).apply(_ctx(tmp_path, dump))
    assert not old.exists() and unrelated.exists()


def test_creates_a_private_archive_dir(tmp_path: Path, dump: Path) -> None:
    directory = tmp_path / "new" / "archive"
    _step({"dir": str(directory), "file": str(dump)}).apply(_ctx(tmp_path))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert _names(directory) == [_name(NOW)]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"dir": "/x", "keep": 0}, "keep must be a whole number ≥ 1"),
        ({"dir": "/x", "mode": "rename"}, "mode must be copy or move"),
        ({"dir": "/x", "name": "a/b"}, "must be a file name, not a path"),
        ({"dir": "/x", "max_age": "soon"}, "max_age:"),
        ({}, "set dir"),
    ],
)
def test_bad_options_are_step_problems(tmp_path: Path, params: dict, problem: str) -> None:
    step = Archive(params)
    assert problem in (step.plan(_ctx(tmp_path)).problem or "")
    with pytest.raises(StepError, match=problem):
        step.apply(_ctx(tmp_path))


def test_missing_input(tmp_path: Path, archive_dir: Path) -> None:
    step = _step({"dir": str(archive_dir)})
    assert "no previous step's output" in (step.plan(_ctx(tmp_path)).problem or "")
    missing = tmp_path / "gone.sql"
    assert f"{missing} does not exist" in (step.plan(_ctx(tmp_path, missing)).problem or "")


def test_planned_input_names_the_archive_it_would_get(tmp_path: Path,
                                                      archive_dir: Path) -> None:
    """The previous step only planned the file (a dry-run): no problem, the archive's name."""
    planned = tmp_path / "work" / "gocdb.sql"
    _old(archive_dir, 1)
    plan = _step({"dir": str(archive_dir), "keep": 1}).plan(_ctx(tmp_path, planned, pending=True))
    expected = archive_dir / _name(NOW)
    assert plan.problem is None and plan.output == expected
    assert plan.summary.startswith(f"would copy {planned} → {expected} (checked once it exists)")
    assert "delete 1 old archive(s)" in plan.summary
    unnamed = "the file extracted from /w/gocdb.sql.zip"
    ctx = _ctx(tmp_path, pending=True)
    ctx.previous_output = unnamed
    plan = _step({"dir": str(archive_dir)}).plan(ctx)
    assert plan.problem is None and plan.summary.startswith(f"would copy {unnamed} into")


def test_a_symlinked_archive_dir_is_refused_and_nothing_deleted(
    tmp_path: Path, dump: Path, archive_dir: Path
) -> None:
    """Issue 10 case 6: `keep:` deleted 2 files it had not created through a symlinked
    archive dir. Now the step refuses the link before it copies or deletes anything."""
    old = [_old(archive_dir, d) for d in (1, 2, 3)]
    link = tmp_path / "linked-archive"
    link.symlink_to(archive_dir)
    step = _step({"dir": str(link), "keep": 1})
    plan = step.plan(_ctx(tmp_path, dump))
    assert plan.problem is not None and "is a symbolic link" in plan.problem
    with pytest.raises(StepError, match="is a symbolic link; set dir to the real directory"):
        step.apply(_ctx(tmp_path, dump))
    assert _names(archive_dir) == sorted(p.name for p in old)


def test_pruning_skips_links_and_foreign_names(
    tmp_path: Path, dump: Path, archive_dir: Path
) -> None:
    """Only regular files whose name fits the pattern are deleted: a link with an archive's
    name (planted to point elsewhere) and files of other names stay."""
    elsewhere = tmp_path / "precious.sql"
    elsewhere.write_text("keep me\n")
    planted = archive_dir / _name(NOW - timedelta(days=9))
    planted.symlink_to(elsewhere)
    (archive_dir / "notes.txt").write_text("mine\n")
    old = _old(archive_dir, 4)
    step = _step({"dir": str(archive_dir), "keep": 1})
    step.apply(_ctx(tmp_path, dump))
    assert not old.exists()
    assert planted.is_symlink() and elsewhere.read_text() == "keep me\n"
    assert (archive_dir / "notes.txt").exists()
