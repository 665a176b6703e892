"""engine/paths.py and engine/states.py: the layout of the state directory and the states."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.paths import StatePaths, paused_flag
from engine.states import State, parse_state


def test_state_paths_name_the_documented_files(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    # The file names are the on-disk format (HACKING.md "Files in state_dir").
    assert paths.state_file == tmp_path / "state.json"
    assert paths.engine_lock == tmp_path / "engine.lock"
    assert paths.audit_log == tmp_path / "audit.jsonl"
    assert paths.paused == paused_flag(tmp_path) == tmp_path / "paused"
    assert paths.requests_dir == tmp_path / "requests"
    assert paths.request_file("r1").parent == paths.reply_file("r1").parent == paths.requests_dir
    assert paths.request_file("r1") != paths.reply_file("r1")
    assert paths.spool_dir == tmp_path / "spool"
    assert paths.parked_dir == tmp_path / "parked"
    assert paths.metrics_default == tmp_path / "metrics.prom"
    assert paths.crash_dir == tmp_path / "crash"
    assert paths.job_record("import") == tmp_path / "jobs" / "import.json"
    assert paths.job_lock("import") == tmp_path / "jobs" / "import.lock"
    assert paths.job_work_dir("import") == tmp_path / "work" / "import"


def test_state_paths_accepts_a_string() -> None:
    assert StatePaths("/var/lib/x").state_file == Path("/var/lib/x/state.json")  # type: ignore[arg-type]


def test_states_keep_their_file_strings() -> None:
    assert [s.value for s in State] == [
        "watching", "suspect", "engaging", "engaged", "restoring", "aborted", "paused"]
    assert json.dumps({"state": State.ENGAGED}) == '{"state": "engaged"}'
    assert parse_state("paused") is State.PAUSED


@pytest.mark.parametrize("bad", ["Watching", "", None, 3])
def test_parse_state_refuses_unknown_names(bad: object) -> None:
    with pytest.raises(ValueError, match="unknown state"):
        parse_state(bad)
