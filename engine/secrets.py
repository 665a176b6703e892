"""Secret files: the policy names them, the engine checks them before every use.

A secret is never written in the policy itself, only the path of a file holding it::

    secrets:
      tsig: /etc/failover-engine/tsig.key      # BIND key file (tsig-keygen)
      mariadb: /etc/failover-engine/client.cnf # MySQL option file with [client] password

Each file must exist, be a regular file owned by the user the engine runs as, and
give no permission at all to group or others: mode 0600 or 0400 (0640 and 0604 are
refused). `check_secret_file(path)` returns the one-line problem or None;
`SecretStore(policy).path(name)` returns the checked path, or raises `SecretError`
naming the secret, the file and the fix. Contents are never read here, so nothing
secret can end up in a message.
"""
from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import Any

from engine.errors import SecretError


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_secret_file(path: str | Path) -> str | None:
    """One line saying what is wrong with the secret file at `path`, or None when it is fine."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{path}: secret file does not exist (create it with mode 0600)"
    except PermissionError:
        return f"{path}: secret file cannot be reached (a parent directory is not searchable)"
    except OSError as exc:
        return f"{path}: secret file cannot be examined: {exc.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return f"{path}: is a directory, not a secret file (name the file itself)"
    if not stat.S_ISREG(info.st_mode):
        return f"{path}: is not a regular file; a secret must be a plain file with mode 0600"
    euid = os.geteuid()
    if info.st_uid != euid:
        return (f"{path}: owned by {_user(info.st_uid)}, but the engine runs as {_user(euid)} "
                f"(chown {_user(euid)} {path})")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return (f"{path}: mode {mode:04o} lets group or others access a secret "
                f"(chmod 600 {path})")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"{path}: secret file cannot be read: {exc.strerror} (chmod 600 {path})"
    return None


def require_secret_file(path: str | Path, what: str) -> None:
    """Raise StepError("<what>: <problem>") when the secret file at `path` is unusable.

    For actions that are handed a path directly (an SSH identity, an option file, a TSIG
    key): the same checks as the policy's `secrets`, one wording everywhere."""
    from engine.errors import StepError

    problem = check_secret_file(path)
    if problem is not None:
        raise StepError(f"{what} {problem}")


class SecretStore:
    """Checked paths of the policy's secret files, by secret name."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def path(self, name: str) -> Path:
        """The file holding secret `name`, checked now; SecretError when it is unusable."""
        secrets: dict[str, Path] = getattr(self.policy, "secrets", {}) or {}
        if name not in secrets:
            defined = ", ".join(sorted(secrets)) or "none"
            raise SecretError(
                f"secret {name!r} is not defined in {self.policy.path} "
                f"(defined: {defined}; add it under `secrets:`)"
            )
        problem = check_secret_file(secrets[name])
        if problem:
            raise SecretError(f"secret {name!r}: {problem}")
        return Path(secrets[name])

    __call__ = path
