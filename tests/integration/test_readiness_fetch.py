"""fetch's readiness proof against a real sshd: the source answers, its host key matches,
our key is accepted, the dump is there; each failure with its own reason and message. The
remote dump and the local work dir are compared before and after: nothing changes."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from actions.base import Readiness
from tests.fixtures.sshd import SshServer
from tests.integration.test_fetch_sftp import _ctx, _step
from tests.support import free_port

pytestmark = pytest.mark.integration


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` with its SHA-256 (empty when `root` does not exist)."""
    if not root.exists():
        return {}
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    remote = tmp_path / "remote"
    remote.mkdir()
    path = remote / "gocdb.sql.zip"
    path.write_bytes(os.urandom(50_000))
    return path


def prove(tmp_path: Path, server: SshServer, remote: Path, **extra: object) -> Readiness:
    work = tmp_path / "work"
    before = (tree(remote.parent), tree(work))
    result = _step(server, remote, work, **extra).readiness(_ctx(tmp_path, []))
    assert (tree(remote.parent), tree(work)) == before, "the readiness proof changed files"
    return result


def test_reachable_host_key_matches_key_accepted_dump_there(
        tmp_path: Path, sshd_server: SshServer, dump: Path) -> None:
    result = prove(tmp_path, sshd_server, dump)
    assert result.ok, result.detail
    assert result.facts == {"source_bytes": 50_000}
    assert "host key matches" in result.detail and "accepted" in result.detail


def test_dump_missing(tmp_path: Path, sshd_server: SshServer, dump: Path) -> None:
    result = prove(tmp_path, sshd_server, dump.with_name("absent.zip"))
    assert (result.ok, result.reason) == (False, "no_dump")
    assert "does not exist on the remote host" in result.detail


def test_host_key_changed(tmp_path: Path, sshd_server: SshServer, dump: Path) -> None:
    result = prove(tmp_path, sshd_server, dump, known_hosts=str(sshd_server.changed_known_hosts))
    assert (result.ok, result.reason) == (False, "host_key_changed")
    assert "has CHANGED" in result.detail


def test_host_key_unknown(tmp_path: Path, sshd_server: SshServer, dump: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    result = prove(tmp_path, sshd_server, dump, known_hosts=str(empty))
    assert (result.ok, result.reason) == (False, "host_key_unknown")
    assert "is not in" in result.detail


def test_our_key_refused(tmp_path: Path, sshd_server: SshServer, dump: Path) -> None:
    result = prove(tmp_path, sshd_server, dump, identity=str(sshd_server.wrong_identity))
    assert (result.ok, result.reason) == (False, "key_refused")
    assert "refused key" in result.detail and "authorized_keys" in result.detail


def test_nothing_listening(tmp_path: Path, sshd_server: SshServer, dump: Path) -> None:
    result = prove(tmp_path, sshd_server, dump, port=free_port())
    assert (result.ok, result.reason) == (False, "unreachable")
    assert "refused" in result.detail


def test_identity_file_too_open(tmp_path: Path, sshd_server: SshServer, dump: Path) -> None:
    loose = tmp_path / "loose_key"
    loose.write_bytes(sshd_server.identity.read_bytes())
    loose.chmod(0o644)
    result = prove(tmp_path, sshd_server, dump, identity=str(loose))
    assert (result.ok, result.reason) == (False, "key_file")
