"""`fetch` over SFTP against a real OpenSSH sshd on loopback (tests/fixtures/sshd.py)."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from actions.archive import Archive
from actions.base import Context
from actions.fetch import Fetch
from actions.unzip import Unzip
from engine.errors import StepError
from tests.fixtures.sshd import SshServer
from tests.support import free_port, step_context

pytestmark = pytest.mark.integration


def _ctx(tmp_path: Path, log: list[str]) -> Context:
    return step_context(tmp_path / "state", secret=lambda name: tmp_path / name,
                        step_id="job:import/0", log=log.append)


@pytest.fixture
def remote_dump(tmp_path: Path) -> Path:
    """A few hundred KiB of dump in a directory the sshd serves (any path: it runs as root)."""
    remote = tmp_path / "remote"
    remote.mkdir()
    dump = remote / "gocdb.sql"
    dump.write_bytes(b"-- MariaDB dump\n" + os.urandom(300_000) + b"\n-- Dump completed\n")
    return dump


def _step(server: SshServer, remote: Path, work: Path, **extra: Any) -> Fetch:
    params = {
        "source": server.source(remote),
        "port": server.port,
        "known_hosts": str(server.known_hosts),
        "identity": str(server.identity),
        "dest_dir": str(work),
        **extra,
    }
    return Fetch(params)


def _only_file(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir()) if work.exists() else []


def test_happy_path_mode_0600_then_already_fetched(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    log: list[str] = []
    step = _step(sshd_server, remote_dump, work)

    plan = step.plan(_ctx(tmp_path, log))
    assert plan.problem is None and not plan.done
    assert str(remote_dump.stat().st_size) in plan.summary
    assert not work.exists(), "plan must not create anything"

    outcome = step.apply(_ctx(tmp_path, log))
    final = work / "gocdb.sql"
    assert outcome.changed and outcome.after == str(final)
    assert final.read_bytes() == remote_dump.read_bytes()
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert _only_file(work) == ["gocdb.sql"]

    again = step.plan(_ctx(tmp_path, log))
    assert again.done and "already fetched" in again.summary
    second = step.apply(_ctx(tmp_path, log))
    assert not second.changed and "already fetched" in second.summary


def test_dest_dir_defaults_to_job_work_dir(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    work = tmp_path / "jobwork"
    params = {
        "source": sshd_server.source(remote_dump),
        "port": sshd_server.port,
        "known_hosts": str(sshd_server.known_hosts),
        "identity": str(sshd_server.identity),
    }
    ctx = _ctx(tmp_path, [])
    ctx.work_dir = work
    outcome = Fetch(params).apply(ctx)
    assert outcome.after == str(work / "gocdb.sql")


def test_sha256_sidecar_checked(sshd_server: SshServer, remote_dump: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(remote_dump.read_bytes()).hexdigest()
    sidecar = Path(f"{remote_dump}.sha256")
    sidecar.write_text(f"{digest}  gocdb.sql\n")
    work = tmp_path / "work"
    assert _step(sshd_server, remote_dump, work, sha256=True).apply(_ctx(tmp_path, [])).changed

    sidecar.write_text("0" * 64 + "  gocdb.sql\n")
    other = tmp_path / "other"
    with pytest.raises(StepError, match="SHA-256 .* sidecar says 0000") as info:
        _step(sshd_server, remote_dump, other, sha256=True).apply(_ctx(tmp_path, []))
    assert info.value.retryable
    assert _only_file(other) == []


def test_missing_sidecar_refused(sshd_server: SshServer, remote_dump: Path, tmp_path: Path) -> None:
    step = _step(sshd_server, remote_dump, tmp_path / "work", sha256=True)
    with pytest.raises(StepError, match=r"sha256 is on but .*gocdb\.sql\.sha256 does not exist"):
        step.apply(_ctx(tmp_path, []))


def test_unknown_host_key_refused_with_fingerprint(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    work = tmp_path / "work"
    step = _step(sshd_server, remote_dump, work, known_hosts=str(empty))
    plan = step.plan(_ctx(tmp_path, []))
    assert plan.problem is not None and "is not in" in plan.problem
    with pytest.raises(StepError) as info:
        step.apply(_ctx(tmp_path, []))
    message = str(info.value)
    assert f"host key of 127.0.0.1:{sshd_server.port} is not in {empty}" in message
    assert "ssh-ed25519 SHA256:" in message
    assert not info.value.retryable
    assert _only_file(work) == []


def test_changed_host_key_refused(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    step = _step(sshd_server, remote_dump, work, known_hosts=str(sshd_server.changed_known_hosts))
    with pytest.raises(StepError, match="has CHANGED: server offered ssh-ed25519 SHA256:") as info:
        step.apply(_ctx(tmp_path, []))
    assert "expects SHA256:" in str(info.value)
    assert not info.value.retryable
    assert _only_file(work) == []


def test_wrong_client_key_refused(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    step = _step(sshd_server, remote_dump, work, identity=str(sshd_server.wrong_identity))
    with pytest.raises(StepError, match=r"refused key .*wrong_ed25519 \(SHA256:") as info:
        step.apply(_ctx(tmp_path, []))
    assert "authorized_keys" in str(info.value)
    assert _only_file(work) == []


def test_group_readable_identity_refused(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    loose = tmp_path / "id_loose"
    shutil.copyfile(sshd_server.identity, loose)
    os.chmod(loose, 0o640)
    step = _step(sshd_server, remote_dump, tmp_path / "work", identity=str(loose))
    with pytest.raises(StepError,
                       match=r"fetch: identity: .*: mode 0640 lets group or others access"):
        step.apply(_ctx(tmp_path, []))


def test_missing_remote_file(sshd_server: SshServer, tmp_path: Path) -> None:
    work = tmp_path / "work"
    step = _step(sshd_server, tmp_path / "nowhere.sql", work)
    plan = step.plan(_ctx(tmp_path, []))
    assert plan.problem is not None and "does not exist on the remote host" in plan.problem
    with pytest.raises(StepError, match=r"nowhere\.sql does not exist on the remote host"):
        step.apply(_ctx(tmp_path, []))
    assert _only_file(work) == []


def test_connection_refused(sshd_server: SshServer, remote_dump: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    port = free_port()  # nothing listens there
    step = _step(sshd_server, remote_dump, work, port=port)
    with pytest.raises(StepError, match=f"connection to 127.0.0.1:{port} refused") as info:
        step.apply(_ctx(tmp_path, []))
    assert info.value.retryable
    assert _only_file(work) == []


def test_interrupted_transfer_leaves_no_file(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    ctx = _ctx(tmp_path, [])
    ctx.should_stop = lambda: True  # the runner's timeout fires during the transfer
    with pytest.raises(StepError, match="interrupted"):
        _step(sshd_server, remote_dump, work).apply(ctx)
    assert _only_file(work) == []


def test_stale_part_of_a_crashed_run_is_removed(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".gocdb.sql.abc123.part").write_bytes(b"half a dump")
    _step(sshd_server, remote_dump, work).apply(_ctx(tmp_path, []))
    assert _only_file(work) == ["gocdb.sql"]


def test_host_problems(sshd_server: SshServer, remote_dump: Path, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, [])
    assert _step(sshd_server, remote_dump, tmp_path / "w").host_problems(ctx) == []
    loose = tmp_path / "id_loose"
    shutil.copyfile(sshd_server.identity, loose)
    os.chmod(loose, 0o604)
    problems = _step(
        sshd_server, remote_dump, tmp_path / "w",
        identity=str(loose), known_hosts=str(tmp_path / "none"),
    ).host_problems(ctx)
    assert len(problems) == 2
    assert "mode 0604 lets group or others" in problems[0]
    assert problems[1] == f"fetch: known_hosts file {tmp_path / 'none'} does not exist"


@pytest.mark.parametrize("hostile", ["/dev/zero", "fifo", "dir"])
def test_known_hosts_that_is_not_a_regular_file_is_one_clear_error(
        sshd_server: SshServer, remote_dump: Path, tmp_path: Path, hostile: str) -> None:
    """Issue 10 case 5: `known_hosts: /dev/zero` grew the process to 22 GB, a FIFO blocked
    forever. Now both are refused at once, before any connection."""
    path = Path(hostile)
    if hostile == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif hostile == "dir":
        path = tmp_path
    step = _step(sshd_server, remote_dump, tmp_path / "w", known_hosts=str(path))
    (problem,) = step.host_problems(_ctx(tmp_path, []))
    assert problem.startswith(f"fetch: known_hosts file {path} is ")
    assert "not a regular file" in problem
    with pytest.raises(StepError, match="not a regular file"):
        step.apply(_ctx(tmp_path, []))


def test_zipped_dump_fetched_unzipped_archived(
    sshd_server: SshServer, remote_dump: Path, tmp_path: Path
) -> None:
    """The import job's file steps chained by hand, as the runner chains them (each step's
    output is the next one's previous_output)."""
    zipped = remote_dump.with_suffix(".sql.zip")
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(remote_dump, "gocdb.sql")
    work = tmp_path / "work"
    ctx = _ctx(tmp_path, [])
    ctx.work_dir = work
    params = {
        "source": sshd_server.source(zipped),
        "port": sshd_server.port,
        "known_hosts": str(sshd_server.known_hosts),
        "identity": str(sshd_server.identity),
    }
    fetched = Fetch(params).apply(ctx)
    assert fetched.output == work / "gocdb.sql.zip"
    ctx.previous_output = fetched.output
    unzipped = Unzip({}).apply(ctx)
    assert unzipped.output == work / "gocdb.sql"
    assert unzipped.output.read_bytes() == remote_dump.read_bytes()
    ctx.previous_output = unzipped.output
    archived = Archive({"dir": str(tmp_path / "archive"), "keep": 1}).apply(ctx)
    assert archived.output.name.startswith("_goc5dump_") and archived.output.suffix == ".sql"
    assert archived.output.read_bytes() == remote_dump.read_bytes()
