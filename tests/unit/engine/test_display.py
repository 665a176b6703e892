"""engine.display and its use by `status`: control characters never reach the terminal
(issue 10 case 10: a pause reason's escape sequences were printed raw), and each job's next
cron run is shown (case 7)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import cli
from engine.display import printable
from tests.support import REPO


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text", "plain text"),
    ("a\nb", "a\\nb"),
    ("\x1b[2J", "\\x1b[2J"),
    ("tab\there\r", "tab\\there\\r"),
    ("\u202eevil", "\\u202eevil"),
    ("\x9b31m", "\\x9b31m"),
    ("ünïcode ok", "ünïcode ok"),
])
def test_printable(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def _policy(tmp_path: Path) -> Path:
    text = (REPO / "tests" / "fixtures" / "policies" / "valid.yaml").read_text()
    text += "jobs:\n  import:\n    schedule: \"17 * * * *\"\n    steps:\n" \
            "      - command: {argv: [/bin/true]}\n"
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_status_escapes_a_hostile_pause_reason_and_shows_the_next_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path)
    reason = "maint\x1b[2J\nOK: everything is fine"
    assert cli.main(["--policy", str(policy), "pause", "--reason", reason]) == 0
    capsys.readouterr()
    assert cli.main(["--policy", str(policy), "status"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "maint\\x1b[2J\\nOK: everything is fine" in out
    assert not any(line.startswith("OK:") for line in out.splitlines())
    assert "    next run " in out and "(17 * * * *)" in out
    assert cli.main(["--policy", str(policy), "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert reason in data["paused_reason"]
    assert data["jobs"]["import"]["next_run"].endswith("+00:00")


def test_a_pause_file_that_is_a_fifo_does_not_block_status(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    policy = _policy(tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.mkfifo(state / "paused")
    assert cli.main(["--policy", str(policy), "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "not a regular file" in data["paused_reason"]
