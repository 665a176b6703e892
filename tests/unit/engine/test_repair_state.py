"""repair-state's reasoning: evidence → state, and the record it would write."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.commands import repair_state
from engine.commands.repair_state import Evidence, conclude, rebuilt
from engine.states import State


def policy(tmp_path: Path) -> Any:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    return SimpleNamespace(state_dir=state_dir, path=tmp_path / "p.yaml", engage=[],
                           restore=[], jobs={}, name="t")


def test_no_evidence_is_watching_and_the_paused_file_pauses(tmp_path):
    p = policy(tmp_path)
    assert conclude(p, Evidence())[0] is State.WATCHING
    (p.state_dir / "paused").write_text("maintenance")
    assert conclude(p, Evidence())[0] is State.PAUSED


def test_any_sign_of_an_engage_wins_and_a_failed_one_is_aborted(tmp_path):
    p = policy(tmp_path)
    (p.state_dir / "paused").write_text("maintenance")
    evidence = Evidence()
    evidence.note("engage lock x exists", engaged=True)
    evidence.note("DNS says production", released=True)
    state, why = conclude(p, evidence)
    assert state is State.ENGAGED and "engage lock x exists" in why
    evidence.failed_engage = "engage[2]: nsupdate refused"
    assert conclude(p, evidence)[0] is State.ABORTED


def test_the_rebuilt_record_keeps_counts_and_reads_as_engaged_to_the_guard(tmp_path):
    record = rebuilt({"counts": {"engages": 3, "restores": 2, "bad": "x"}}, State.ABORTED,
                     "an engage failed")
    assert record.counts == {"engages": 3, "restores": 2}
    assert record.aborted_reason and "repair-state" in record.aborted_reason
    assert record.last_run is not None and record.last_run["phase"] == "engage"


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yes: bool,
        capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    p = policy(tmp_path)
    monkeypatch.setattr(repair_state, "load", lambda args: p)
    monkeypatch.setattr(repair_state, "_dns", lambda policy, evidence: evidence.note(
        "DNS: standby", engaged=True))
    code = repair_state.main(argparse.Namespace(yes=yes))
    return code, capsys.readouterr().out


def test_without_yes_nothing_is_written(tmp_path, monkeypatch, capsys):
    code, out = run(tmp_path, monkeypatch, False, capsys)
    assert code == 1
    assert "state file: " in out and "missing" in out
    assert "conclusion: engaged" in out and "nothing written" in out
    assert not (tmp_path / "state" / "state.json").exists()


def test_with_yes_the_state_is_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "state.json").write_text('{"state": 42, "counts": {"engages": 1}}')
    code, out = run(tmp_path, monkeypatch, True, capsys)
    assert code == 0, out
    saved = json.loads((tmp_path / "state" / "state.json").read_text())
    assert saved["state"] == "engaged" and saved["counts"]["engages"] == 1
    assert "rebuilt by repair-state" in saved["last_outcome"]
