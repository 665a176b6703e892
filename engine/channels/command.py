"""The `command` channel: run a program with the event's JSON on stdin.

    notify:
      command: {argv: [/usr/local/bin/page-oncall, --team, gocdb], timeout: 20s}

No shell: `argv` is run as given. Exit 0 means delivered; anything else (or running past
the timeout, when the program is killed) leaves the event in the outbox for a retry. The
environment carries FAILOVER_EVENT_KIND and FAILOVER_EVENT_ID.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from typing import Any

from engine.channels import DEFAULT_TIMEOUT, ChannelError, SecretLookup, routed
from engine.durations import parse_duration
from engine.events import Event


class CommandChannel:
    """Deliver an event by running `argv` with the event JSON on stdin."""

    def __init__(self, name: str, config: Mapping[str, Any], secret: SecretLookup) -> None:
        self.name, self.kind = name, "command"
        self.events = routed(config, self.kind)
        self.argv = [str(a) for a in config["argv"]]
        self.timeout = (parse_duration(config["timeout"]) if config.get("timeout")
                        else DEFAULT_TIMEOUT)

    def send(self, event: Event, timeout: float) -> str:
        """Run the command; ChannelError unless it exits 0 in time."""
        limit = max(0.1, min(self.timeout, timeout))
        env = {**os.environ, "FAILOVER_EVENT_KIND": str(event.kind),
               "FAILOVER_EVENT_ID": event.id}
        try:
            done = subprocess.run(self.argv, input=event.to_json().encode(), env=env,
                                  capture_output=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            raise ChannelError(f"command {self.argv[0]}: timed out after {limit:g}s") from None
        except OSError as exc:
            raise ChannelError(f"command {self.argv[0]}: cannot run: "
                               f"{exc.strerror or exc}") from None
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ChannelError(f"command {self.argv[0]} exited {done.returncode}"
                               + (f": {err[-1][:200]}" if err else ""))
        return f"command {self.argv[0]} exited 0"
