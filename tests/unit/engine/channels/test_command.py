"""The command channel: a real program, the event JSON on stdin, a timeout."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engine.channels import ChannelError
from engine.channels.command import CommandChannel

WRITER = """
import json, os, sys
data = json.load(sys.stdin)
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"kind": data["kind"], "id": data["id"],
                          "env": os.environ["FAILOVER_EVENT_ID"]}) + "\\n")
"""


def test_the_program_gets_the_event_json_on_stdin(tmp_path: Path, sample_event):
    out = tmp_path / "got.jsonl"
    channel = CommandChannel("command", {"argv": [sys.executable, "-c", WRITER, str(out)]},
                             lambda name: tmp_path)
    assert "exited 0" in channel.send(sample_event, 10.0)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got == [{"kind": "engaged", "id": sample_event.id, "env": sample_event.id}]


def test_a_failing_program_is_an_error_with_its_last_stderr_line(tmp_path, sample_event):
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('pager down\\n'); sys.exit(3)"]
    with pytest.raises(ChannelError, match="exited 3: pager down"):
        CommandChannel("command", {"argv": argv}, lambda name: tmp_path).send(sample_event, 10)


def test_a_program_running_past_its_timeout_is_killed_and_an_error(tmp_path, sample_event):
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    channel = CommandChannel("command", {"argv": argv, "timeout": "0.3s"}, lambda name: tmp_path)
    with pytest.raises(ChannelError, match="timed out"):
        channel.send(sample_event, 10.0)


def test_a_missing_program_is_an_error(tmp_path, sample_event):
    channel = CommandChannel("command", {"argv": [str(tmp_path / "nope")]}, lambda n: tmp_path)
    with pytest.raises(ChannelError, match="cannot run"):
        channel.send(sample_event, 10.0)
