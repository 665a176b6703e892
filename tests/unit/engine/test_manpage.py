"""The man page generated from the argparse tree (engine/manpage.py)."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from engine.cli import build_parser
from engine.manpage import render, roff


def _walk(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*words, name), sub
                yield from _walk(sub, (*words, name))


def test_every_command_and_option_is_on_the_page():
    page = render(when=datetime(2026, 1, 2, tzinfo=UTC))
    assert '.TH FAILOVER\\-ENGINE 1 "2026-01-02"' in page
    commands = list(_walk(build_parser()))
    assert len(commands) > 15
    for words, sub in commands:
        assert f".SS {roff(' '.join(words))}\n" in page, words
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert roff(option) in page, (words, option)


def test_roff_escapes_control_lines_and_backslashes():
    assert roff(".TH x\n'quote\na\\b") == "\\&.TH x\n\\&'quote\na\\eb"


def test_man_formats_the_page_without_warnings(tmp_path):
    man = shutil.which("man")
    if man is None:
        pytest.skip("man (Debian package man-db) is not installed")
    page = tmp_path / "failover-engine.1"
    page.write_text(render())
    result = subprocess.run([man, "--warnings", "-l", str(page)], capture_output=True,
                            text=True, env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "failover-engine validate [--host]" in result.stdout.replace("[-h] ", "")
