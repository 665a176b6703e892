"""`fetch` from a local path: copy to a 0600 temp file, check, rename; idempotent."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from actions.base import Context
from actions.fetch import Fetch, parse_source
from engine.errors import StepError
from tests.support import step_context


def _ctx(tmp_path: Path, work_dir: str | None = None) -> Context:
    return step_context(tmp_path / "state", secret=lambda name: tmp_path / name,
                        step_id="job:import/0", work_dir=Path(work_dir) if work_dir else None)


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    source = tmp_path / "src" / "gocdb.sql"
    source.parent.mkdir()
    source.write_bytes(b"CREATE TABLE t (id int);\n" * 1000)
    os.chmod(source, 0o644)
    return source


def test_parse_source() -> None:
    remote = parse_source("dumper@db.example.org:/var/backups/gocdb.sql.zip")
    assert remote is not None
    assert (remote.user, remote.host, remote.path) == (
        "dumper",
        "db.example.org",
        "/var/backups/gocdb.sql.zip",
    )
    assert parse_source("/var/backups/gocdb.sql") is None
    assert parse_source("/var/backups/a:b@c") is None


def test_local_copy_is_private_and_idempotent(dump: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    step = Fetch({"source": str(dump)})
    plan = step.plan(_ctx(tmp_path, work_dir=str(work)))
    assert plan.problem is None and not plan.done and not work.exists()
    assert plan.output == work / "gocdb.sql", "the plan names the file it would hand on"

    outcome = step.apply(_ctx(tmp_path, work_dir=str(work)))
    final = work / "gocdb.sql"
    assert outcome.output == final and outcome.changed
    assert final.read_bytes() == dump.read_bytes()
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert stat.S_IMODE(work.stat().st_mode) == 0o700

    assert step.plan(_ctx(tmp_path, work_dir=str(work))).done
    again = step.apply(_ctx(tmp_path, work_dir=str(work)))
    assert not again.changed and again.summary.startswith("already fetched")


def test_changed_source_is_fetched_again(dump: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    step = Fetch({"source": str(dump), "dest_dir": str(work)})
    step.apply(_ctx(tmp_path))
    dump.write_bytes(b"a newer dump\n")
    outcome = step.apply(_ctx(tmp_path))
    assert outcome.changed and (work / "gocdb.sql").read_bytes() == b"a newer dump\n"


def test_sha256_sidecar_local(dump: Path, tmp_path: Path) -> None:
    Path(f"{dump}.sha256").write_text(hashlib.sha256(dump.read_bytes()).hexdigest() + "\n")
    work = tmp_path / "work"
    assert Fetch({"source": str(dump), "dest_dir": str(work), "sha256": True}).apply(_ctx(tmp_path))

    Path(f"{dump}.sha256").write_text("f" * 64 + "  gocdb.sql\n")
    other = tmp_path / "other"
    with pytest.raises(StepError, match="its sidecar says ffff"):
        Fetch({"source": str(dump), "dest_dir": str(other), "sha256": True}).apply(_ctx(tmp_path))
    assert list(other.iterdir()) == []


def test_bad_sidecar_refused(dump: Path, tmp_path: Path) -> None:
    Path(f"{dump}.sha256").write_text("not a digest\n")
    step = Fetch({"source": str(dump), "dest_dir": str(tmp_path / "w"), "sha256": True})
    assert "does not start with a SHA-256 hex digest" in (step.plan(_ctx(tmp_path)).problem or "")


def test_missing_local_source(tmp_path: Path) -> None:
    step = Fetch({"source": str(tmp_path / "none.sql"), "dest_dir": str(tmp_path / "w")})
    assert "none.sql does not exist" in (step.plan(_ctx(tmp_path)).problem or "")
    with pytest.raises(StepError, match="none.sql does not exist"):
        step.apply(_ctx(tmp_path))


def test_needs_a_destination(dump: Path, tmp_path: Path) -> None:
    plan = Fetch({"source": str(dump)}).plan(_ctx(tmp_path))
    assert plan.problem == "fetch: no dest_dir given and the job has no work dir; set dest_dir"


def test_remote_source_needs_keys(tmp_path: Path) -> None:
    plan = Fetch({"source": "u@h:/x.sql", "dest_dir": str(tmp_path)}).plan(_ctx(tmp_path))
    assert plan.problem == "fetch: u@h:/x.sql is remote; set known_hosts and identity"


def test_size_mismatch_refused_and_nothing_left(tmp_path: Path) -> None:
    # /proc files stat as 0 bytes yet read as more: a source that changes under the copy.
    work = tmp_path / "work"
    step = Fetch({"source": "/proc/self/status", "dest_dir": str(work)})
    with pytest.raises(StepError, match=r"arrived with \d+ bytes, expected 0") as info:
        step.apply(_ctx(tmp_path))
    assert info.value.retryable
    assert list(work.iterdir()) == []
