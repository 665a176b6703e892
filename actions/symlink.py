"""symlink: point a symbolic link at a new target, remembering the old one.

    engage:
      - symlink: {link: /etc/grid-security/hostcert.pem, target: /etc/grid-security/failover.pem}
    restore:
      - symlink: {link: /etc/grid-security/hostcert.pem, target: /etc/grid-security/production.pem}

The switch is atomic: a new link is made beside the old one and renamed over it, so a
reader always sees either the old or the new target. The old target is reported (the
audit log keeps it) and saved in the step's progress. A link that already points at
`target` is left alone ("already done"). A `link` that exists but is not a symbolic link
(a real file or directory) is never replaced: the step fails and says so. `target` must
exist (a relative target is resolved from the link's directory).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.errors import StepError
from engine.fsutil import fsync_dir


class Symlink:
    """Point `link` at `target` atomically."""

    kind: ClassVar[str] = "symlink"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.link = Path(params["link"])
        self.target = str(params["target"])

    def _current(self) -> str | None:
        """The link's current target, None when it does not exist; StepError if not a link."""
        if self.link.is_symlink():
            return os.readlink(self.link)
        if self.link.exists():
            raise StepError(f"symlink {self.link}: exists and is not a symbolic link; "
                            "move it away by hand if it should become one")
        return None

    def _problem(self) -> str | None:
        if not self.link.parent.is_dir():
            return f"symlink {self.link}: directory {self.link.parent} does not exist"
        if not (self.link.parent / self.target).exists():
            return f"symlink {self.link}: target {self.target} does not exist"
        return None

    def plan(self, ctx: Context) -> Plan:
        try:
            current = self._current()
        except StepError as exc:
            return Plan(summary=str(exc), problem=str(exc))
        if current == self.target:
            return Plan(summary=f"symlink {self.link} already → {self.target}", before=current,
                        after=current, done=True)
        return Plan(summary=f"symlink {self.link}: {current or '(none)'} → {self.target}",
                    before=current, after=self.target, problem=self._problem())

    def apply(self, ctx: Context) -> Outcome:
        current = self._current()
        if current == self.target:
            return Outcome(summary=f"symlink {self.link} already → {self.target}",
                           before=current, after=current, changed=False)
        problem = self._problem()
        if problem:
            raise StepError(problem)
        # Remember the old target before touching anything: a crash leaves a record of it.
        ctx.progress.setdefault("old_target", current)
        ctx.save_progress()
        tmp = self.link.with_name(f".{self.link.name}.failover-{os.getpid()}")
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(self.target, tmp)
            os.replace(tmp, self.link)
            fsync_dir(self.link.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StepError(f"symlink {self.link}: cannot point it at {self.target}: "
                            f"{exc.strerror or exc}") from exc
        return Outcome(summary=f"symlink {self.link}: {current or '(none)'} → {self.target}",
                       before=current, after=self.target)
