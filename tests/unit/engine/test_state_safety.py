"""The state directory against hostile contents (issue 10 cases 6, 9, 10).

Symbolic links planted as engine.lock, jobs/*.lock or audit.jsonl once made the engine
truncate or append to their target; state files that are valid JSON of the wrong shape gave
internal errors, and the error for a damaged file advised moving it aside (a missing state
reads as "not engaged"). A job that wrote first created the state dir 0755.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from engine import cli
from engine.errors import FailoverError
from engine.fsutil import append_line, ensure_private_dir, state_dir_problem
from engine.jobs import JobLock
from engine.state import EngineState, StateStore
from tests.support import REPO

VALID = REPO / "tests" / "fixtures" / "policies" / "valid.yaml"


def _policy(tmp_path: Path) -> Path:
    policy = tmp_path / "p.yaml"
    policy.write_text(VALID.read_text().replace("state_dir: state", "state_dir: st"))
    return policy


def _state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "st"
    state.mkdir(mode=0o700)
    return state


@pytest.mark.parametrize("name", ["engine.lock", "state.json", "audit.jsonl", "paused"])
def test_a_link_in_the_state_dir_is_refused_and_its_target_untouched(
        tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    state = _state_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / name).symlink_to(victim)
    commands = [["engage", "--now"], ["status"]]
    if name != "paused":  # pause replaces `paused` atomically: the link goes, its target stays
        commands.append(["pause", "--reason", "x"])
    for argv in commands:
        code = cli.main(["--policy", str(_policy(tmp_path)), *argv])
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"{state / name} is a symbolic link" in err
        assert "internal error" not in err
    assert victim.read_text() == "precious\n"


def test_a_job_lock_link_is_refused(tmp_path: Path) -> None:
    state = _state_dir(tmp_path)
    (state / "jobs").mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / "jobs" / "import.lock").symlink_to(victim)
    with pytest.raises(FailoverError, match="import.lock is a symbolic link"), \
            JobLock(state / "jobs" / "import.lock"):
        pass
    assert victim.read_text() == "precious\n"


def test_append_line_refuses_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "audit.jsonl").symlink_to(victim)
    with pytest.raises(FailoverError, match="is a symbolic link"):
        append_line(tmp_path / "audit.jsonl", "{}")
    assert victim.read_text() == "precious\n"


def test_state_dir_checks(tmp_path: Path) -> None:
    real = _state_dir(tmp_path)
    assert state_dir_problem(real) is None
    assert state_dir_problem(tmp_path / "absent") is None
    link = tmp_path / "link"
    link.symlink_to(real)
    assert "is a symbolic link" in (state_dir_problem(link) or "")
    os.chmod(real, 0o777)
    assert "mode 0777: others may write" in (state_dir_problem(real) or "")
    os.chmod(real, 0o750)  # install --check-group: group may read
    assert state_dir_problem(real) is None
    if os.geteuid() == 0:
        os.chown(real, 65534, -1)
        assert "owned by uid 65534" in (state_dir_problem(real) or "")


def test_directories_created_for_a_job_are_0700_all_the_way(tmp_path: Path) -> None:
    os.umask(0o022)
    lock = tmp_path / "new-state" / "jobs" / "import.lock"
    with JobLock(lock):
        pass
    for directory in (tmp_path / "new-state", tmp_path / "new-state" / "jobs"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    deep = ensure_private_dir(tmp_path / "a" / "b" / "c")
    for directory in (tmp_path / "a", tmp_path / "a" / "b", deep):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


WRONG_SHAPES = [
    ({"state": 42}, "unknown state 42"),
    ([1, 2], "not a JSON object"),
    (None, "not a JSON object"),
    ("engaged", "not a JSON object"),
    ({"state": "engaged", "failures": "x"}, "key 'failures' holds str"),
    ({"state": "watching", "since": "yesterday"}, "not an ISO 8601 time"),
    ({"state": "watching", "last_probes": []}, "not an object of objects"),
    ({"state": "watching", "window": [1, "x"]}, "not a list of true/false"),
    ({"state": "watching", "counts": {"engages": True}}, "not an object of integers"),
    ({"state": "engaging", "run": {"phase": 1}}, "key 'run' (the journal)"),
    ({"state": "engaging", "run": {"phase": "engage", "steps": []}}, "key 'run'"),
    ({"state": "watching", "hold_down_until": 5}, "key 'hold_down_until' holds int"),
    ({"state": "watching", "last_probes": {"p": {"ok": True, "seconds": float("nan")}}},
     "NaN is not a number JSON allows"),
]


@pytest.mark.parametrize(("data", "words"), WRONG_SHAPES, ids=[w for _, w in WRONG_SHAPES])
def test_wrong_shape_state_is_one_clear_line_pointing_at_repair_state(
        tmp_path: Path, data: object, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    state = _state_dir(tmp_path)
    (state / "state.json").write_text(json.dumps(data))
    with pytest.raises(FailoverError) as caught:
        StateStore(state).load()
    message = str(caught.value)
    assert words in message and "repair-state" in message
    assert "move it aside" not in message.replace("never move it aside", "")
    for argv in (["status"], ["status", "--json"], ["pause"], ["resume"], ["reset"]):
        code = cli.main(["--policy", str(_policy(tmp_path)), *argv])
        err = capsys.readouterr().err
        assert code == 1, (argv, err)
        assert len(err.splitlines()) == 1 and words in err and "internal error" not in err
    code = cli.main(["--policy", str(_policy(tmp_path)), "check", "engine"])
    out, err = capsys.readouterr()
    assert code == 3 and "internal error" not in out + err


def test_a_good_state_still_loads(tmp_path: Path) -> None:
    state = _state_dir(tmp_path)
    StateStore(state).save(EngineState(failures=2))
    assert StateStore(state).load().failures == 2


@pytest.mark.parametrize("argv", [["pause", "--reason", "x"], ["resume"], ["dry-run", "engage"],
                                  ["dry-run", "restore"], ["status"], ["status", "--json"]])
def test_a_state_dir_that_cannot_be_made_is_one_clear_line(
        tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10 case 9: pause, resume and dry-run on an unusable state dir were internal
    errors. (As root no permission bit stops a write, so the dir sits under a regular file.)"""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = cli.main(["--policy", str(_policy(tmp_path)), "--state-dir", str(blocker / "st"),
                     *argv])
    out, err = capsys.readouterr()
    assert "internal error" not in err
    if code != 0:  # dry-run changes nothing and may well plan without a state dir
        assert code in (1, 2) and len(err.splitlines()) == 1 and str(blocker) in err
    if argv[-1] == "--json":
        json.loads(out or "{}")


def test_a_job_record_with_nan_keeps_status_json_valid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _state_dir(tmp_path)
    (state / "jobs").mkdir(mode=0o700)
    (state / "jobs" / "import.json").write_text('{"ok": true, "duration": NaN}')
    assert cli.main(["--policy", str(_policy(tmp_path)), "status", "--json"]) == 0
    out = capsys.readouterr().out

    def refuse(name: str) -> None:
        raise ValueError(name)

    data = json.loads(out, parse_constant=refuse)
    assert "NaN" in data["jobs"]["import"]["last_error"]
