"""Secret files: owner, mode and kind are checked before every use; messages name the fix."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import SecretError
from engine.secrets import SecretStore, check_secret_file


def secret_file(tmp_path: Path, mode: int, name: str = "tsig.key") -> Path:
    path = tmp_path / name
    path.write_text("key \"tsig\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    assert check_secret_file(secret_file(tmp_path, mode)) is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o601, 0o610])
def test_any_group_or_other_bit_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, mode)
    assert check_secret_file(path) == (
        f"{path}: mode {mode:04o} lets group or others access a secret (chmod 600 {path})"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    assert check_secret_file(path) == (
        f"{path}: secret file does not exist (create it with mode 0600)"
    )


def test_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    assert check_secret_file(directory) == (
        f"{directory}: is a directory, not a secret file (name the file itself)"
    )


def test_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    assert "is not a regular file" in (check_secret_file(fifo) or "")


def test_file_of_another_owner_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = secret_file(tmp_path, 0o600)
    if os.geteuid() == 0:
        os.chown(path, 65534, -1)  # root can give it away for real
    else:  # an unprivileged user cannot chown: pretend the engine runs as someone else
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    problem = check_secret_file(path) or ""
    assert problem.startswith(f"{path}: owned by ")
    assert "but the engine runs as" in problem and "(chown " in problem


class _Policy:
    def __init__(self, path: Path, secrets: dict[str, Path]) -> None:
        self.path = path
        self.secrets = secrets


def test_store_returns_checked_path(tmp_path: Path) -> None:
    path = secret_file(tmp_path, 0o400)
    store = SecretStore(_Policy(tmp_path / "p.yaml", {"tsig": path}))
    assert store.path("tsig") == path
    assert store("tsig") == path


def test_store_names_secret_file_and_fix(tmp_path: Path) -> None:
    path = secret_file(tmp_path, 0o644)
    store = SecretStore(_Policy(tmp_path / "p.yaml", {"tsig": path}))
    with pytest.raises(SecretError) as caught:
        store.path("tsig")
    message = str(caught.value)
    assert message.startswith("secret 'tsig': ")
    assert str(path) in message and f"chmod 600 {path}" in message
    assert caught.value.exit_code == 2


def test_store_undefined_secret(tmp_path: Path) -> None:
    store = SecretStore(_Policy(tmp_path / "p.yaml", {"db": tmp_path / "db.cnf"}))
    with pytest.raises(SecretError) as caught:
        store.path("tsig")
    assert str(caught.value) == (
        f"secret 'tsig' is not defined in {tmp_path / 'p.yaml'} "
        "(defined: db; add it under `secrets:`)"
    )


def test_store_checks_at_every_use(tmp_path: Path) -> None:
    path = secret_file(tmp_path, 0o600)
    store = SecretStore(_Policy(tmp_path / "p.yaml", {"tsig": path}))
    assert store.path("tsig") == path
    path.chmod(0o640)  # loosened after start-up: the next use refuses
    with pytest.raises(SecretError):
        store.path("tsig")
