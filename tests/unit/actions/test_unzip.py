"""`unzip`: one regular member only; hostile archives refused; nothing written outside dest_dir."""
from __future__ import annotations

import os
import stat
import struct
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from actions.base import Context
from actions.unzip import Unzip, parse_size
from engine.errors import StepError
from tests.support import step_context

# Like a real dump, it compresses a few times, far from the default 200:1 limit.
DUMP = (
    b"-- MariaDB dump\n"
    + b"".join(b"INSERT INTO t VALUES (%d, '%s');\n" % (i, os.urandom(8).hex().encode())
               for i in range(2000))
    + b"-- Dump completed\n"
)


def _ctx(tmp_path: Path, work_dir: str | None = None, input_file: str | None = None,
         pending: bool = False) -> Context:
    return step_context(tmp_path / "state", secret=lambda name: tmp_path / name,
                        step_id="job:import/1", work_dir=Path(work_dir) if work_dir else None,
                        previous_output=Path(input_file) if input_file else None,
                        previous_output_pending=pending)


def _zip(path: Path, *members: tuple[zipfile.ZipInfo | str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in members:
            archive.writestr(info, data)
    return path


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and mtime: a write anywhere shows up as a change."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
    }


@pytest.fixture
def work(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


def _refused(tmp_path: Path, archive: Path, match: str, **params: object) -> StepError:
    """Plan and apply both refuse; the whole temp tree is unchanged afterwards."""
    out = tmp_path / "work" / "out"
    before = _tree(tmp_path)
    step = Unzip({"file": str(archive), "dest_dir": str(out), **params})
    plan = step.plan(_ctx(tmp_path))
    assert plan.problem is not None and plan.problem.startswith("unzip: ")
    with pytest.raises(StepError, match=match) as info:
        step.apply(_ctx(tmp_path))
    assert _tree(tmp_path) == before, "a refused archive must not write anything"
    return info.value


def test_parse_size() -> None:
    assert parse_size("20GiB") == 20 << 30
    assert parse_size("1.5 KiB") == 1536
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError, match="not a size"):
        parse_size("20 gigs")


def test_single_member_extracted_private_and_idempotent(tmp_path: Path, work: Path) -> None:
    archive = _zip(work / "gocdb.sql.zip", ("backups/gocdb.sql", DUMP))
    before = _tree(tmp_path)
    step = Unzip({})
    ctx = _ctx(tmp_path, work_dir=str(work), input_file=str(archive))
    plan = step.plan(ctx)
    assert plan.problem is None and not plan.done and plan.output == work / "gocdb.sql"
    assert _tree(tmp_path) == before, "plan is read-only"

    outcome = step.apply(ctx)
    final = work / "gocdb.sql"
    assert outcome.changed and outcome.output == final
    assert final.read_bytes() == DUMP
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    added = set(_tree(tmp_path)) - set(before)
    assert added == {"work/gocdb.sql"}, "only the member, under its base name, in dest_dir"

    assert step.plan(ctx).done and step.plan(ctx).output == final
    again = step.apply(ctx)
    assert not again.changed and again.summary.startswith("already extracted")
    assert again.output == final


def test_not_a_zip_passes_through(tmp_path: Path, work: Path) -> None:
    dump = work / "gocdb.sql"
    dump.write_bytes(DUMP)
    ctx = _ctx(tmp_path, input_file=str(dump))
    plan = Unzip({}).plan(ctx)
    assert plan.done and plan.output == dump
    outcome = Unzip({}).apply(ctx)
    assert not outcome.changed and outcome.output == dump


def test_damaged_zip_named_zip_refused(tmp_path: Path, work: Path) -> None:
    broken = work / "gocdb.sql.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    _refused(tmp_path, broken, "is not a readable zip archive")


def test_two_members_refused(tmp_path: Path, work: Path) -> None:
    archive = _zip(work / "two.zip", ("a.sql", DUMP), ("b.sql", DUMP))
    _refused(tmp_path, archive, r"holds 2 members \('a.sql', 'b.sql'\); it must hold exactly one")


def test_dotdot_member_refused(tmp_path: Path, work: Path) -> None:
    archive = _zip(work / "evil.zip", (zipfile.ZipInfo("../evil.sql"), DUMP))
    _refused(tmp_path, archive, r"'../evil.sql' climbs out of the directory")
    assert not (work / "evil.sql").exists()


def test_absolute_member_refused(tmp_path: Path, work: Path) -> None:
    target = Path("/tmp") / f"failover-evil-{uuid.uuid4().hex}.sql"
    archive = _zip(work / "abs.zip", (zipfile.ZipInfo(str(target)), DUMP))
    _refused(tmp_path, archive, "has an absolute path")
    assert not target.exists()


def test_symlink_member_refused(tmp_path: Path, work: Path) -> None:
    link = zipfile.ZipInfo("gocdb.sql")
    link.create_system = 3  # unix: external_attr carries st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip(work / "link.zip", (link, b"/etc/passwd"))
    _refused(tmp_path, archive, "'gocdb.sql' is a symbolic link")


def test_directory_member_refused(tmp_path: Path, work: Path) -> None:
    archive = _zip(work / "dir.zip", (zipfile.ZipInfo("dump/"), b""))
    _refused(tmp_path, archive, "is a directory, not a file")


def test_bomb_over_max_size_refused(tmp_path: Path, work: Path) -> None:
    archive = _zip(work / "big.zip", ("gocdb.sql", b"x" * 300_000))
    _refused(tmp_path, archive, "would inflate to 300000 bytes, over max_size 100000",
             max_size=100_000, max_ratio=1_000_000)


def test_bomb_over_max_ratio_refused(tmp_path: Path, work: Path) -> None:
    archive = _zip(work / "bomb.zip", ("gocdb.sql", b"\0" * 5_000_000))
    _refused(tmp_path, archive, r"is compressed \d+:1, over max_ratio 200 \(a zip bomb\?\)")


def test_member_lying_about_its_size_refused(tmp_path: Path, work: Path) -> None:
    data = os.urandom(50_000)
    archive = _zip(work / "liar.zip", ("gocdb.sql", data))
    raw = bytearray(archive.read_bytes())
    # Declare 1000 uncompressed bytes in the local header and the central directory.
    struct.pack_into("<I", raw, 22, 1000)
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 1000)
    archive.write_bytes(bytes(raw))
    out = work / "out"
    before = _tree(tmp_path)
    step = Unzip({"file": str(archive), "dest_dir": str(out), "max_ratio": 1_000_000})
    with pytest.raises(StepError, match="damaged|inflates past"):
        step.apply(_ctx(tmp_path))
    assert set(_tree(tmp_path)) - set(before) <= {"work/out"}
    assert list(out.iterdir()) == [], "no partial file, not even a temp one"


