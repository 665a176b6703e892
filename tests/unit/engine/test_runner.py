"""Runner: retries with backoff, timeouts, on_error, journal and resume, audit, dry-run."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from engine.policy import MonitorSpec, Policy, Step
from engine.runner import Runner, backoff
from engine.state import EngineState, StateStore
from tests.unit.engine import steps_for_tests as fake


def policy(tmp_path: Path, steps: list[Step]) -> Policy:
    return Policy(path=tmp_path / "p.yaml", name="t", state_dir=tmp_path / "state",
                  monitor=MonitorSpec(target="prod", interval=1, failures_to_engage=3),
                  engage=steps, restore=[])


def step(name, **params):
    extra = {k: params.pop(k) for k in ("retries", "timeout", "on_error") if k in params}
    return Step("counting", {"name": name, **params}, where=f"engage[{name}]", **extra)


@pytest.fixture(autouse=True)
def kinds(monkeypatch):
    fake.install(monkeypatch)


def make_runner(tmp_path, steps, record=None, sleeps=None):
    p = policy(tmp_path, steps)
    store = StateStore(p.state_dir)
    sleeps = sleeps if sleeps is not None else []
    return Runner(p, store, record, secret=lambda n: Path("/nonexistent"),
                  sleep=sleeps.append), store


def test_backoff_doubles_and_is_capped():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(20) == 60


def test_retryable_failures_are_retried_with_backoff(tmp_path):
    sleeps = []
    runner, _ = make_runner(tmp_path, [], sleeps=sleeps)
    report = runner.run("engage", [step("a", fail_times=2, retries=3)])
    assert report.ok
    assert fake.CALLS["apply"] == ["a", "a", "a"]
    assert sleeps == [1, 2]


def test_retries_exhausted_fails_the_run(tmp_path):
    runner, _ = make_runner(tmp_path, [])
    report = runner.run("engage", [step("a", fail_times=5, retries=1), step("b")])
    assert not report.ok and report.failed.step.params["name"] == "a"
    assert fake.CALLS["apply"] == ["a", "a"]  # b never ran


def test_non_retryable_failure_is_not_retried(tmp_path):
    runner, _ = make_runner(tmp_path, [])
    report = runner.run("engage", [step("a", fail_times=1, retryable=False, retries=5)])
    assert not report.ok and fake.CALLS["apply"] == ["a"]


def test_on_error_continue_goes_on(tmp_path):
    runner, _ = make_runner(tmp_path, [])
    report = runner.run("engage", [step("a", fail_times=9, on_error="continue"), step("b")])
    assert report.ok
    assert [r.status for r in report.steps] == ["continued", "done"]


def test_timeout_fails_the_attempt(tmp_path):
    runner, _ = make_runner(tmp_path, [])
    report = runner.run("engage", [step("slow", sleep=0.6, timeout=0.1)])
    assert not report.ok
    assert "timed out after 0.1s" in report.failed.summary


def test_already_done_is_not_applied_and_says_so(tmp_path):
    fake.DONE.add("a")
    runner, _ = make_runner(tmp_path, [])
    report = runner.run("engage", [step("a")])
    assert report.ok and fake.CALLS["apply"] == []
    assert report.steps[0].status == "already"
    assert report.steps[0].summary.startswith("already done")


def test_audit_log_has_one_json_line_per_change(tmp_path):
    runner, store = make_runner(tmp_path, [])
    runner.run("engage", [step("a"), step("b", fail_times=1, retryable=False)])
    lines = [json.loads(x) for x in store.audit_path.read_text().splitlines()]
    assert [(e["step"], e["outcome"]) for e in lines] == [
        ("engage step 1", "changed"), ("engage step 2", "failed")]
    assert lines[0]["before"] == "absent" and lines[0]["after"] == "present"
    assert set(lines[0]) >= {"time", "policy", "step", "before", "after", "outcome"}


def test_journal_resumes_at_the_first_unfinished_step(tmp_path):
    record = EngineState(state="engaging")
    steps = [step("a"), step("b"), step("c")]
    runner, store = make_runner(tmp_path, steps, record)
    stop = runner.stop

    original = fake.Counting.apply

    def stop_after_b(self, ctx):
        out = original(self, ctx)
        if self.name == "b":
            stop.set()
        return out

    fake.Counting.apply = stop_after_b
    try:
        first = runner.run("engage", steps)
    finally:
        fake.Counting.apply = original
    assert first.interrupted and fake.CALLS["apply"] == ["a", "b"]
    saved = store.load()
    assert sorted(saved.run["steps"]) == ["0", "1"]

    fake.CALLS["apply"].clear()
    fake.CALLS["plan"].clear()
    again, _ = make_runner(tmp_path, steps, saved)
    second = again.run("engage", steps)
    assert second.ok
    assert fake.CALLS["apply"] == ["c"] and fake.CALLS["plan"] == ["c"]
    assert [r.status for r in second.steps] == ["skipped", "skipped", "done"]


def test_dry_run_calls_plan_only_and_writes_nothing(tmp_path):
    runner, store = make_runner(tmp_path, [])
    report = runner.run("engage", [step("a"), step("b")], dry_run=True)
    assert fake.CALLS["apply"] == [] and fake.CALLS["plan"] == ["a", "b"]
    assert [r.status for r in report.steps] == ["planned", "planned"]
    assert not store.state_dir.exists()


def test_stop_between_steps(tmp_path):
    runner, _ = make_runner(tmp_path, [])
    runner.stop = threading.Event()
    runner.stop.set()
    report = runner.run("engage", [step("a")])
    assert report.interrupted and fake.CALLS["apply"] == []


# -- hand-over: outputs, facts and the engine's state ---------------------------------------

def _chain() -> list[Step]:
    """fetch-like a (output), lock-like b (none), unzip-like c (output), archive-like d."""
    return [step("a", output="gocdb.sql.zip", facts={"size": 1}), step("b"),
            step("c", output="gocdb.sql", facts={"size": 2, "data_completed": "T"}), step("d")]


def _inputs() -> dict[str, tuple]:
    """Per step, the last (previous_output, pending) the runner handed it."""
    return {name: (previous, pending) for name, previous, pending, _state in fake.SEEN}


def test_dry_run_chains_planned_outputs_like_a_real_run(tmp_path):
    runner, _ = make_runner(tmp_path, [])
    report = runner.run("engage", _chain(), dry_run=True)
    assert _inputs() == {
        "a": (None, False),
        "b": (Path("/out/gocdb.sql.zip.planned"), True),
        "c": (Path("/out/gocdb.sql.zip.planned"), True),  # b hands on nothing new
        "d": (Path("/out/gocdb.sql.planned"), True),
    }
    assert [r.output for r in report.steps] == [
        Path("/out/gocdb.sql.zip.planned"), None, Path("/out/gocdb.sql.planned"), None]
    assert report.facts == {"size": 2, "data_completed": "T"}  # the later step wins


def test_dry_run_output_of_a_done_step_is_not_pending(tmp_path):
    fake.DONE.add("a")
    runner, _ = make_runner(tmp_path, [])
    runner.run("engage", _chain(), dry_run=True)
    assert _inputs()["b"] == (Path("/out/gocdb.sql.zip"), False)
    assert _inputs()["d"] == (Path("/out/gocdb.sql.planned"), True)


def test_real_run_chains_applied_outputs_and_collects_facts(tmp_path):
    runner, store = make_runner(tmp_path, [])
    report = runner.run("engage", _chain())
    assert report.ok
    assert _inputs() == {"a": (None, False), "b": (Path("/out/gocdb.sql.zip"), False),
                         "c": (Path("/out/gocdb.sql.zip"), False),
                         "d": (Path("/out/gocdb.sql"), False)}
    assert report.facts == {"size": 2, "data_completed": "T"}
    audit = [json.loads(x) for x in store.audit_path.read_text().splitlines()]
    assert audit[0]["output"] == "/out/gocdb.sql.zip" and audit[0]["facts"] == {"size": 1}
    assert "output" not in audit[1] and "facts" not in audit[1]


def test_a_failed_step_that_continues_hands_on_nothing(tmp_path):
    runner, _ = make_runner(tmp_path, [])
    steps = [step("a", output="x"), step("b", output="y", fail_times=9, on_error="continue"),
             step("c")]
    assert runner.run("engage", steps).ok
    assert _inputs()["c"] == (Path("/out/x"), False)


def test_resumed_run_reuses_the_journalled_output_and_facts(tmp_path):
    record = EngineState(state="engaging")
    steps = _chain()
    runner, store = make_runner(tmp_path, steps, record)
    original = fake.Counting.apply

    def stop_after_b(self, ctx):
        out = original(self, ctx)
        if self.name == "b":
            runner.stop.set()
        return out

    fake.Counting.apply = stop_after_b
    try:
        assert runner.run("engage", steps).interrupted
    finally:
        fake.Counting.apply = original
    saved = store.load()
    assert saved.run["steps"]["0"]["output"] == "/out/gocdb.sql.zip"
    assert saved.run["steps"]["0"]["facts"] == {"size": 1}
    assert "output" not in saved.run["steps"]["1"]

    fake.SEEN.clear()
    again, _ = make_runner(tmp_path, steps, saved)
    report = again.run("engage", steps)
    assert report.ok and [r.status for r in report.steps] == ["skipped", "skipped", "done", "done"]
    assert _inputs()["c"] == (Path("/out/gocdb.sql.zip"), False)
    assert report.steps[0].output == Path("/out/gocdb.sql.zip")
    assert report.facts == {"size": 2, "data_completed": "T"}


def test_non_path_outputs_are_journalled_as_values(tmp_path):
    from engine.runner import _journal_output, _journalled_output

    for value in (Path("/w/f.sql"), "the file extracted from /w/f.zip", {"n": 1}):
        assert _journalled_output(_journal_output(value)) == value
    assert _journal_output(None) == {} and _journalled_output({}) is None


def test_engine_state_reaches_steps_as_a_context_field_not_the_journal(tmp_path):
    record = EngineState(state="engaging")
    runner, store = make_runner(tmp_path, [], record)
    runner.run("engage", [step("a")])
    assert [state for *_rest, state in fake.SEEN] == ["engaging", "engaging"]  # plan, apply
    assert store.load().run["progress"]["0"] == {}
    fake.SEEN.clear()
    job_runner, _ = make_runner(tmp_path, [])  # a job: no engine record
    job_runner.run("job:x", [step("b")])
    assert {state for *_rest, state in fake.SEEN} == {None}
