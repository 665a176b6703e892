"""The hostile corpus (issue 10): each policy in tests/fixtures/hostile/ once passed `validate`
and then broke the engine (NaN durations, a zero interval, a name ending in a newline, a cron
line cron refuses, a NUL or 5,000-character state_dir, a 1,000-character DNS server). Each
must now be refused by `validate`: exit 2, exactly one line on stderr naming the key, nothing
on stdout. The expected words are the file's first line, `# expect: …`.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine import cli
from tests.support import REPO

HOSTILE = REPO / "tests" / "fixtures" / "hostile"
CASES = sorted(HOSTILE.glob("*.yaml"))
LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+)$")


def expected_words(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be `# expect: …`"
    return first.removeprefix("# expect: ")


def header(path: Path, name: str) -> str | None:
    """The value of a `# name: …` line among the file's leading comments."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return None
        if line.startswith(f"# {name}: "):
            return line.removeprefix(f"# {name}: ")
    return None


VALIDATE = [p for p in CASES if header(p, "command") is None]
RUNTIME = [p for p in CASES if header(p, "command") is not None]


def test_the_corpus_covers_the_reported_cases() -> None:
    names = {p.stem for p in CASES}
    for needed in ("max-age-nan", "max-age-inf", "hold-down-inf", "interval-nan", "interval-zero",
                   "remind-every-zero", "interval-400-digits", "name-trailing-newline",
                   "job-name-trailing-newline", "schedule-99", "schedule-banana", "schedule-x",
                   "state-dir-nul", "state-dir-5000", "nsupdate-server-1000"):
        assert needed in names


@pytest.mark.parametrize("path", VALIDATE, ids=lambda p: p.stem)
def test_hostile_policy_is_refused_by_validate_with_one_line(
        path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--policy", str(path), "validate"])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, err
    assert out == ""
    assert len(lines) == 1, lines
    (line,) = lines
    assert "internal error" not in line and "Traceback" not in line
    assert expected_words(path) in line
    match = LINE.match(line)
    assert match, line
    assert match["file"] == str(path)
    assert len(line) < 400


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: p.stem)
def test_hostile_file_named_by_a_valid_policy_is_one_clear_problem(
        path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case 5: a policy that names /dev/zero as its known_hosts, status log or TSIG key is
    valid, but the command that reads the file says what it is instead of reading it
    (22 GB, a hang or MemoryError before)."""
    command = (header(path, "command") or "").split()
    code = cli.main(["--policy", str(path), *command])
    out, err = capsys.readouterr()
    assert code == int(header(path, "exit") or "1"), out + err
    assert "internal error" not in out + err and "Traceback" not in out + err
    assert expected_words(path) in out + err


def test_the_corpus_base_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each hostile file differs from a valid policy in one value: restore that value and the
    policy validates, so the refusal above is about that value alone."""
    text = (HOSTILE / "interval-zero.yaml").read_text(encoding="utf-8")
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(text.replace("interval: 0s", "interval: 10m"), encoding="utf-8")
    assert cli.main(["--policy", str(fixed), "validate"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("text", [
    "root:$6$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",   # /etc/shadow
    "root:x:0:0:SECRETGECOS:/root:/bin/bash\n",                                  # /etc/passwd
    "SECRETWORD\n",
    "- SECRETITEM\n",
    "root:$6$SECRETHASH: 1\nroot:$6$SECRETHASH: 2\n",                           # duplicate keys
])
def test_an_error_about_a_file_never_prints_its_content(
        tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10 case 10: `--policy /etc/shadow` echoed its lines in the errors."""
    path = tmp_path / "shadow"
    path.write_text(text)
    for argv in (["validate"], ["status"], ["dry-run", "engage"], ["check", "engine"]):
        code = cli.main(["--policy", str(path), *argv])
        out, err = capsys.readouterr()
        assert code in (2, 3), (argv, err)
        assert "SECRET" not in out + err
        assert len((out + err).splitlines()) == 1


@pytest.mark.parametrize(("override", "words"), [
    ("/tmp/" + "a" * 5000, "--state-dir: path is 5005 bytes long; at most 1024"),
    ("/tmp/" + "b" * 300, "--state-dir: a path component is longer than 255 bytes"),
])
def test_state_dir_override_has_the_policy_bounds(
        override: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    valid = REPO / "tests" / "fixtures" / "policies" / "valid.yaml"
    for argv in (["status"], ["pause"], ["dry-run", "engage"]):
        code = cli.main(["--policy", str(valid), "--state-dir", override, *argv])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.splitlines()) == 1
