"""The project's exception base: expected errors print one clear line, unexpected ones do not.

Every error a user can cause or fix (a bad policy, a secret file that is too open, a
server that refuses) is a `FailoverError` subclass carrying the exit code the CLI
returns. Anything else is a bug and is reported as such, with where the log is.
"""
from __future__ import annotations


class FailoverError(Exception):
    """An expected error: its message is one line naming the file, key or host and the fix."""

    exit_code = 1


class UsageError(FailoverError):
    """Bad command-line usage, a bad policy or a bad input file: exit 2."""

    exit_code = 2


class PolicyError(UsageError):
    """The policy cannot be loaded or does not validate; `problems` holds every finding."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SecretError(UsageError):
    """A secret file is missing, unreadable, of the wrong owner or readable by others."""


class LockHeld(FailoverError):
    """Another engine already holds the policy's lock."""

    exit_code = 1


class StepError(FailoverError):
    """A step failed. `retryable` says whether trying again could help (timeouts, SERVFAIL)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