def test_member_would_overwrite_the_archive(tmp_path: Path, work: Path) -> None:
    archive = _zip(work / "x.zip", ("x.zip", DUMP))
    before = _tree(tmp_path)
    with pytest.raises(StepError, match="would overwrite the archive itself"):
        Unzip({"file": str(archive)}).apply(_ctx(tmp_path))
    assert _tree(tmp_path) == before


def test_needs_a_file(tmp_path: Path) -> None:
    plan = Unzip({}).plan(_ctx(tmp_path))
    assert plan.problem == "unzip: no file given and no previous step's output; set file"


def test_planned_input_is_checked_once_it_exists(tmp_path: Path, work: Path) -> None:
    """The previous step only planned the zip (a dry-run): no problem yet, and the planned
    output says what the next step would get."""
    planned = work / "gocdb.sql.zip"
    plan = Unzip({}).plan(_ctx(tmp_path, work_dir=str(work), input_file=str(planned),
                               pending=True))
    assert plan.problem is None and not plan.done
    assert f"would extract the single file of {planned} into {work}" in plan.summary
    assert plan.output == f"the file extracted from {planned}"


def test_planned_plain_file_is_handed_on(tmp_path: Path, work: Path) -> None:
    planned = work / "gocdb.sql"
    plan = Unzip({}).plan(_ctx(tmp_path, input_file=str(planned), pending=True))
    assert plan.problem is None and plan.output == planned


def test_missing_file_that_no_step_plans_is_a_problem(tmp_path: Path, work: Path) -> None:
    """Only the previous step's planned output may be missing: another `file` must exist."""
    ctx = _ctx(tmp_path, input_file=str(work / "planned.zip"), pending=True)
    plan = Unzip({"file": str(work / "other.zip")}).plan(ctx)
    assert plan.problem == f"unzip: {work / 'other.zip'} does not exist or is not a regular file"
    missing = _ctx(tmp_path, input_file=str(work / "gone.zip"))
    assert Unzip({}).plan(missing).problem, "a real run's missing input is a problem"


def test_member_that_would_not_fit_the_disk_refused(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The free space of the test machine's disk cannot be shrunk; its report can.
    monkeypatch.setattr(
        "actions.unzip.shutil.disk_usage", lambda path: SimpleNamespace(total=100, used=90, free=10)
    )
    archive = _zip(work / "gocdb.sql.zip", ("gocdb.sql", DUMP))
    _refused(tmp_path, archive, rf"needs {len(DUMP)} bytes but .*/work/out has 10 free")
