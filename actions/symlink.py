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
exist. A relative `link` is taken from the policy file's directory; a relative `target`
is written as is, so it is relative to the link's directory, as symbolic links are.
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
        self.link_param = str(params["link"])
        self.target = str(params["target"])

    def _current(self, link: Path) -> str | None:
        """The link's current target, None when it does not exist; StepError if not a link."""
        if link.is_symlink():
            return os.readlink(link)
        if link.exists():
            raise StepError(f"symlink {link}: exists and is not a symbolic link; "
                            "move it away by hand if it should become one")
        return None

    def _problem(self, link: Path) -> str | None:
        if not link.parent.is_dir():
            return f"symlink {link}: directory {link.parent} does not exist"
        if not (link.parent / self.target).exists():
            return f"symlink {link}: target {self.target} does not exist"
        return None

    def plan(self, ctx: Context) -> Plan:
        link = ctx.path(self.link_param)
        try:
            current = self._current(link)
        except StepError as exc:
            return Plan(summary=str(exc), problem=str(exc))
        if current == self.target:
            return Plan(summary=f"symlink {link} already → {self.target}", before=current,
                        after=current, done=True)
        return Plan(summary=f"symlink {link}: {current or '(none)'} → {self.target}",
                    before=current, after=self.target, problem=self._problem(link))

    def apply(self, ctx: Context) -> Outcome:
        link = ctx.path(self.link_param)
        current = self._current(link)
        if current == self.target:
            return Outcome(summary=f"symlink {link} already → {self.target}",
                           before=current, after=current, changed=False)
        problem = self._problem(link)
        if problem:
            raise StepError(problem)
        # Remember the old target before touching anything: a crash leaves a record of it.
        ctx.progress.setdefault("old_target", current)
        ctx.save_progress()
        tmp = link.with_name(f".{link.name}.failover-{os.getpid()}")
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(self.target, tmp)
            os.replace(tmp, link)
            fsync_dir(link.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StepError(f"symlink {link}: cannot point it at {self.target}: "
                            f"{exc.strerror or exc}") from exc
        return Outcome(summary=f"symlink {link}: {current or '(none)'} → {self.target}",
                       before=current, after=self.target)
